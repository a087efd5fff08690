"""CRM API calls per lead for every shipped mapping, counted by the adapter and by the emulator: the
first lead after `crm setup`, a new lead, a returning patient, a replayed job and a handoff."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import redis

from adapters import load_adapter
from bench._common import settings_for
from connector.mapping import load_mapping, plan, required_schema
from connector.redis_server import EmbeddedRedis
from connector.resources import shipped
from demo.stack import prepare_crm, start_crm
from tests.contract import make_lead

MAPPINGS = [("hubspot", "hubspot.yaml"), ("salesforce", "salesforce.yaml"), ("salesforce", "salesforce-case.yaml"),
            ("salesforce", "salesforce-opportunity.yaml"), ("pipedrive", "pipedrive.yaml"),
            ("pipedrive", "pipedrive-deal.yaml")]
CREDENTIALS = {"HUBSPOT_ACCESS_TOKEN": "pat-bench", "PIPEDRIVE_API_TOKEN": "pd-bench",
               "SALESFORCE_CLIENT_ID": "3MVG9bench", "SALESFORCE_CLIENT_SECRET": "bench-secret"}
LEADS = [("first lead after crm setup", make_lead("#1000", sender="4915100000001")),
         ("new lead (new patient)", make_lead("#1001", sender="4915100000002")),
         ("returning patient (new request)", make_lead("#1002", sender="4915100000002")),
         ("replayed job (same lead again)", make_lead("#1002", sender="4915100000002")),
         ("handoff (adds the owner's task)", make_lead("#1003", sender="4915100000003",
                                                       handoff_reason="patient_request"))]


def measure(crm: str, mapping_file: str, redis_url: str, directory: Path) -> list[tuple[str, int, int]]:
    """(situation, calls the adapter counted, calls the emulator received) for one mapping."""
    mapping = load_mapping(shipped("mappings", mapping_file), crm=crm)
    running = start_crm(crm, CREDENTIALS, directory=directory / mapping_file)
    bundle = running.environment.get("REQUESTS_CA_BUNDLE")
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    if bundle:
        os.environ["REQUESTS_CA_BUNDLE"] = bundle
    try:
        environment = {**CREDENTIALS, **running.environment}
        prepare_crm(crm, environment, shipped("mappings", mapping_file))
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        settings = settings_for(redis_url, **{k.lower(): v for k, v in environment.items() if k != "REQUESTS_CA_BUNDLE"})
        options = mapping.crm_options()
        if crm == "pipedrive":  # the emulator enforces no burst limit here: measure calls, not waiting
            options |= {"rate_limit": {"requests": 1000, "per_seconds": 1},
                        "search_rate_limit": {"requests": 1000, "per_seconds": 1}}
        adapter = load_adapter(crm).from_settings(settings, options=options, redis=client)
        adapter.prepare(required_schema(mapping))  # as a worker does when it starts
        rows = []
        for label, lead in LEADS:
            before = len(running.emulator.calls)
            result = adapter.sync(plan(lead, mapping))
            rows.append((label, result.calls, len(running.emulator.calls) - before))
        return rows
    finally:
        running.stop()
        if bundle:
            if previous is None:
                os.environ.pop("REQUESTS_CA_BUNDLE", None)
            else:
                os.environ["REQUESTS_CA_BUNDLE"] = previous


def main() -> None:
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory() as tmp:
        for crm, mapping_file in MAPPINGS:
            rows = measure(crm, mapping_file, server.url, Path(tmp))
            print(f"{mapping_file:36} adapter  emulator")
            for label, counted, seen in rows:
                print(f"  {label:34} {counted:>7}  {seen:>8}")
    print("goals: HubSpot 3 calls for a new lead with its note; Salesforce 2 (one query, one Composite); "
          "Pipedrive 6 for a new patient with an e-mail (its e-mail is searched first: Pipedrive lets two persons "
          "share one), 2 for a returning one")
    print("(the emulator also counts Salesforce's token requests, which the org's API limit does not)")


if __name__ == "__main__":
    main()
