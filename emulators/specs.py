"""Where the vendors' own API descriptions live: ``emulators/vendor_specs/``, inside this package.

They are the vendors' files, copied byte for byte with their licences; ``vendor_specs/SOURCES.md``
says where each came from. They ship with the emulators (package data), so the emulators check
requests the same way in a checkout, an installed wheel and the demo. Nothing is read from outside
the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def vendor_specs_dir() -> Path:
    """The folder of vendor descriptions (``emulators/vendor_specs``)."""
    return Path(str(resources.files("emulators").joinpath("vendor_specs")))


def spec_path(relative: str) -> Path:
    """The path of one vendor file, e.g. ``whatsapp/business-messaging-api_v23.0.yaml``.

    Raises:
        FileNotFoundError: the file is not shipped (a broken install; the message names it).
    """
    path = vendor_specs_dir() / relative
    if not path.exists():
        raise FileNotFoundError(f"vendor API description missing from the installed package: {path}")
    return path
