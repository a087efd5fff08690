"""The Salesforce package in ``crm/salesforce``: its metadata, checked without an org, and its component's Jest tests and lint.

The metadata checks read every ``*-meta.xml`` file and hold it to the rules of Salesforce's Metadata API that
need no org: the namespace and root element of each type, the elements each type (and each field type)
requires, the naming rules of API names, references that must point at something the package has, and one
API version throughout. Then they hold the chat message object to the contract the relay reads it with
(the fields, their types and picklist values, the Change Data Capture selection, the permission sets).

The component's own tests run with Node when ``node`` and ``npm`` are installed (Debian's ``nodejs`` and
``npm`` packages): ``npm ci`` once into ``crm/salesforce/node_modules`` (again only when ``package-lock.json``
changes), then ``jest`` and ``eslint``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.paths import REPO

PACKAGE = REPO / "crm" / "salesforce"
SOURCE = PACKAGE / "force-app" / "main" / "default"
NS = "http://soap.sforce.com/2006/04/metadata"
OBJECT = "Chat2CRM_Message__c"

#: file suffix -> the metadata type its root element names, and the folder (under SOURCE) it must sit in
TYPES = {
    ".object-meta.xml": ("CustomObject", "objects/{stem}"),
    ".field-meta.xml": ("CustomField", "objects/*/fields"),
    ".permissionset-meta.xml": ("PermissionSet", "permissionsets"),
    ".platformEventChannelMember-meta.xml": ("PlatformEventChannelMember", "platformEventChannelMembers"),
    ".js-meta.xml": ("LightningComponentBundle", "lwc/{stem}"),
}
#: letters, digits and single underscores, starting with a letter, not ending with an underscore
API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*$")
SHARING_MODELS = {"Private", "Read", "ReadWrite", "ReadWriteTransfer", "FullAccess", "ControlledByParent"}
DELETE_CONSTRAINTS = {"SetNull", "Restrict", "Cascade"}
RECORD_PAGE_TARGETS = {"lightning__RecordPage", "lightning__RecordAction"}
LWC_TARGETS = RECORD_PAGE_TARGETS | {"lightning__AppPage", "lightning__HomePage", "lightning__Tab", "lightning__UtilityBar",
                                     "lightning__FlowScreen", "lightningCommunity__Page", "lightningCommunity__Default"}

#: the contract: each field, its type, and what the relay relies on
PICKLISTS = {
    "Direction__c": (["Inbound", "Outbound"], None),
    "Type__c": (["Message", "Close"], "Message"),
    "Channel__c": (["whatsapp", "telegram"], None),
    "Status__c": (["Draft", "New", "Sent", "Delivered", "Read", "Failed", "Received"], None),
}
TEXTS = {"Error__c": 255, "External_Id__c": 255, "Conversation_Key__c": 80, "Agent_Name__c": 121}
LOOKUPS = {"Lead__c": "Lead", "Contact__c": "Contact", "Case__c": "Case"}
CONTRACT_FIELDS = {*PICKLISTS, *TEXTS, *LOOKUPS, "Body__c", "Sent_At__c"}


def local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rpartition("}")[2]


def parse(path: Path) -> ElementTree.Element:
    """One metadata file's root element (the package's own files, so the standard parser is safe)."""
    return ElementTree.parse(path).getroot()  # noqa: S314 - files of this repository, not untrusted input


def text(element: ElementTree.Element, path: str) -> str | None:
    """The text of a child element (``a/b`` paths), or None when it is absent."""
    found = element.find("/".join(f"{{{NS}}}{part}" for part in path.split("/")))
    return None if found is None else (found.text or "").strip()


def texts(element: ElementTree.Element, path: str) -> list[str]:
    """The texts of every matching child element."""
    return [(e.text or "").strip() for e in element.findall("/".join(f"{{{NS}}}{part}" for part in path.split("/")))]


def metadata_files() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*-meta.xml") if "__tests__" not in p.parts)


def fields() -> dict[str, ElementTree.Element]:
    """The object's fields by API name."""
    folder = SOURCE / "objects" / OBJECT / "fields"
    return {p.name.removesuffix(".field-meta.xml"): parse(p) for p in sorted(folder.glob("*.field-meta.xml"))}


def source_api_version() -> str:
    return str(json.loads((PACKAGE / "sfdx-project.json").read_text(encoding="utf-8"))["sourceApiVersion"])


def assert_api_name(name: str, suffix: str = "__c") -> None:
    assert name.endswith(suffix), f"{name} must end with {suffix}"
    stem = name.removesuffix(suffix)
    assert API_NAME.match(stem), f"{name}: letters, digits and single underscores, starting with a letter"
    assert len(stem) <= 40, f"{name}: at most 40 characters before {suffix}"


