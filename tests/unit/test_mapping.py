"""The mapping engine: loading with file:line errors, transforms, the pure planner."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from connector.mapping import FieldSource, Mapping, Transform, apply_transform, load_mapping, plan, required_schema
from connector.mapping.model import STATUSES
from core.errors import ConfigurationError
from tests.contract import make_lead
from tests.paths import MAPPINGS, SCHEMAS

HUBSPOT = load_mapping(MAPPINGS / "hubspot.yaml", crm="hubspot")


def test_plan_for_a_new_lead() -> None:
    result = plan(make_lead(), HUBSPOT)
    assert result.contact.key_value == "whatsapp:905321112233" and result.contact.key_property == "chat2crm_contact_key"
    assert result.contact.properties["firstname"] == "Ayşe" and result.contact.properties["phone"] == "+905321112233"
    assert result.record is not None and result.record.reference == "1042"
    assert result.record.stage == "New" and result.record.pipeline == "Patient enquiries"  # the clinic's, by label
    assert result.record.properties["dealname"] == "Hair transplant – Ayşe Yılmaz (#1042)"
    assert result.record.properties["chat2crm_consent"] == "true"
    assert result.record.properties["chat2crm_utm_source"] == "instagram"
    assert result.note is not None and "https://relay.example/t/abc" in result.note.body and "Saç ekimi" in result.note.body
    assert result.task is None and result.tags == ["hair_transplant", "lang:tr"]
    # empty values are not written (a CRM field is never blanked by a missing answer)
    assert "chat2crm_ad_id" not in result.record.properties


def test_handoff_adds_a_task() -> None:
    result = plan(make_lead(handoff_reason="too_many_attempts"), HUBSPOT)
    assert result.task is not None and "too_many_attempts" in result.task.body and result.task.priority == "high"


@pytest.mark.parametrize(("value", "transform", "expected"), [
    ("ayşe", Transform(name="upper"), "AYŞE"), ("905321112233", Transform(name="e164"), "+905321112233"),
    ("x" * 10, Transform(name="truncate", length=5), "xxxx…"),
    ("2026-11-25T11:00:00+03:00", Transform(name="date", format="%d.%m.%Y %H:%M"), "25.11.2026 11:00"),
    ("dental", Transform(name="map", table={"hair_transplant": "Hair"}, default="Other"), "Other"),
    (True, Transform(name="bool"), "true"), (["a", "b"], Transform(name="join"), "a;b"),
    ("+90 (532) 111", Transform(name="digits"), "90532111")])
def test_transforms(value: object, transform: Transform, expected: object) -> None:
    assert apply_transform(value, transform) == expected


def test_field_shorthands() -> None:
    assert FieldSource.model_validate("contact.phone").source == "contact.phone"
    spec = FieldSource.model_validate({"source": "contact.email", "transform": "lower"})
    assert spec.transform[0].name == "lower"
    with pytest.raises(ValueError, match="exactly one"):
        FieldSource.model_validate({"source": "a", "value": "b"})


def test_mapping_errors_have_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("""version: 1
crm: hubspot
contact:
  object: contacts
  key_property: k
  fields:
    firstname: contact.frist_name
    lastname: {template: "{{ contact.last_name "}
record:
  object: deals
  reference_property: ref
  statuses: {new: a, archived: b}
""", encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_mapping(path, crm="hubspot")
    rendered = [str(p) for p in info.value.problems]
    assert any(":12: record.statuses" in r and "unknown statuses" in r for r in rendered) or any(
        ":9: record" in r for r in rendered), rendered
    path.write_text(path.read_text().replace("  statuses: {new: a, archived: b}\n", ""), encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_mapping(path, crm="salesforce")
    rendered = [str(p) for p in info.value.problems]
    assert any(f"{path}:7: contact.fields.firstname: unknown field path 'contact.frist_name'" in r for r in rendered)
    assert any(":8: contact.fields.lastname: template error" in r for r in rendered)
    assert any(":2: crm: this mapping is for 'hubspot'" in r for r in rendered)


def test_required_schema_names_unique_keys_and_every_stage_in_the_scheme_order() -> None:
    schema = required_schema(HUBSPOT)
    assert schema.objects["contacts"].fields["chat2crm_contact_key"].unique
    assert schema.objects["deals"].fields["chat2crm_reference"].unique
    (pipeline, stages), = schema.objects["deals"].pipelines.items()
    assert pipeline == HUBSPOT.record.pipeline and stages == [HUBSPOT.record.statuses[s] for s in STATUSES]


def test_labels_per_language_are_read_in_the_clinic_language() -> None:
    data = {"version": 1, "crm": "hubspot", "contact": {"object": "contacts", "key_property": "k"},
            "record": {"object": "deals", "reference_property": "r", "stage_property": "dealstage",
                       "pipeline": {"en": "Patients", "tr": "Hastalar"},
                       "statuses": {"new": {"en": "New", "tr": "Yeni"}, "reviewing": {"en": "Reviewing"},
                                    "on_hold": "onhold_id", "done": {"de": "Erledigt", "ru": "Готово"}}}}
    mapping = Mapping.model_validate(data)
    turkish = mapping.in_language("tr")
    assert turkish.record is not None and turkish.record.pipeline == "Hastalar"
    # a language a label lacks falls back to English, then to the label's first language
    assert turkish.record.stage_labels() == ["Yeni", "Reviewing", "Erledigt", "onhold_id"]
    assert required_schema(turkish).objects["deals"].pipelines == {"Hastalar": ["Yeni", "Reviewing", "Erledigt",
                                                                               "onhold_id"]}
    assert mapping.in_language("en").record.pipeline == "Patients"  # type: ignore[union-attr]


def test_published_schema_is_current() -> None:
    current = json.loads((SCHEMAS / "mapping.schema.json").read_text(encoding="utf-8"))
    assert current["properties"] == Mapping.model_json_schema()["properties"]


# -- notes an agent can read ---------------------------------------------------------------------
SHIPPED = [(path.name, load_mapping(path, crm=path.stem.split("-")[0])) for path in sorted(MAPPINGS.glob("*.yaml"))]


class _Reader(HTMLParser):
    """What an agent sees of an HTML body: its text (comments are not shown)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def seen(body: str) -> str:
    reader = _Reader()
    reader.feed(body)
    reader.close()
    return "".join(reader.parts)


def _tricky_lead() -> Any:
    lead = make_lead(handoff_reason="too_many_attempts", summary="Hair enquiry from Tom & Jerry\nNote: <b>bold</b>")
    return lead.model_copy(update={
        "contact": lead.contact.model_copy(update={"name": "Tom & Jerry"}),
        "answers": {"treatment": "hair_transplant", "treatment_label": "Saç ekimi",
                    "travel_dates": {"start": "2027-03-10", "end": "2027-03-17"}, "travel_dates_text": "10-17 Mart",
                    "consent": True, "note": "<script>alert(1)</script> Tom & Jerry", "photos": None}})


@pytest.mark.parametrize(("name", "mapping"), SHIPPED, ids=[n for n, _ in SHIPPED])
def test_every_shipped_note_escapes_what_the_patient_wrote(name: str, mapping: Mapping) -> None:
    result = plan(_tricky_lead(), mapping)
    assert result.note is not None
    body = result.note.body
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt; Tom &amp; Jerry" in body
    assert "<b>bold</b>" not in body and "Tom &amp; Jerry" in body
    text = seen(body)
    assert "<script>alert(1)</script> Tom & Jerry" in text and "Note: <b>bold</b>" in text  # shown as written
    # people's words for dates and yes/no; no Python reprs, no raw field names, no marker in sight
    assert "Travel dates: 10–17 March 2027 (10-17 Mart)" in text and "Consent: yes" in text
    for internal in ("{'start'", "True", "travel_dates", "_label", "chat2crm:#1042"):
        assert internal not in text, internal
    assert body.endswith("<!-- chat2crm:#1042:note -->") and result.note.marker == "chat2crm:#1042:note"


@pytest.mark.parametrize(("name", "mapping"), SHIPPED, ids=[n for n, _ in SHIPPED])
def test_subjects_are_plain_text_and_task_bodies_follow_the_crm(name: str, mapping: Mapping) -> None:
    result = plan(_tricky_lead(), mapping)
    assert result.task is not None and result.task.subject == "Reply to Tom & Jerry (#1042): handed over"
    if mapping.crm == "salesforce":  # Task.Description is plain text: the marker is its last line
        assert result.task.body.endswith("\n\nchat2crm:#1042:task") and "<!--" not in result.task.body
    else:  # HubSpot's hs_task_body and Pipedrive's activity note are HTML
        assert result.task.body.endswith("<!-- chat2crm:#1042:task -->")
        assert "chat2crm" not in seen(result.task.body)


def test_a_patients_name_in_a_record_field_is_not_escaped() -> None:
    result = plan(_tricky_lead(), HUBSPOT)
    assert result.record is not None and result.record.properties["dealname"] == "Hair transplant – Tom & Jerry (#1042)"


def test_a_declined_consent_shows_as_no_and_a_skipped_answer_not_at_all() -> None:
    lead = make_lead(answers={"consent": False, "email": None, "photos": []})
    text = seen(plan(lead, HUBSPOT).note.body)  # type: ignore[union-attr]
    assert "Consent: no" in text and "Email" not in text and "Photos" not in text
