"""HubSpot API calls per lead, counted by the adapter and by the emulator: the first lead of a new
account (tag options are created once), a new lead, a returning patient, and a replayed job."""

from __future__ import annotations

from pathlib import Path

import redis

from adapters.hubspot import HubSpotAdapter
from bench._common import settings_for
from connector.mapping import load_mapping, plan, required_schema
from connector.redis_server import EmbeddedRedis
from emulators.hubspot import HubSpotEmulator
from emulators.server import ServedApp
from tests.contract import make_lead

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    mapping = load_mapping(ROOT / "mappings" / "hubspot.yaml", crm="hubspot")
    emulator = HubSpotEmulator("pat-bench")
    with EmbeddedRedis() as server, ServedApp(emulator.app) as served:
        client = redis.Redis.from_url(server.url)
        adapter = HubSpotAdapter(settings_for(server.url, hubspot_api_base=served.url), options=mapping.crm_options(),
                                 redis=client)
        adapter.setup(required_schema(mapping), apply=True)
        rows = []
        for label, lead in [("first lead of a new account", make_lead("#1000", sender="4915100000001")),
                            ("new lead (new patient)", make_lead("#1001", sender="4915100000002")),
                            ("returning patient (new request)", make_lead("#1002", sender="4915100000002")),
                            ("replayed job (same lead again)", make_lead("#1002", sender="4915100000002")),
                            ("handoff (adds the owner's task)", make_lead("#1003", sender="4915100000003",
                                                                          handoff_reason="patient_request"))]:
            before = len(emulator.calls)
            result = adapter.sync(plan(lead, mapping))
            rows.append((label, result.calls, len(emulator.calls) - before))
    print(f"{'':36} adapter  emulator")
    for label, counted, seen in rows:
        print(f"{label:36} {counted:>7}  {seen:>8}")
    print("goal: 3 calls for a new lead with a note")


if __name__ == "__main__":
    main()