# -- every file ---------------------------------------------------------------------------------
def test_the_project_file_names_existing_package_folders() -> None:
    project = json.loads((PACKAGE / "sfdx-project.json").read_text(encoding="utf-8"))
    folders = project["packageDirectories"]
    assert len([f for f in folders if f.get("default")]) == 1, "exactly one default package folder"
    for folder in folders:
        assert (PACKAGE / folder["path"]).is_dir(), folder
    assert re.fullmatch(r"\d{2}\.0", source_api_version())


@pytest.mark.parametrize("path", metadata_files(), ids=lambda p: p.name)
def test_each_file_is_well_formed_metadata_of_a_known_type_in_its_folder(path: Path) -> None:
    suffix = next((s for s in TYPES if path.name.endswith(s)), None)
    assert suffix is not None, f"{path.name}: a metadata type this test does not know; teach it the type's rules"
    kind, folder = TYPES[suffix]
    root = parse(path)
    assert root.tag == f"{{{NS}}}{kind}", f"{path.name}: root element must be {kind} in the metadata namespace"
    stem = path.name.removesuffix(suffix)
    expected = SOURCE / folder.format(stem=stem)
    assert path.parent.match(str(expected)), f"{path.name} must sit in {folder}"
    for element in root.iter():
        assert element.tag.startswith(f"{{{NS}}}"), f"{path.name}: {element.tag} is outside the metadata namespace"


def test_every_api_version_is_the_projects() -> None:
    version = source_api_version()
    for path in metadata_files():
        found = text(parse(path), "apiVersion")
        assert found in (None, version), f"{path.name}: apiVersion {found}, sfdx-project.json says {version}"


def test_the_package_has_no_apex_and_deploys_no_tests() -> None:
    assert not list(SOURCE.rglob("*.cls")) and not list(SOURCE.rglob("*.trigger"))
    ignored = (PACKAGE / ".forceignore").read_text(encoding="utf-8").split()
    assert "**/__tests__/**" in ignored and "node_modules/" in ignored


# -- the object and its fields ------------------------------------------------------------------
def test_the_object_is_a_deployable_custom_object() -> None:
    assert_api_name(OBJECT)
    root = parse(SOURCE / "objects" / OBJECT / f"{OBJECT}.object-meta.xml")
    for required in ("label", "pluralLabel", "deploymentStatus", "sharingModel", "nameField/label", "nameField/type"):
        assert text(root, required), f"CustomObject needs {required}"
    assert text(root, "deploymentStatus") in {"Deployed", "InDevelopment"}
    assert text(root, "sharingModel") in SHARING_MODELS
    assert text(root, "label") == "Chat message"
    assert text(root, "nameField/type") == "AutoNumber"
    assert text(root, "nameField/displayFormat") == "MSG-{0000000}"
    # no master-detail field, so the sharing model may not be ControlledByParent: the contract says ReadWrite
    assert text(root, "sharingModel") == "ReadWrite"
    assert all(text(f, "type") != "MasterDetail" for f in fields().values())


@pytest.mark.parametrize("name", sorted(fields()))
def test_each_field_has_what_its_type_requires(name: str) -> None:
    assert_api_name(name)
    field = fields()[name]
    assert text(field, "fullName") == name, "fullName must match the file name"
    label, kind = text(field, "label"), text(field, "type")
    assert label and len(label) <= 40, "a label of 1 to 40 characters"
    assert text(field, "required") != "true", "every field is optional: the relay and the agents write different ones"
    if kind == "Text":
        assert 1 <= int(text(field, "length") or 0) <= 255
    elif kind == "LongTextArea":
        assert 256 <= int(text(field, "length") or 0) <= 131072
        assert int(text(field, "visibleLines") or 0) >= 2
    elif kind == "Picklist":
        values = texts(field, "valueSet/valueSetDefinition/value/fullName")
        assert values and len(values) == len(set(values))
        assert len(texts(field, "valueSet/valueSetDefinition/value/label")) == len(values)
        assert texts(field, "valueSet/valueSetDefinition/value/default").count("true") <= 1
    elif kind == "Lookup":
        assert text(field, "referenceTo")
        relationship = text(field, "relationshipName") or ""
        assert API_NAME.match(relationship), "relationshipName: letters, digits and single underscores"
        assert text(field, "deleteConstraint") in DELETE_CONSTRAINTS
    elif kind != "DateTime":
        pytest.fail(f"{name}: type {kind} has no rule here; add its required elements")
    if text(field, "externalId") == "true":
        assert kind == "Text", "an External ID here is Text"


