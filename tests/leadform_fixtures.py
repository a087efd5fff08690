"""The lead form the lead-form tests share: a German dental form, its ``lead_forms.yaml``, and the Meta emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emulators.meta_graph import MetaGraphEmulator, Question
from emulators.server import ServedApp

PAGE_TOKEN = "EAAGtestpageaccesstoken0123456789"
FORM_ID = "555000111222333"
#: the form's questions: Meta's standard keys, a choice question whose answers come as option keys or labels,
#: and custom questions whose keys are not ASCII
QUESTIONS = [
    Question("full_name", "Vollständiger Name"), Question("email", "E-Mail"),
    Question("phone_number", "Telefonnummer"),
    Question("behandlung", "Welche Behandlung?", {"zahnimplantat": "Zahnimplantate", "haare": "Haartransplantation"}),
    Question("wohnort_straße_stadt", "Wo wohnen Sie?"),
    Question("reisezeitraum_wählen", "Wann möchten Sie anreisen?"),
    Question("bütçe", "Budget"),
]
LEAD_FORMS_YAML = f"""\
version: 1
forms:
  "{FORM_ID}":
    name: Zahnbehandlung DE
    flow: health_tourism_intake
    language: de
    campaign: dental-de
    fields:
      behandlung:
        to: answers.treatment
        values: {{zahnimplantat: dental, Haartransplantation: hair_transplant}}
      wohnort_straße_stadt: contact.city
      reisezeitraum_wählen: request.preferred_time_text
      bütçe: answers.budget
    greeting:
      consent: whatsapp_optin
      template: {{name: leadform_welcome, language: de, params: [contact.first_name]}}
"""
AD = {"ad_id": "120210000000555", "ad_name": "Implantate Frühling", "adset_id": "120210000000556",
      "adset_name": "DE 30-60", "campaign_id": "120210000000557", "campaign_name": "Dental DE Q2"}


def write_lead_forms(directory: Path) -> Path:
    """``lead_forms.yaml`` for the form, in ``directory``."""
    path = directory / "lead_forms.yaml"
    path.write_text(LEAD_FORMS_YAML, encoding="utf-8")
    return path


def served_meta(app_secret: str) -> Iterator[MetaGraphEmulator]:
    """The Meta emulator with the form, served on 127.0.0.1 (``.url``) until the generator is closed."""
    emulator = MetaGraphEmulator(page_access_token=PAGE_TOKEN, app_secret=app_secret)
    emulator.add_form(FORM_ID, "Zahnbehandlung DE", QUESTIONS, {"whatsapp_optin": "WhatsApp-Nachrichten erlaubt"})
    served = ServedApp(emulator.app).start()
    emulator.url = served.url  # type: ignore[attr-defined]
    try:
        yield emulator
    finally:
        emulator.sender.close()
        served.stop()
    assert not emulator.violations, emulator.violations


def answers(phone: str = "+49 176 12345678", **more: Any) -> dict[str, Any]:
    """A complete submission of the form."""
    return {"full_name": "Anna Schäfer", "email": "Anna.Schaefer@example.com", "phone_number": phone,
            "behandlung": "zahnimplantat", "wohnort_straße_stadt": "Köln", "reisezeitraum_wählen": "im Mai",
            "bütçe": "5000 EUR", **more}
