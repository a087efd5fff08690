"""The vendors' API descriptions live in the repository, unchanged, with their sources and licences."""

from __future__ import annotations

import hashlib
import re

from emulators.specs import spec_path, vendor_specs_dir

SOURCES = vendor_specs_dir() / "SOURCES.md"


def test_every_description_matches_the_checksum_in_sources() -> None:
    rows = re.findall(r"^\| `([^`]+)` \|.*\| ([0-9a-f]{16}) \|$", SOURCES.read_text(encoding="utf-8"), re.M)
    # every description kept is checked (the Salesforce collection's files are checked by their git history)
    kept = {str(p.relative_to(vendor_specs_dir())) for p in vendor_specs_dir().rglob("*") if p.is_file()
            and p.name not in ("LICENSE", "SOURCES.md") and "postman-forcedotcom-2021" not in p.parts}
    assert {relative for relative, _ in rows} == kept, rows
    for relative, digest in rows:
        data = spec_path(relative).read_bytes()
        assert hashlib.sha256(data).hexdigest()[:16] == digest, f"{relative} differs from the vendor's file"


def test_every_vendor_folder_names_its_licence_and_source() -> None:
    text = SOURCES.read_text(encoding="utf-8")
    for folder in ("whatsapp", "telegram", "salesforce/postman-forcedotcom-2021", "twilio", "line"):
        assert (vendor_specs_dir() / folder / "LICENSE").read_text(encoding="utf-8").strip()
        assert f"`{folder}/LICENSE`" in text
    assert "pipedrive" in text and "states no licence" in text


def test_the_salesforce_skeletons_used_by_the_contract_are_shipped() -> None:
    from emulators.salesforce.contract import SKELETONS, skeleton_urls

    assert set(skeleton_urls()) == set(SKELETONS)
