"""The adapter SDK: one abstract write, declared options (checked with file and line, published in the
mapping's JSON Schema), each adapter's own credentials only, key families, imports that point down."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from pydantic import BaseModel, SecretStr
from ruamel.yaml import YAML

from adapters import load_adapter
from adapters.base import CRMAdapter
from adapters.hubspot import HubSpotAdapter
from adapters.pipedrive import PipedriveAdapter
from adapters.salesforce import SalesforceAdapter
from connector.cli import main
from connector.mapping import mapping_json_schema
from core.keys import REGISTRY
from tests.conftest import make_settings
from tests.paths import MAPPINGS, REPO, SCHEMAS

ADAPTERS = {"hubspot": HubSpotAdapter, "salesforce": SalesforceAdapter, "pipedrive": PipedriveAdapter}
SECRETS = {"hubspot": "pat-only-for-hubspot", "salesforce": "sf-only-for-salesforce",
           "pipedrive": "pd-only-for-pipedrive"}


def test_sync_is_the_one_abstract_write() -> None:
    assert CRMAdapter.__abstractmethods__ == {"sync", "find_contact", "check_credentials", "describe",
                                              "erase_contact"}
    for cls in ADAPTERS.values():
        assert not [name for name in ("upsert_record", "attach_note", "create_task", "set_tags", "upsert_company")
                    if hasattr(cls, name)], cls


def test_check_reports_a_bad_option_with_file_and_line(tmp_path: Path) -> None:
    clinic = tmp_path / "clinic"
    assert CliRunner().invoke(main, ["init", str(clinic), "--crm", "pipedrive"]).exit_code == 0
    mapping = clinic / "mappings" / "pipedrive.yaml"
    text = mapping.read_text(encoding="utf-8")
    assert "  label_color: gray" in text and "  rate_limit: {requests: 20, per_seconds: 2}" in text
    text = text.replace("  label_color: gray", "  label_color: teal").replace(
        "  rate_limit: {requests: 20, per_seconds: 2}", "  rate_limit: {requests: 0, per_seconds: 2}\n  timeout: 5")
    mapping.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    line_of = {key: lines.index(next(line for line in lines if line.startswith(f"  {key}:"))) + 1
               for key in ("label_color", "rate_limit", "timeout")}
    result = CliRunner().invoke(main, ["check"], env={"CHAT2CRM_CONFIG": str(clinic / "chat2crm.yaml")})
    assert result.exit_code == 1
    assert f"{mapping}:{line_of['label_color']}: options.label_color:" in result.output
    assert f"{mapping}:{line_of['rate_limit']}: options.rate_limit.requests:" in result.output
    assert f"{mapping}:{line_of['timeout']}: options.timeout: unknown key" in result.output


def test_check_names_a_crm_no_adapter_is_installed_for(tmp_path: Path) -> None:
    clinic = tmp_path / "clinic"
    assert CliRunner().invoke(main, ["init", str(clinic), "--crm", "hubspot"]).exit_code == 0
    config = clinic / "chat2crm.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("crm: hubspot", "crm: nocrm"), encoding="utf-8")
    result = CliRunner().invoke(main, ["check"], env={"CHAT2CRM_CONFIG": str(config)})
    assert result.exit_code == 1 and "unknown CRM 'nocrm'" in result.output and "hubspot.yaml:" in result.output


def test_the_published_schema_holds_every_adapters_options() -> None:
    published = json.loads((SCHEMAS / "mapping.schema.json").read_text(encoding="utf-8"))
    current = mapping_json_schema()
    assert {k: v for k, v in published.items() if k != "$schema"} == {**current, "title": "chat2crm mapping"}
    for name, cls in ADAPTERS.items():
        definition = published["$defs"][f"{name}_options"]
        assert set(definition["properties"]) == set(cls.Options.model_fields) and not definition["additionalProperties"]
        assert {"if": {"properties": {"crm": {"const": name}}, "required": ["crm"]},
                "then": {"properties": {"options": {"$ref": f"#/$defs/{name}_options"}}}} in published["allOf"]
    validator = jsonschema.Draft202012Validator(published)

    def option_errors(document: dict[str, Any]) -> list[str]:
        # (the schema does not know the fields' shorthands, `name: contact.name`: only options are looked at)
        return [f"{e.json_path} {e.message}" for e in validator.iter_errors(document)
                if e.json_path.startswith("$.options") or "options" in e.message]

    for crm, name in (("hubspot", "hubspot.yaml"), ("salesforce", "salesforce-case.yaml"), ("pipedrive", "pipedrive.yaml")):
        assert option_errors(YAML(typ="safe").load((MAPPINGS / name).read_text(encoding="utf-8"))) == [], crm
    shipped = YAML(typ="safe").load((MAPPINGS / "pipedrive.yaml").read_text(encoding="utf-8"))
    shipped["options"]["label_color"] = "teal"
    assert [e.split()[0] for e in option_errors(shipped)] == ["$.options.label_color"]
    shipped["options"]["label_color"] = "gray"
    shipped["crm"] = "hubspot"  # another CRM's options: HubSpot's take no label colours
    assert any("label_color" in e for e in option_errors(shipped))


def _strings(value: Any, seen: set[int], depth: int = 0) -> Iterator[str]:
    """Every string reachable from ``value`` (secrets unwrapped), as far as an attacker holding it could walk."""
    if id(value) in seen or depth > 8:
        return
    seen.add(id(value))
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, str | bytes):
        yield value.decode(errors="replace") if isinstance(value, bytes) else value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, seen, depth + 1)
            yield from _strings(item, seen, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item, seen, depth + 1)
    elif isinstance(value, BaseModel) or hasattr(value, "__dict__"):
        yield from _strings(dict(vars(value)), seen, depth + 1)


@pytest.mark.parametrize("crm", ADAPTERS)
def test_each_adapter_receives_only_its_own_credentials(crm: str) -> None:
    settings = make_settings("unix:///unused", hubspot_access_token=SECRETS["hubspot"],
                             salesforce_client_id="3MVG9x", salesforce_client_secret=SECRETS["salesforce"],
                             pipedrive_api_token=SECRETS["pipedrive"])
    cls = ADAPTERS[crm]
    adapter = cls.from_settings(settings)
    reachable = set(_strings(adapter, set()))
    assert SECRETS[crm] in reachable  # the walk does find secrets: this adapter's own
    assert not {secret for other, secret in SECRETS.items() if other != crm} & reachable
    assert {cls.Credentials.setting(name) for name in cls.Credentials.model_fields} <= {
        name.upper() for name in type(settings).model_fields if name.startswith(f"{crm}_")}
    with pytest.raises(ValueError, match="credentials must be"):
        cls(settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("crm", ADAPTERS)
def test_bad_options_are_refused_naming_them(crm: str) -> None:
    settings = make_settings("unix:///unused")
    with pytest.raises(ValueError, match=r"options\.timeout_seconds: .*greater than 0"):
        ADAPTERS[crm].from_settings(settings, options={"timeout_seconds": 0})
    with pytest.raises(ValueError, match=r"options\.nope: Extra inputs"):
        ADAPTERS[crm].from_settings(settings, options={"nope": 1})
    adapter = ADAPTERS[crm].from_settings(settings, options={"timeout_seconds": 7})
    assert adapter.session.timeouts.pair() == (3.05, 7.0)


def test_every_redis_key_the_adapters_write_is_a_registered_family_with_a_ttl() -> None:
    for crm in ADAPTERS:
        load_adapter(crm)
    owned = {handle: family for handle, family in REGISTRY.items() if family.owner.startswith("adapters.")}
    assert {f.name for f in owned.values()} == {"hubspot", "salesforce", "pipedrive", "ratelimit"}
    # an installation (tokens) lives as long as the app is installed: bounded by a count, not a TTL
    assert all(f.ttl is not None or f.bounded_by for f in owned.values())
    assert {h for h, f in owned.items() if f.holds_pii} == {
        "hubspot:contact:{contact_key}", "hubspot:company:{name}", "pipedrive:contact:{contact_key}",
        "pipedrive:organization:{name}", "pipedrive:panel:{person}"}
    for cls in ADAPTERS.values():
        assert all(f in owned.values() for f in cls.cache_families.values())


def test_adapters_import_nothing_above_them() -> None:
    """Imports point down: the adapters never load the runtime (or the pipeline, the web app…)."""
    code = ("import sys, adapters, adapters.hubspot, adapters.pipedrive, adapters.salesforce, adapters._ratelimit; "
            "print(sorted(m for m in sys.modules if m.startswith('connector.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                            check=True).stdout
    modules = set(json.loads(loaded.replace("'", '"')))
    assert not modules & {"connector.runtime", "connector.pipeline", "connector.app", "connector.config",
                          "connector.mapping", "connector.worker"}, modules
