"""The demo's conversion events to Meta: the ``conversions:`` section the demo's HubSpot mapping gets, the token
the emulated Conversions API takes, and the page's "Move to <stage>" control and "Sent to Meta" panel.

``chat2crm demo`` (HubSpot) writes a copy of the shipped mapping with :data:`DEMO_CONVERSIONS` added
(:func:`demo_mapping`; the shipped file stays as users get it) and sets ``META_CONVERSIONS_TOKEN`` to the
token of the Conversions API the Graph API emulator serves (:func:`conversions_environment`). A patient who
arrives from a click-to-WhatsApp ad carries the ad's ``ctwa_clid`` (the page's ad arrival sends WhatsApp's
referral with one), so their lead's ``LeadSubmitted`` goes to Meta once the relay writes it, when they consented.

On the page, ``POST /demo/api/conversions/move`` moves a deal to a stage the mapping's events name, as a person
does in HubSpot's UI: the HubSpot emulator's control edits the deal and delivers the app's signed
``deal.propertyChange`` webhook to the relay, which sends the mapped event. ``GET /demo/api/conversions`` lists
those stages and what the emulated Conversions API received. Nothing here touches the relay's internals.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import requests
from flask import Blueprint, Response, abort, current_app, jsonify, request
from ruamel.yaml import YAML

from connector.mapping.model import STATUSES
from connector.resources import shipped

#: the demo's dataset (pixel) and the WhatsApp Business Account of its click-to-WhatsApp ads (made-up ids)
DATASET_ID = "1234567890123"
WABA_ID = "102290129340398"
#: the ``conversions:`` section of the demo's HubSpot mapping: a stage of the scheme per event (docs/ads.md)
DEMO_CONVERSIONS: dict[str, Any] = {
    "dataset_id": DATASET_ID, "whatsapp_business_account_id": WABA_ID, "consent": "required", "window_days": 7,
    "events": [{"name": "LeadSubmitted"}, {"name": "InitiateCheckout", "stage": "reviewing"},
               {"name": "Purchase", "stage": "planned", "value": 2500, "currency": "EUR"}]}
#: the CRMs whose demo sends conversion events (a person's stage change reaches the relay by the app's webhook)
CRMS = ("hubspot",)

blueprint = Blueprint("demo_conversions", __name__)


def demo_mapping(crm: str, directory: Path) -> Path:
    """The mapping file the demo runs ``crm`` with: for HubSpot, a copy of the shipped mapping with
    :data:`DEMO_CONVERSIONS` (unless the shipped file has a ``conversions:`` section of its own); the shipped
    file itself for the other CRMs."""
    source = shipped("mappings", f"{crm}.yaml")
    if crm not in CRMS:
        return source
    yaml = YAML(typ="rt")
    data = yaml.load(source.read_text(encoding="utf-8"))
    if "conversions" not in data:
        data["conversions"] = DEMO_CONVERSIONS
    path = directory / f"{crm}.yaml"
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return path


def conversions_environment(emulator: Any) -> dict[str, str]:
    """Give the Graph API ``emulator``'s Conversions API a system user's token of its own, and return the
    environment that hands it to the relay (``META_CONVERSIONS_TOKEN``)."""
    token = "EAAdemocapi" + secrets.token_urlsafe(24)
    emulator.conversions.token = token
    return {"META_CONVERSIONS_TOKEN": token}


def subscribe_stage_changes(env: dict[str, str]) -> list[str]:
    """What ``chat2crm crm setup`` does for people's edits, with the demo's configuration and environment: the
    app's webhooks subscribed to ``deal.propertyChange`` of the mapped fields and of ``dealstage`` (the stage
    changes that send conversion events). The stage's line, any problem's, and how many others were made."""
    import redis

    from connector import edits
    from connector.runtime import Runtime
    from core.settings import Settings

    settings = Settings.model_validate({k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
    # the app's installation (its tokens) is read from the relay's Redis
    client = redis.Redis.from_url(settings.redis_url or env["REDIS_URL"])
    try:
        lines = edits.setup(Runtime(settings, redis_client=client), apply=True)
    finally:
        client.close()
    done = [line for line in lines if line.startswith(("subscribed ", "ok ")) and " of dealstage" not in line]
    shown = [line for line in lines if line not in done]
    return shown + ([f"webhook subscriptions of {len(done)} more properties (people's edits)"] if done else [])


# -- the page ------------------------------------------------------------------------------------
def _emulators() -> dict[str, str]:
    """The emulators' addresses (404 when the demo sends no events: no Meta emulator, no ``conversions:``)."""
    runtime = current_app.extensions["chat2crm"]
    raw = runtime.settings.chat2crm_demo_emulators
    emulators: dict[str, str] = json.loads(raw) if raw else {}
    if not emulators.get("meta") or runtime.mapping.conversions is None:
        abort(404)
    return emulators