def test_relationship_names_are_unique_per_parent() -> None:
    seen: dict[tuple[str, str], str] = {}
    for name, field in fields().items():
        if text(field, "type") == "Lookup":
            key = (text(field, "referenceTo") or "", text(field, "relationshipName") or "")
            assert key not in seen, f"{name} and {seen[key]} give {key[0]} the same relationship name"
            seen[key] = name


def test_the_fields_are_the_contracts() -> None:
    found = fields()
    assert set(found) == CONTRACT_FIELDS
    for name, (values, default) in PICKLISTS.items():
        field = found[name]
        assert text(field, "type") == "Picklist" and text(field, "valueSet/restricted") == "true", name
        assert texts(field, "valueSet/valueSetDefinition/value/fullName") == values, name
        defaults = [v for v, d in zip(values, texts(field, "valueSet/valueSetDefinition/value/default"), strict=True)
                    if d == "true"]
        assert defaults == ([default] if default else []), name
    for name, length in TEXTS.items():
        assert (text(found[name], "type"), text(found[name], "length")) == ("Text", str(length)), name
    external = found["External_Id__c"]
    assert [text(external, k) for k in ("externalId", "unique", "caseSensitive")] == ["true", "true", "true"]
    for name, parent in LOOKUPS.items():
        assert (text(found[name], "type"), text(found[name], "referenceTo")) == ("Lookup", parent), name
        assert text(found[name], "deleteConstraint") == "SetNull", name
    assert (text(found["Body__c"], "type"), text(found["Body__c"], "length")) == ("LongTextArea", "32768")
    assert text(found["Sent_At__c"], "type") == "DateTime"


def test_change_data_capture_is_enabled_for_the_object_only_by_a_channel_member() -> None:
    members = sorted((SOURCE / "platformEventChannelMembers").glob("*.platformEventChannelMember-meta.xml"))
    assert len(members) == 1
    member = parse(members[0])
    entity = OBJECT.removesuffix("__c") + "__ChangeEvent"
    assert (text(member, "eventChannel"), text(member, "selectedEntity")) == ("ChangeEvents", entity)
    # the member's full name is ChannelName_EventName with double underscores made single
    assert members[0].name == f"ChangeEvents_{entity.replace('__', '_')}.platformEventChannelMember-meta.xml"
    # a PlatformEventChannel for ChangeEvents would replace the org's whole selection instead of adding to it
    assert not (SOURCE / "platformEventChannels").exists()


# -- permission sets ----------------------------------------------------------------------------
def permission_set(name: str) -> tuple[ElementTree.Element, dict[str, tuple[str | None, str | None]]]:
    """The permission set, and its field permissions: field -> (readable, editable)."""
    root = parse(SOURCE / "permissionsets" / f"{name}.permissionset-meta.xml")
    granted = {text(f, "field") or "": (text(f, "readable"), text(f, "editable"))
               for f in root.findall(f"{{{NS}}}fieldPermissions")}
    return root, granted


@pytest.mark.parametrize("name", ["Chat2CRM_Agent", "Chat2CRM_Integration"])
def test_permission_sets_reference_only_what_exists(name: str) -> None:
    root, granted = permission_set(name)
    assert text(root, "label") and API_NAME.match(name)
    existing = fields()
    for field in granted:
        obj, _, field_name = field.partition(".")
        assert obj == OBJECT and field_name in existing, f"{name} grants {field}, which the package does not have"
        assert text(existing[field_name], "required") != "true", "required fields cannot be in field permissions"
    for permission in root.findall(f"{{{NS}}}objectPermissions"):
        target = text(permission, "object") or ""
        assert (SOURCE / "objects" / target / f"{target}.object-meta.xml").exists(), f"{name} names object {target!r}"
        flags = {local(e.tag): e.text == "true" for e in permission if local(e.tag) != "object"}
        assert not flags["viewAllRecords"] or flags["allowRead"], "View All needs Read"
        assert not flags["modifyAllRecords"] or (flags["viewAllRecords"] and flags["allowEdit"] and flags["allowDelete"])
        assert not (flags["allowEdit"] or flags["allowCreate"]) or flags["allowRead"]


def object_flags(root: ElementTree.Element) -> dict[str, bool]:
    (permission,) = [p for p in root.findall(f"{{{NS}}}objectPermissions") if text(p, "object") == OBJECT]
    return {local(e.tag): e.text == "true" for e in permission if local(e.tag) != "object"}


