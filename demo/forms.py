"""The demo's Meta lead form: the emulated Graph API ``chat2crm demo`` runs, the form it holds, and the page's
"A patient fills in a Meta lead form" (``/demo/api/leadform``).

The form here and the demo's ``lead_forms.yaml`` (next to this module) describe the same form: its question keys
are what the relay maps. Submitting it asks the emulator to create the lead and deliver Meta's signed ``leadgen``
webhook to the relay, which reads the lead back from the emulator with the Page token and writes it to the CRM
through the same mapping and adapter as a chat's lead (docs/ads.md). Nothing here touches the relay's internals.
The phone pane shows the WhatsApp greeting template with the text the demo's template was approved with
(:data:`TEMPLATES`), as the patient's phone would.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from flask import Blueprint, Response, abort, current_app, jsonify, request

#: the demo's lead forms file, named in the demo's configuration
LEAD_FORMS = Path(__file__).resolve().parent / "lead_forms.yaml"
FORM_ID = "777000111222333"
FORM_NAME = "Hair transplant offer"
#: the choice question: option key -> label (the form's ``values`` in lead_forms.yaml map the keys)
TREATMENTS = {"hair": "Hair transplant", "beard_eyebrow": "Beard or eyebrow transplant", "other": "Something else"}
CONSENT = ("whatsapp_optin", "I agree to be contacted on WhatsApp about this offer")
#: the ad the form runs in (a lead without one is organic or a test lead)
AD = {"ad_id": "120219990000101", "ad_name": "Hair transplant spring offer", "adset_id": "120219990000102",
      "adset_name": "EN 25-55", "campaign_id": "120219990000103", "campaign_name": "Hair transplant offer EN"}
#: the demo's approved WhatsApp templates: name -> body, its parameters as {{1}}, {{2}}…
TEMPLATES = {"hair_offer_welcome": "Hello {{1}}, thank you for your interest in our hair transplant offer! Reply "
                                   "here and we will answer a few questions for your personal plan."}
#: what the page's form is prefilled with (a made-up person; the page puts the phone pane's number in)
SAMPLE = {"full_name": "Emma Walker", "email": "emma.walker@example.com", "phone": "+447700900123",
          "treatment": "hair", "consent": True}

blueprint = Blueprint("demo_forms", __name__)


@dataclass
class RunningMeta:
    """The emulated Graph API, served, and the environment that points the relay at it."""

    emulator: Any
    served: Any
    environment: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        """Stop delivering webhooks, then serving."""
        self.emulator.sender.close()
        self.served.stop()


def start_meta_graph(env: dict[str, str], relay_base: str) -> RunningMeta:
    """Start the Graph API emulator with the demo's form, delivering ``leadgen`` webhooks to the relay at
    ``relay_base``, signed with the app secret the demo's WhatsApp uses (``META_APP_SECRET`` defaults to it).

    Args:
        env: the demo's environment; its ``CHAT2CRM_DEMO_EMULATORS`` gains the emulator's address.

    Returns:
        The emulator and the environment to add (``META_GRAPH_BASE``, ``META_PAGE_ACCESS_TOKEN``, the emulators).
    """
    # the emulators need the demo extra: imported only once the command has checked for it
    from emulators.meta_graph import MetaGraphEmulator, Question
    from emulators.server import ServedApp

    token = "EAAdemopage" + secrets.token_urlsafe(24)
    emulator = MetaGraphEmulator(page_access_token=token, app_secret=env["WHATSAPP_APP_SECRET"],
                                 relay_url=f"{relay_base}/webhooks/meta/leadgen")
    emulator.add_form(FORM_ID, FORM_NAME, [
        Question("full_name", "Full name"), Question("email", "Email"), Question("phone_number", "Phone number"),
        Question("which_treatment", "Which treatment are you interested in?", dict(TREATMENTS)),
    ], {CONSENT[0]: CONSENT[1]})
    served = ServedApp(emulator.app).start()
    emulators = json.loads(env.get("CHAT2CRM_DEMO_EMULATORS") or "{}")
    emulators["meta"] = served.url
    return RunningMeta(emulator, served, {"META_GRAPH_BASE": served.url, "META_PAGE_ACCESS_TOKEN": token,
                                          "CHAT2CRM_DEMO_EMULATORS": json.dumps(emulators)})


def template_text(template: dict[str, Any]) -> str:
    """A WhatsApp template message as the patient's phone shows it: the approved body with its parameters
    (``[template name]`` for a template the demo does not know)."""
    body = TEMPLATES.get(str(template.get("name")))
    if body is None:
        return f"[template {template.get('name')}]"
    params = [str(p.get("text", "")) for c in template.get("components") or [] if c.get("type") == "body"
              for p in c.get("parameters") or [] if p.get("type") == "text"]
    return re.sub(r"\{\{(\d+)\}\}", lambda m: params[int(m[1]) - 1] if int(m[1]) <= len(params) else m[0], body)


def _meta() -> str:
    """The Graph API emulator's address (404 when the demo does not run one, or the page is not the demo's)."""
    raw = current_app.extensions["chat2crm"].settings.chat2crm_demo_emulators
    meta = json.loads(raw).get("meta") if raw else None
    if not meta:
        abort(404)
    return str(meta)


@blueprint.get("/demo/api/leadform")
def leadform() -> Response:
    """The form the page lets a patient fill in: its name, choices, consent checkbox and a sample."""
    _meta()
    return jsonify({"form_id": FORM_ID, "name": FORM_NAME, "treatments": TREATMENTS,
                    "consent": {"key": CONSENT[0], "label": CONSENT[1]}, "sample": SAMPLE})


@blueprint.post("/demo/api/leadform")
def submit() -> tuple[Response, int]:
    """A patient submits the form: the emulator creates the lead and delivers the signed ``leadgen`` webhook.

    Returns the lead's id and ``patient``, the WhatsApp id of the phone number given (the phone pane's patient).
    """
    meta = _meta()
    data = request.get_json(silent=True) or {}
    name = str(data.get("full_name") or "").strip()
    phone = str(data.get("phone") or "").strip()
    email = str(data.get("email") or "").strip()
    treatment = str(data.get("treatment") or "hair")
    digits = re.sub(r"[\s()+.-]", "", phone)
    if not name or not (digits.isdigit() and 8 <= len(digits) <= 15) or treatment not in TREATMENTS:
        return jsonify({"error": "give a name, a phone number with its country code and one of the treatments"}), 400
    answers = {"full_name": name, "phone_number": phone, "which_treatment": treatment, **({"email": email} if email else {})}
    body = {"form_id": FORM_ID, "answers": answers, "ad": AD, "platform": str(data.get("platform") or "fb"),
            "consent": {CONSENT[0]: bool(data.get("consent"))}}
    answer = requests.post(f"{meta}/_emulator/leadgen", json=body, timeout=10)
    if answer.status_code != 200:
        return jsonify(answer.json()), answer.status_code
    return jsonify({"leadgen_id": answer.json()["leadgen_id"], "patient": digits}), 200