def stages() -> list[dict[str, str]]:
    """The stages the mapping's events are sent on, in the scheme's order: the event, the stage as the mapping
    names it, and its label in the CRM (the clinic's language)."""
    mapping = current_app.extensions["chat2crm"].mapping
    statuses = mapping.record.statuses if mapping.record is not None else {}
    found: list[dict[str, str]] = []
    for event in mapping.conversions.on_stages() if mapping.conversions is not None else []:
        stage = event.stage
        label = statuses.get(stage, stage) if isinstance(stage, str) and stage in STATUSES else stage
        if isinstance(label, str):  # a stage named per language by the mapping itself: not offered
            found.append({"event": event.name, "stage": str(stage), "label": label})
    order = {s: n for n, s in enumerate(STATUSES)}
    return sorted(found, key=lambda s: order.get(s["stage"], len(order)))


def received(meta: str) -> list[dict[str, Any]]:
    """What the emulated Conversions API received, newest first, as the panel shows it."""
    listed = requests.get(f"{meta}/_emulator/conversions", timeout=5).json()
    return [{"name": e.get("event_name"), "event_id": e.get("event_id"), "action_source": e.get("action_source"),
             "time": e.get("event_time"), "value": (e.get("custom_data") or {}).get("value"),
             "currency": (e.get("custom_data") or {}).get("currency")}
            for e in reversed(listed.get("events") or [])]


@blueprint.get("/demo/api/conversions")
def listing() -> Response:
    """The stages the page can move a deal to, and the events Meta received."""
    emulators = _emulators()
    movable = emulators.get("crm_name") in CRMS
    return jsonify({"stages": stages() if movable else [], "events": received(emulators["meta"])})


def _stage_id(crm: str, token: str, pipeline: str, label: str) -> str | None:
    """The id of the stage ``label`` in the deal pipeline ``pipeline``, as HubSpot's pipelines API lists it."""
    answer = requests.get(f"{crm}/crm/v3/pipelines/deals/{pipeline}", timeout=10,
                          headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    return next((str(s["id"]) for s in answer.json().get("stages") or []
                 if str(s.get("label", "")).casefold() == label.casefold()), None)


@blueprint.post("/demo/api/conversions/move")
def move() -> tuple[Response, int]:
    """Move a deal (``record``) to ``stage`` (a stage of :func:`stages`) as a person in HubSpot's UI does: the
    emulator edits it and sends the relay the app's ``deal.propertyChange`` webhook (none when it is there
    already, as HubSpot sends none for a value that did not change)."""
    emulators = _emulators()
    if emulators.get("crm_name") not in CRMS:
        abort(404)
    data = request.get_json(silent=True) or {}
    record, wanted = str(data.get("record") or ""), str(data.get("stage") or "")
    chosen = next((s for s in stages() if s["stage"] == wanted), None)
    if not record.isdigit() or chosen is None:
        return jsonify({"error": "give a deal id and one of the stages the mapping's events name"}), 400
    crm = emulators["crm"]
    deal = next((d for d in requests.get(f"{crm}/_emulator/objects/deals", timeout=5).json()
                 if str(d["id"]) == record), None)
    if deal is None:
        return jsonify({"error": f"no deal {record}"}), 404
    settings = current_app.extensions["chat2crm"].settings
    token = settings.hubspot_access_token.get_secret_value() if settings.hubspot_access_token else ""
    try:
        stage_id = _stage_id(crm, token, str(deal["properties"].get("pipeline") or "default"), chosen["label"])
    except requests.RequestException as exc:
        return jsonify({"error": f"HubSpot's pipelines could not be read: {type(exc).__name__}"}), 502
    if stage_id is None:
        return jsonify({"error": f"the deal's pipeline has no stage {chosen['label']!r}"}), 409
    answer = requests.post(f"{crm}/_emulator/objects/deals/{record}", json={"properties": {"dealstage": stage_id}},
                           timeout=10)
    if answer.status_code != 200:
        return jsonify(answer.json()), answer.status_code
    return jsonify({"record": record, "stage": chosen["label"], "event": chosen["event"]}), 200