def test_agents_read_create_and_edit_messages_but_not_the_relays_key() -> None:
    root, granted = permission_set("Chat2CRM_Agent")
    flags = object_flags(root)
    assert flags["allowRead"] and flags["allowCreate"] and flags["allowEdit"]
    assert not (flags["allowDelete"] or flags["viewAllRecords"] or flags["modifyAllRecords"])
    for name in CONTRACT_FIELDS:
        editable = "false" if name == "External_Id__c" else "true"
        assert granted[f"{OBJECT}.{name}"] == ("true", editable), name


def test_the_relays_user_sees_every_change_event() -> None:
    root, granted = permission_set("Chat2CRM_Integration")
    flags = object_flags(root)
    # Change Data Capture delivers a custom object's events only to users with View All on it, and only
    # the fields they may read
    assert flags["allowRead"] and flags["allowCreate"] and flags["allowEdit"] and flags["viewAllRecords"]
    assert all(granted[f"{OBJECT}.{name}"] == ("true", "true") for name in CONTRACT_FIELDS)


# -- the component ------------------------------------------------------------------------------
def test_the_component_is_exposed_on_lead_contact_and_case_pages() -> None:
    bundles = sorted(p for p in (SOURCE / "lwc").iterdir() if p.is_dir())
    assert [b.name for b in bundles] == ["chat2crmThread"]
    for bundle in bundles:
        # a bundle's name starts with a lowercase letter and has letters, digits and single underscores only
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*", bundle.name)
        for part in (".js", ".html", ".js-meta.xml"):
            assert (bundle / f"{bundle.name}{part}").exists(), f"{bundle.name}{part}"
        meta = parse(bundle / f"{bundle.name}.js-meta.xml")
        assert text(meta, "isExposed") == "true" and text(meta, "masterLabel")
        targets = texts(meta, "targets/target")
        assert targets and set(targets) <= LWC_TARGETS
        for config in meta.findall(f"{{{NS}}}targetConfigs/{{{NS}}}targetConfig"):
            config_targets = set(config.get("targets", "").split(","))
            assert config_targets <= set(targets), "a targetConfig may only configure declared targets"
            if texts(config, "objects/object"):
                assert config_targets <= RECORD_PAGE_TARGETS, "objects apply to record pages only"
        objects = [o for c in meta.findall(f"{{{NS}}}targetConfigs/{{{NS}}}targetConfig") for o in texts(c, "objects/object")]
        assert targets == ["lightning__RecordPage"] and sorted(objects) == ["Case", "Contact", "Lead"]


def test_the_component_uses_only_fields_the_package_has_and_no_apex() -> None:
    script = (SOURCE / "lwc" / "chat2crmThread" / "chat2crmThread.js").read_text(encoding="utf-8")
    assert "@salesforce/apex" not in script
    existing = set(fields())
    imported = set(re.findall(rf"@salesforce/schema/{OBJECT}\.(\w+)", script))
    queried = set(re.findall(r"\b(\w+__c)\s*[{(]", script)) - {OBJECT}
    assert imported and queried
    assert imported <= existing and queried <= existing, (imported | queried) - existing


# -- Jest and ESLint ----------------------------------------------------------------------------
def run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=PACKAGE, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "CI": "true", "NO_COLOR": "1", "FORCE_COLOR": "0"})


@pytest.fixture(scope="module")
def node_modules() -> Iterator[Path]:
    """``crm/salesforce/node_modules`` as ``package-lock.json`` pins it (``npm ci`` when the lock changed)."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("needs Node.js: install Debian's 'nodejs' and 'npm' packages (apt-get install nodejs npm)")
    lock = hashlib.sha256((PACKAGE / "package-lock.json").read_bytes()).hexdigest()
    stamp = PACKAGE / "node_modules" / ".chat2crm-lock-sha256"
    if not stamp.exists() or stamp.read_text(encoding="utf-8").strip() != lock:
        done = run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], timeout=240)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        stamp.write_text(lock + "\n", encoding="utf-8")
    yield PACKAGE / "node_modules"


def test_the_components_jest_tests_pass(node_modules: Path) -> None:
    done = run([str(node_modules / ".bin" / "jest"), "--ci"], timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    match = re.search(r"Tests:\s+(\d+) passed, (\d+) total", output)
    assert match and match.group(1) == match.group(2) and int(match.group(1)) >= 10, output[-2000:]


def test_the_component_passes_salesforces_lint(node_modules: Path) -> None:
    done = run([str(node_modules / ".bin" / "eslint"), "--max-warnings", "0", "force-app/main/default/lwc"], timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
