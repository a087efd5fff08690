"""CRM adapters, registered by entry point (group ``chat2crm.adapters``).

A fourth CRM can live in another package: subclass :class:`adapters.base.CRMAdapter` (implement
``sync`` and the reads; declare ``Options`` and ``Credentials``; send every call through a
:class:`adapters.session.VendorSession`), declare an entry point
``[project.entry-points."chat2crm.adapters"] mycrm = "mypkg.adapter:MyCRMAdapter"`` and name it in
``chat2crm.yaml`` (``crm: mycrm``). Adapters are imported lazily, only when selected; selecting
one whose dependency is missing is a configuration error, not an ImportError at run time.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from adapters.base import AdapterCredentials, AdapterOptions, CRMAdapter
from core.errors import ConfigurationError, Problem

GROUP = "chat2crm.adapters"


def available_adapters() -> list[str]:
    """The names of every adapter installed (ours and other packages')."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load_adapter(name: str) -> type[CRMAdapter]:
    """Import and return the adapter class registered as ``name``.

    Raises:
        ConfigurationError: the name is unknown, its module or a dependency cannot be imported, or the class
            is not a complete adapter (its ``Options`` and ``Credentials``).
    """
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        raise ConfigurationError(Problem(
            f"unknown CRM {name!r}", path="crm",
            hint="installed adapters: " + ", ".join(available_adapters()),
        ))
    ep = matches[0]
    try:
        cls = ep.load()
    except ImportError as exc:
        raise ConfigurationError(Problem(
            f"the {name} adapter cannot be loaded: {exc}", path="crm",
            hint=f"install the package that provides {exc.name or 'it'}",
        )) from exc
    if not (isinstance(cls, type) and issubclass(cls, CRMAdapter)):
        raise ConfigurationError(Problem(f"entry point {ep.value!r} is not a CRMAdapter", path="crm"))
    if not (issubclass(cls.Options, AdapterOptions) and issubclass(cls.Credentials, AdapterCredentials)
            and cls.Credentials is not AdapterCredentials):
        raise ConfigurationError(Problem(f"the {name} adapter must declare its Options (an AdapterOptions) and its "
                                         "Credentials (an AdapterCredentials naming its settings)", path="crm"))
    for module in cls.requires:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(Problem(
                f"the {name} adapter needs the Python module {module!r}, which is not installed",
                path="crm", hint=f"pip install {module}",
            )) from exc
    return cls
