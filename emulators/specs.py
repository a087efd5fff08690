"""Where the vendors' own API descriptions live.

They are the vendors' files, kept beside the project in ``shared/vendor-specs`` (not copied into
it). ``CHAT2CRM_VENDOR_SPECS`` names another folder. Emulators need them to check requests; the
tests fail without them, and the demo runs its emulators unchecked, saying so, when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

from connector.settings import PROJECT_ROOT


def vendor_specs_dir() -> Path | None:
    """The folder of vendor descriptions, or None when it cannot be found."""
    named = os.environ.get("CHAT2CRM_VENDOR_SPECS")
    candidates = [Path(named)] if named else []
    candidates += [PROJECT_ROOT.parent / "shared" / "vendor-specs", PROJECT_ROOT / "vendor-specs"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def spec_path(relative: str) -> Path:
    """The path of one vendor file, e.g. ``whatsapp/business-messaging-api_v23.0.yaml``.

    Raises:
        FileNotFoundError: the folder or the file is missing (the message says where we looked).
    """
    base = vendor_specs_dir()
    if base is None:
        raise FileNotFoundError(
            "vendor API descriptions not found: set CHAT2CRM_VENDOR_SPECS or keep shared/vendor-specs "
            "beside the checkout"
        )
    path = base / relative
    if not path.exists():
        raise FileNotFoundError(f"vendor API description missing: {path}")
    return path
