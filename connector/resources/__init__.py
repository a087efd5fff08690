"""What chat2crm ships as package data: the default configuration, mappings, flows and schemas.

``chat2crm init DIR`` copies these into a clinic's folder, the demo runs on them, and the tests
read them. They are found through :mod:`importlib.resources`, so they work the same from a
checkout, an editable install and an installed wheel. Nothing here is a clinic's live
configuration: that lives in the folder ``CHAT2CRM_CONFIG`` names, never inside site-packages.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped(*parts: str) -> Path:
    """The path of a shipped file or folder, e.g. ``shipped("mappings", "hubspot.yaml")``.

    Raises:
        FileNotFoundError: nothing of that name is shipped (the message names it).
    """
    path = Path(str(resources.files(__name__).joinpath(*parts)))
    if not path.exists():
        raise FileNotFoundError(f"chat2crm ships no {'/'.join(parts)!r} (looked in {path.parent})")
    return path


#: the shipped main configuration (the demo's, and the template ``chat2crm init`` writes from)
DEFAULT_CONFIG = "chat2crm.yaml"
