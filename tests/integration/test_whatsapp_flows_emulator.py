"""WhatsApp Flows in the WhatsApp emulator, over real HTTP: the Flows API (create, upload, publish, list, details,
deprecate) with Meta's errors, Meta's Flow JSON validation errors (each rule failing once, the relay's form
passing), the checks on a ``flow`` message, and the patient who fills the form in: the ``nfm_reply`` webhook the
relay receives, and the values WhatsApp would not let through."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from connector.channels.whatsapp import verify_signature
from emulators._checks import whatsapp_webhook_errors
from emulators.server import ServedApp
from emulators.whatsapp import WhatsAppEmulator
from tests.conftest import TEST_SECRETS
from tests.integration.channel_servers import Receiver

ACCOUNT = TEST_SECRETS["whatsapp_phone_number_id"]
TOKEN = TEST_SECRETS["whatsapp_access_token"]
PATIENT = "905321112233"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: the form the relay uploads: one screen, components without a Form (Flow JSON 4.0+)
RELAY_FORM: dict[str, Any] = {
    "version": "7.0",
    "screens": [{"id": "DETAILS", "title": "Your request", "terminal": True, "success": True, "data": {},
                 "layout": {"type": "SingleColumnLayout", "children": [
                     {"type": "TextBody", "text": "A few details, all on one page."},
                     {"type": "TextInput", "name": "location", "label": "City and country", "input-type": "text",
                      "required": True, "helper-text": "Which country and city do you live in?"},
                     {"type": "TextInput", "name": "email", "label": "E-mail", "input-type": "email",
                      "required": False},
                     {"type": "RadioButtonsGroup", "name": "contact_language", "label": "Language", "required": True,
                      "data-source": [{"id": "tr", "title": "Türkçe"}, {"id": "en", "title": "English"}]},
                     {"type": "Dropdown", "name": "treatment", "label": "Treatment", "required": True,
                      "data-source": [{"id": "hair", "title": "Hair transplant"}]},
                     {"type": "TextArea", "name": "note", "label": "Note", "required": False},
                     {"type": "Footer", "label": "Send", "on-click-action": {"name": "complete", "payload": {
                         "location": "${form.location}", "email": "${form.email}",
                         "contact_language": "${form.contact_language}", "treatment": "${form.treatment}",
                         "note": "${form.note}"}}}]}}]}

#: a form with the other inputs, inside a Form wrapper, and screen data
RICH_FORM: dict[str, Any] = {
    "version": "7.3",
    "screens": [{"id": "BOOKING", "title": "Booking", "terminal": True,
                 "data": {"clinic": {"type": "string", "__example__": "Istanbul"}},
                 "layout": {"type": "SingleColumnLayout", "children": [
                     {"type": "Form", "name": "booking", "children": [
                         {"type": "TextInput", "name": "age", "label": "Age", "input-type": "number",
                          "required": True},
                         {"type": "TextInput", "name": "phone", "label": "Phone", "input-type": "phone"},
                         {"type": "CheckboxGroup", "name": "areas", "label": "Areas", "required": True,
                          "max-selected-items": 2, "data-source": [{"id": "crown", "title": "Crown"},
                                                                   {"id": "front", "title": "Front"},
                                                                   {"id": "beard", "title": "Beard"}]},
                         {"type": "DatePicker", "name": "arrival", "label": "Arrival", "required": True,
                          "min-date": "2030-01-01", "max-date": "2030-12-31"},
                         {"type": "OptIn", "name": "consent", "label": "I agree to be contacted", "required": True},
                         {"type": "Footer", "label": "Book", "on-click-action": {"name": "complete", "payload": {
                             "age": "${form.age}", "phone": "${form.phone}", "areas": "${form.areas}",
                             "arrival": "${form.arrival}", "consent": "${form.consent}",
                             "clinic": "${data.clinic}"}}}]}]}}]}


@pytest.fixture
def emulator() -> Iterator[WhatsAppEmulator]:
    emulator = WhatsAppEmulator(access_token=TOKEN, phone_number_id=ACCOUNT,
                                app_secret=TEST_SECRETS["whatsapp_app_secret"])
    with ServedApp(emulator.app) as served:
        emulator.url = served.url  # type: ignore[attr-defined]
        yield emulator


class Graph:
    """The Flows API calls, as a client makes them (multipart forms, a bearer token)."""

    def __init__(self, emulator: WhatsAppEmulator, token: str = TOKEN) -> None:
        self.emulator = emulator
        self.base = f"{emulator.url}/v23.0"  # type: ignore[attr-defined]
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.base}/{path}", headers=self.headers, timeout=10, **kwargs)

    def create(self, name: str, categories: str = '["LEAD_GENERATION"]', **more: str) -> requests.Response:
        fields = {"name": name, "categories": categories, **more}
        return self.call("POST", f"{self.emulator.waba_id}/flows", files={k: (None, v) for k, v in fields.items()})

    def upload(self, flow_id: str, text: str | bytes, *, name: str = "flow.json",
               asset_type: str = "FLOW_JSON") -> requests.Response:
        content = text.encode() if isinstance(text, str) else text
        return self.call("POST", f"{flow_id}/assets", files={
            "file": ("flow.json", content, "application/json"), "name": (None, name),
            "asset_type": (None, asset_type)})

    def draft(self, name: str, form: dict[str, Any] | str = RELAY_FORM) -> str:
        """A draft with ``form`` uploaded (checked to be valid when it is a dict)."""
        flow_id = self.create(name).json()["id"]
        answer = self.upload(flow_id, form if isinstance(form, str) else json.dumps(form, indent=2)).json()
        assert isinstance(form, str) or answer == {"success": True, "validation_errors": []}, answer
        return str(flow_id)

    def published(self, name: str, form: dict[str, Any] = RELAY_FORM) -> str:
        flow_id = self.draft(name, form)
        assert self.call("POST", f"{flow_id}/publish").json() == {"success": True}
        return flow_id

    def send(self, parameters: dict[str, Any], to: str = PATIENT) -> requests.Response:
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "interactive",
                "interactive": {"type": "flow", "body": {"text": "Tell us about your request"},
                                "action": {"name": "flow", "parameters": {"flow_message_version": "3",
                                                                          "flow_cta": "Fill in the form",
                                                                          **parameters}}}}
        return self.call("POST", f"{ACCOUNT}/messages", json=body)


def _error(response: requests.Response) -> dict[str, Any]:
    assert response.status_code >= 400, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


# -- the Flows API ---------------------------------------------------------------------------------------------
def test_create_upload_publish_then_list_and_get(emulator: WhatsAppEmulator) -> None:
    graph = Graph(emulator)
    created = graph.create("intake_tr_1a2b", '["LEAD_GENERATION", "CONTACT_US"]')
    assert created.status_code == 200 and set(created.json()) == {"id"}
    flow_id = created.json()["id"]
    assert flow_id.isdigit()
    assert graph.call("GET", flow_id).json() == {"id": flow_id, "name": "intake_tr_1a2b", "status": "DRAFT",
                                                 "categories": ["LEAD_GENERATION", "CONTACT_US"],
                                                 "validation_errors": []}
    text = json.dumps(RELAY_FORM, indent=2, ensure_ascii=False)
    assert graph.upload(flow_id, text).json() == {"success": True, "validation_errors": []}
    assert graph.call("POST", f"{flow_id}/publish").json() == {"success": True}

    listed = graph.call("GET", f"{emulator.waba_id}/flows", params={"fields": "id,name,status", "limit": 100}).json()
    assert listed["data"] == [{"id": flow_id, "name": "intake_tr_1a2b", "status": "PUBLISHED"}]
    assert "next" not in listed["paging"] and listed["paging"]["cursors"]["after"]
    details = graph.call("GET", flow_id, params={"fields": "json_version,status,whatsapp_business_account"}).json()
    assert details == {"id": flow_id, "json_version": "7.0", "status": "PUBLISHED",
                       "whatsapp_business_account": {"id": emulator.waba_id}}
    assets = graph.call("GET", f"{flow_id}/assets").json()["data"]
    assert [(a["name"], a["asset_type"]) for a in assets] == [("flow.json", "FLOW_JSON")]
    assert requests.get(assets[0]["download_url"], timeout=10).text == text
    assert emulator.flows.get(flow_id).flow_json == RELAY_FORM  # type: ignore[union-attr]
    assert not emulator.violations


def test_list_pages_with_limit_and_after(emulator: WhatsAppEmulator) -> None:
    graph = Graph(emulator)
    ids = [graph.create(f"form_{n}").json()["id"] for n in range(5)]
    first = graph.call("GET", f"{emulator.waba_id}/flows", params={"limit": 2, "fields": "id"}).json()
    assert [f["id"] for f in first["data"]] == ids[:2] and "next" in first["paging"]
    seen = [f["id"] for f in first["data"]]
    page = first
    while "next" in page["paging"]:
        page = requests.get(page["paging"]["next"], headers=AUTH, timeout=10).json()
        seen += [f["id"] for f in page["data"]]
    assert seen == ids
    after = graph.call("GET", f"{emulator.waba_id}/flows",
                       params={"limit": 10, "after": first["paging"]["cursors"]["after"]}).json()
    assert [f["id"] for f in after["data"]] == ids[2:]
    assert set(after["data"][0]) == {"id", "name", "status", "categories", "validation_errors"}


def test_creating_refuses_what_meta_refuses(emulator: WhatsAppEmulator) -> None:
    graph = Graph(emulator)
    waba = emulator.waba_id
    no_name = graph.call("POST", f"{waba}/flows", files={"categories": (None, '["OTHER"]')})
    assert _error(no_name)["message"] == "(#100) The parameter name is required"
    assert _error(graph.create("a", "[]"))["message"] == "(#100) The parameter categories is required"
    wrong = _error(graph.create("b", '["OTHER", "SHOPPING_CART"]'))
    assert wrong["code"] == 100 and 'got "SHOPPING_CART"' in wrong["message"] and "SIGN_UP" in wrong["message"]
    assert _error(graph.create("c", "OTHER"))["code"] == 100  # not a JSON array
    assert _error(graph.create("d", endpoint_uri="not a url"))["error_user_title"] == "Invalid Endpoint URI"
    odd = graph.call("POST", f"{waba}/flows", files={"name": (None, "e"), "categories": (None, '["OTHER"]'),
                                                     "colour": (None, "blue")})
    assert "colour" in _error(odd)["message"]
    assert len(emulator.violations) == 6  # each a request the relay should never make
    assert graph.create("intake").status_code == 200
    taken = _error(graph.create("intake"))
    assert (taken["code"], taken["error_subcode"], taken["error_user_title"]) == (100, 4016019,
                                                                                   "Flow name is not unique")
    assert len(emulator.flows.all()) == 1 and len(emulator.violations) == 6
    every = {c: graph.create(f"cat_{c}", json.dumps([c])).status_code for c in
             ("SIGN_UP", "SIGN_IN", "APPOINTMENT_BOOKING", "LEAD_GENERATION", "CONTACT_US", "CUSTOMER_SUPPORT",
              "SURVEY", "OTHER")}
    assert set(every.values()) == {200}


def test_a_bad_token_and_unknown_ids_get_graph_errors(emulator: WhatsAppEmulator) -> None:
    graph = Graph(emulator)
    flow_id = graph.create("form").json()["id"]
    stranger = Graph(emulator, token="EAAwrong")
    for response in (stranger.create("x"), stranger.call("GET", flow_id), stranger.call("POST", f"{flow_id}/publish"),
                     stranger.upload(flow_id, "{}")):
        assert response.status_code == 401 and response.json()["error"]["code"] == 190
    for response in (graph.call("GET", "123456789/flows"), graph.call("POST", "999999999999999/publish"),
                     graph.upload("999999999999999", "{}"), graph.call("POST", "999999999999999/deprecate")):
        error = _error(response)
        assert (error["type"], error["code"], error["error_subcode"]) == ("GraphMethodException", 100, 33)
    assert _error(graph.call("GET", flow_id, params={"fields": "id,colour"}))["code"] == 100


def test_faults_reach_the_flows_api(emulator: WhatsAppEmulator) -> None:
    graph = Graph(emulator)
    emulator.fail_next(1, "500")
    failed = graph.create("form")
    assert failed.status_code == 500 and failed.json()["error"]["is_transient"] is True
    assert graph.create("form").status_code == 200


def test_published_flows_are_immutable_and_the_lifecycle_is_meta_s(emulator: WhatsAppEmulator) -> None:
    graph = Graph(emulator)
    flow_id = graph.published("intake")
    again = _error(graph.upload(flow_id, json.dumps(RELAY_FORM)))
    assert (again["code"], again["message"]) == (139001, "Flow can't be updated")
    assert _error(graph.call("POST", flow_id, files={"name": (None, "renamed")}))["code"] == 139001
    assert _error(graph.call("DELETE", flow_id))["code"] == 139004
    assert _error(graph.call("POST", f"{flow_id}/publish"))["message"] == "Publishing Flow in invalid state"
    assert emulator.flows.get(flow_id).status == "PUBLISHED"  # type: ignore[union-attr]

    draft = graph.draft("draft")
    assert _error(graph.call("POST", f"{draft}/deprecate"))["message"] == "Can't deprecate unpublished flow"
    assert graph.call("POST", draft, files={"name": (None, "draft_renamed")}).json() == {"success": True}
    assert graph.call("DELETE", draft).json() == {"success": True}
    assert emulator.flows.get(draft) is None

    assert graph.call("POST", f"{flow_id}/deprecate").json() == {"success": True}
    assert _error(graph.call("POST", f"{flow_id}/deprecate"))["message"] == "Flow is already deprecated"
    assert graph.call("GET", flow_id, params={"fields": "status"}).json()["status"] == "DEPRECATED"
    assert not emulator.violations  # refusals of state, not malformed calls


def test_publishing_needs_a_valid_flow_json_in_a_publishable_version(emulator: WhatsAppEmulator) -> None:
    graph = Graph(emulator)
    empty = graph.create("empty").json()["id"]
    refused = _error(graph.call("POST", f"{empty}/publish"))
    assert (refused["code"], refused["message"]) == (139002, "Publishing Flow with validation errors")
    broken = copy.deepcopy(RELAY_FORM)
    del broken["screens"][0]["layout"]["children"][6]
    invalid = graph.draft("invalid", json.dumps(broken))
    assert graph.call("GET", invalid).json()["validation_errors"][0]["error"] == "MISSING_FOOTER_ON_TERMINAL_SCREEN"
    assert _error(graph.call("POST", f"{invalid}/publish"))["message"] == "Publishing Flow with validation errors"
    older = graph.draft("older", {**RELAY_FORM, "version": "5.0"})
    assert _error(graph.call("POST", f"{older}/publish"))["message"] == ("Versions in Flow JSON file are not "
                                                                         "available for publishing")
    fixed = graph.upload(invalid, json.dumps(RELAY_FORM)).json()
    assert fixed == {"success": True, "validation_errors": []}
    assert graph.call("POST", f"{invalid}/publish").json() == {"success": True}


def test_uploading_needs_the_documented_asset_fields(emulator: WhatsAppEmulator) -> None:
    graph = Graph(emulator)
    flow_id = graph.create("form").json()["id"]
    assert "name" in _error(graph.upload(flow_id, json.dumps(RELAY_FORM), name="form.json"))["message"]
    assert "asset_type" in _error(graph.upload(flow_id, json.dumps(RELAY_FORM), asset_type="JSON"))["message"]
    no_file = graph.call("POST", f"{flow_id}/assets", files={"name": (None, "flow.json"),
                                                             "asset_type": (None, "FLOW_JSON")})
    assert _error(no_file)["message"] == "(#100) The parameter file is required"
    assert len(emulator.violations) == 3
    assert emulator.flows.get(flow_id).flow_json is None  # type: ignore[union-attr]


# -- Flow JSON validation ----------------------------------------------------------------------------------------
def _children(form: dict[str, Any]) -> list[dict[str, Any]]:
    children: list[dict[str, Any]] = form["screens"][0]["layout"]["children"]
    return children


def _component(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda form: next(c for c in _children(form) if c["type"] == kind)


_input, _radio, _dropdown, _footer, _area = (_component("TextInput"), _component("RadioButtonsGroup"),
                                             _component("Dropdown"), _component("Footer"), _component("TextArea"))


def _insert(form: dict[str, Any], component: dict[str, Any]) -> list[dict[str, Any]]:
    """Put ``component`` second on the screen; the screen's components."""
    children = _children(form)
    children.insert(1, component)
    return children


def _many_options(count: int) -> list[dict[str, str]]:
    return [{"id": f"o{n}", "title": f"Option {n}"} for n in range(count)]


def _second_screen(form: dict[str, Any], **screen: Any) -> None:
    form["screens"].append({"id": "MORE", "layout": {"type": "SingleColumnLayout", "children": [
        {"type": "TextBody", "text": "More"}]}, **screen})


#: (what is changed in the relay's form, the error code, a part of the message)
CASES: dict[str, tuple[Callable[[dict[str, Any]], Any], str, str]] = {
    "no version": (lambda f: f.pop("version"), "MISSING_FLOW_JSON_VERSION", "not specified"),
    "unknown version": (lambda f: f.update(version="9.9"), "INVALID_FLOW_JSON_VERSION", "not supported"),
    "expired version": (lambda f: f.update(version="1.0"), "UNSUPPORTED_FLOW_JSON_VERSION", "Unsupported"),
    "version not a string": (lambda f: f.update(version=7.0), "INVALID_FLOW_JSON_VERSION", "not supported"),
    "no screens": (lambda f: f.update(screens=[]), "MIN_ITEMS_REQUIRED", "'screens' should have at least"),
    "top-level property": (lambda f: f.update(theme="dark"), "INVALID_PROPERTY", 'The property "theme"'),
    "data_channel_uri": (lambda f: f.update(data_channel_uri="https://x.example"), "INVALID_PROPERTY_KEY",
                         "no longer supported"),
    "duplicate screen ids": (lambda f: f["screens"].append(copy.deepcopy(f["screens"][0])), "DUPLICATE_SCREEN_IDS",
                             "'DETAILS'"),
    "reserved screen id": (lambda f: f["screens"][0].update(id="SUCCESS"), "SCREEN_ID_IS_RESERVED_KEYWORD",
                           "reserved keyword"),
    "digits in a screen id": (lambda f: f["screens"][0].update(id="STEP_1"), "PATTERN_MISMATCH",
                              "alphabets and underscores"),
    "only underscores (7.0)": (lambda f: f["screens"][0].update(id="__"), "PATTERN_MISMATCH", "alphabets"),
    "another layout": (lambda f: f["screens"][0]["layout"].update(type="TwoColumnLayout"), "INVALID_PROPERTY_VALUE",
                       "Expected 'SingleColumnLayout'"),
    "no layout": (lambda f: f["screens"][0].pop("layout"), "MISSING_REQUIRED_PROPERTY", "'layout'"),
    "unknown component": (lambda f: _insert(f, {"type": "Slider", "name": "s"}), "INVALID_PROPERTY_VALUE",
                          "Invalid value found for property 'type'."),
    "component without type": (lambda f: _insert(f, {"text": "Hi"}), "MISSING_REQUIRED_TYPE_PROPERTY", "'type'"),
    "RichText before 5.1": (lambda f: (f.update(version="5.0"), _insert(f, {"type": "RichText", "text": "x"})),
                            "INVALID_PROPERTY_VALUE", "'type'"),
    "heading without text": (lambda f: _insert(f, {"type": "TextHeading"}), "MISSING_REQUIRED_PROPERTY", "'text'"),
    "subheading over 80": (lambda f: _insert(f, {"type": "TextSubheading", "text": "x" * 81}),
                           "INVALID_PROPERTY_VALUE", "at most '80' characters"),
    "heading over 80": (lambda f: _insert(f, {"type": "TextHeading", "text": "x" * 81}), "INVALID_PROPERTY_VALUE",
                        "at most '80' characters"),
    "body over 4096": (lambda f: _children(f)[0].update(text="x" * 4097), "INVALID_PROPERTY_VALUE",
                       "at most '4096'"),
    "caption over 409": (lambda f: _insert(f, {"type": "TextCaption", "text": "x" * 410}), "INVALID_PROPERTY_VALUE",
                         "at most '409'"),
    "blank body": (lambda f: _children(f)[0].update(text="  "), "PATTERN_MISMATCH", "blank"),
    "text input without label": (lambda f: _input(f).pop("label"), "MISSING_REQUIRED_PROPERTY", "'label'"),
    "text input without name": (lambda f: _input(f).pop("name"), "MISSING_REQUIRED_PROPERTY", "'name'"),
    "text input label over 20": (lambda f: _input(f).update(label="City, region, country"), "INVALID_PROPERTY_VALUE",
                                 "'label' should have at most '20' characters"),
    "text input helper over 80": (lambda f: _input(f).update({"helper-text": "h" * 81}), "INVALID_PROPERTY_VALUE",
                                  "'helper-text' should have at most '80'"),
    "text input error over 30": (lambda f: _input(f).update({"error-message": "e" * 31}), "INVALID_PROPERTY_VALUE",
                                 "'error-message' should have at most '30'"),
    "input-type not in the enum": (lambda f: _input(f).update({"input-type": "url"}), "INVALID_ENUM_VALUE",
                                   "text, number, email, password, passcode, phone"),
    "required not a boolean": (lambda f: _input(f).update(required="yes"), "INVALID_PROPERTY_TYPE",
                               "'required' to be of type 'boolean'"),
    "pattern without helper-text": (lambda f: _area(f).update(type="TextInput", pattern="[0-9]+"),
                                    "INVALID_DEPENDENCIES", "helper-text"),
    "text area label over 20": (lambda f: _area(f).update(label="Anything else to add?"), "INVALID_PROPERTY_VALUE",
                                "'label' should have at most '20'"),
    "text area without name": (lambda f: _area(f).pop("name"), "MISSING_REQUIRED_PROPERTY", "'name'"),
    "radio without data-source": (lambda f: _radio(f).pop("data-source"), "MISSING_REQUIRED_PROPERTY",
                                  "'data-source'"),
    "radio without label (4.0+)": (lambda f: _radio(f).pop("label"), "MISSING_REQUIRED_PROPERTY", "'label'"),
    "radio label over 30": (lambda f: _radio(f).update(label="L" * 31), "INVALID_PROPERTY_VALUE", "at most '30'"),
    "radio without options": (lambda f: _radio(f).update({"data-source": []}), "MIN_ITEMS_REQUIRED", "at least '1'"),
    "radio over 20 options": (lambda f: _radio(f).update({"data-source": _many_options(21)}), "MAX_ITEMS_REQUIRED",
                              "at most '20' items"),
    "option title over 30": (lambda f: _radio(f)["data-source"][0].update(title="T" * 31), "INVALID_PROPERTY_VALUE",
                             "'title' should have at most '30'"),
    "option without id": (lambda f: _radio(f)["data-source"][0].pop("id"), "MISSING_REQUIRED_PROPERTY", "'id'"),
    "option property": (lambda f: _radio(f)["data-source"][0].update(value="tr"), "INVALID_PROPERTY",
                        "/data-source/0"),
    "checkbox group over 20 options": (lambda f: _radio(f).update(type="CheckboxGroup",
                                                                  **{"data-source": _many_options(21)}),
                                       "MAX_ITEMS_REQUIRED", "at most '20'"),
    "checkbox group min over max": (lambda f: _radio(f).update(type="CheckboxGroup", **{"min-selected-items": 2,
                                                                                        "max-selected-items": 1}),
                                    "MIN_VALUE_GREATER_THAN_MAX", "'min-selected-items' cannot be greater"),
    "dropdown label over 20": (lambda f: _dropdown(f).update(label="Which treatment, please?"),
                               "INVALID_PROPERTY_VALUE", "at most '20'"),
    "dropdown over 200 options": (lambda f: _dropdown(f).update({"data-source": _many_options(201)}),
                                  "MAX_ITEMS_REQUIRED", "at most '200' items"),
    "dropdown without label": (lambda f: _dropdown(f).pop("label"), "MISSING_REQUIRED_PROPERTY", "'label'"),
    "date picker label over 40": (lambda f: _insert(f, {"type": "DatePicker", "name": "d", "label": "D" * 41}),
                                  "INVALID_PROPERTY_VALUE", "at most '40'"),
    "date picker without name": (lambda f: _insert(f, {"type": "DatePicker", "label": "Date"}),
                                 "MISSING_REQUIRED_PROPERTY", "'name'"),
    "opt-in label over 120": (lambda f: _insert(f, {"type": "OptIn", "name": "o", "label": "O" * 121}),
                              "INVALID_PROPERTY_VALUE", "at most '120'"),
    "six opt-ins": (lambda f: [_insert(f, {"type": "OptIn", "name": f"o{n}", "label": "Yes"}) for n in range(6)],
                    "MAX_OPT_IN_PER_SCREEN", "OptIn allowed per screen is 5"),
    "three embedded links": (lambda f: [_insert(f, {"type": "EmbeddedLink", "text": "More", "on-click-action": {
        "name": "navigate", "next": {"type": "screen", "name": "DETAILS"}}}) for _ in range(3)],
                             "MAX_EMBEDDED_LINK_PER_SCREEN", "EmbeddedLink allowed per screen is 2"),
    "embedded link completes": (lambda f: _insert(f, {"type": "EmbeddedLink", "text": "Done", "on-click-action": {
        "name": "complete", "payload": {}}}), "INVALID_ENUM_VALUE", "[data_exchange, navigate, open_url]"),
    "footer label over 35": (lambda f: _footer(f).update(label="F" * 36), "INVALID_PROPERTY_VALUE", "at most '35'"),
    "footer without label": (lambda f: _footer(f).pop("label"), "MISSING_REQUIRED_PROPERTY", "'label'"),
    "footer without action": (lambda f: _footer(f).pop("on-click-action"), "MISSING_REQUIRED_PROPERTY",
                              "'on-click-action'"),
    "two footers": (lambda f: _children(f).append(copy.deepcopy(_footer(f))), "MAX_FOOTER_PER_SCREEN",
                    "Footer allowed per screen is 1"),
    "three captions": (lambda f: _footer(f).update({"left-caption": "a", "right-caption": "b",
                                                    "center-caption": "c"}),
                       "NOT_KEYWORD_SCHEMA_VALIDATION_FAILED", "exclusively"),
    "caption over 15": (lambda f: _footer(f).update({"center-caption": "C" * 16}), "INVALID_PROPERTY_VALUE",
                        "at most '15'"),
    "duplicate names": (lambda f: _area(f).update(name="location"), "DUPLICATE_FORM_COMPONENT_NAMES", "'location'"),
    "terminal screen without footer": (lambda f: _children(f).remove(_footer(f)),
                                       "MISSING_FOOTER_ON_TERMINAL_SCREEN", "'DETAILS'"),
    "no terminal screen": (lambda f: f["screens"][0].update(terminal=False), "MISSING_TERMINAL_SCREEN",
                           "Terminal screen is required"),
    "complete on a non-terminal screen": (lambda f: f["screens"][0].pop("terminal"), "INVALID_COMPLETE_ACTION",
                                          "only be configured on a terminal screen"),
    "success on a non-terminal screen": (lambda f: f["screens"][0].update(terminal=False),
                                         "NOT_KEYWORD_SCHEMA_VALIDATION_FAILED", "only be specified on a terminal"),
    "no successful terminal screen": (lambda f: f["screens"][0].update(success=False), "INVALID_PROPERTY_VALUE",
                                      "'success' set as true"),
    "complete payload names no component": (
        lambda f: _footer(f)["on-click-action"]["payload"].update(city="${form.city}"),
        "INVALID_ON_CLICK_ACTION_PAYLOAD", "Missing Form component ${form.city} for screen 'DETAILS'."),
    "complete payload names no data": (
        lambda f: _footer(f)["on-click-action"]["payload"].update(ref="${data.ref}"),
        "INVALID_ON_CLICK_ACTION_PAYLOAD", "Missing dynamic data '${data.ref}'"),
    "complete without payload": (lambda f: _footer(f)["on-click-action"].pop("payload"), "MISSING_REQUIRED_PROPERTY",
                                 "'payload'"),
    "navigate to an unknown screen": (
        lambda f: _footer(f).update({"on-click-action": {"name": "navigate", "next": {"type": "screen",
                                                                                     "name": "NOWHERE"}}}),
        "INVALID_NAVIGATE_ACTION_NEXT_SCREEN_NAME", "Unknown screen ids found: [NOWHERE]"),
    "data_exchange without an endpoint": (
        lambda f: _footer(f)["on-click-action"].update(name="data_exchange"), "MISSING_REQUIRED_PROPERTY",
        "'data_api_version' is required for data_exchange"),
    "refresh_on_back without an endpoint": (lambda f: f["screens"][0].update(refresh_on_back=True),
                                            "INVALID_PROPERTY_VALUE", "refresh_on_back"),
    "a screen no action reaches": (_second_screen, "INVALID_ROUTING_MODEL", "[MORE]"),
    "data field without type": (lambda f: f["screens"][0].update(data={"ref": {"__example__": "x"}}),
                                "INVALID_SCREEN_DATA", "'type'"),
    "dynamic text without data": (lambda f: _children(f)[0].update(text="${data.intro}"),
                                  "INVALID_SCREEN_DYNAMIC_DATA", "'${data.intro}'"),
    "input outside the Form": (lambda f: _children(f).insert(1, {"type": "Form", "name": "f", "children": [
        {"type": "TextInput", "name": "x", "label": "X"}]}), "COMPONENTS_OUTSIDE_FORM", "not allowed outside Form"),
    "init-value inside a Form": (lambda f: _children(f).insert(1, {"type": "Form", "name": "f", "children": [
        {"type": "TextInput", "name": "x", "label": "X", "init-value": "y"}]}), "INVALID_PROPERTY", '"init-value"'),
    "input outside a Form before 4.0": (lambda f: f.update(version="3.1"), "KEYWORD_ONE_OF",
                                        "must be defined inside parent property 'Form'"),
    "If with an empty then": (lambda f: _insert(f, {"type": "If", "condition": "${form.location} != ''",
                                                    "then": []}), "INVALID_PROPERTY_VALUE", "at least one component"),
    "Switch without cases": (lambda f: _insert(f, {"type": "Switch", "value": "${form.treatment}", "cases": {}}),
                             "EMPTY_SWITCH_CASES", "cannot be empty"),
    "51 components": (lambda f: [_insert(f, {"type": "TextBody", "text": "t"}) for _ in range(45)],
                      "MAX_ALLOWED_COMPONENTS_PER_SCREEN", "50"),
}


@pytest.fixture(scope="module")
def validating() -> Iterator[tuple[Graph, str]]:
    """One emulator and one draft flow, its Flow JSON uploaded again for each case."""
    emulator = WhatsAppEmulator(access_token=TOKEN, phone_number_id=ACCOUNT,
                                app_secret=TEST_SECRETS["whatsapp_app_secret"])
    with ServedApp(emulator.app) as served:
        emulator.url = served.url  # type: ignore[attr-defined]
        graph = Graph(emulator)
        yield graph, graph.create("validation").json()["id"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_flow_json_rule_has_meta_s_validation_error(validating: tuple[Graph, str], case: str) -> None:
    graph, flow_id = validating
    change, code, said = CASES[case]
    form = copy.deepcopy(RELAY_FORM)
    change(form)
    text = json.dumps(form, indent=2, ensure_ascii=False)
    answer = graph.upload(flow_id, text).json()
    assert answer["success"] is True
    found = [e for e in answer["validation_errors"] if e["error"] == code and said in e["message"]]
    assert found, (code, said, answer["validation_errors"])
    lines = text.splitlines()
    for error in answer["validation_errors"]:
        assert 1 <= error["line_start"] <= error["line_end"] <= len(lines)
        assert error["error_type"] in ("FLOW_JSON_ERROR", "JSON_SCHEMA_ERROR")
        assert error["pointers"][0]["line_start"] == error["line_start"]


@pytest.mark.parametrize("version", ["5.1", "6.0", "6.1", "6.2", "6.3", "7.0", "7.1", "7.2", "7.3"])
def test_the_relay_form_is_valid_in_every_publishable_version(validating: tuple[Graph, str], version: str) -> None:
    graph, flow_id = validating
    answer = graph.upload(flow_id, json.dumps({**RELAY_FORM, "version": version})).json()
    assert answer == {"success": True, "validation_errors": []}


@pytest.mark.parametrize("form", [RICH_FORM, {  # the same form as the relay's, inside a Form, with screen data
    **RELAY_FORM, "screens": [{**RELAY_FORM["screens"][0], "data": {"ref": {"type": "string", "__example__": "A1"}},
                               "layout": {"type": "SingleColumnLayout", "children": [
                                   {"type": "Form", "name": "form", "children": [
                                       *_children(copy.deepcopy(RELAY_FORM))[:-1],
                                       {**_children(RELAY_FORM)[-1], "on-click-action": {"name": "complete", "payload": {
                                           "location": "${form.location}", "ref": "${data.ref}"}}}]}]}}]}])
def test_other_valid_forms_pass(validating: tuple[Graph, str], form: dict[str, Any]) -> None:
    graph, flow_id = validating
    assert graph.upload(flow_id, json.dumps(form)).json() == {"success": True, "validation_errors": []}


def test_an_unknown_property_is_reported_as_the_description_shows_it(validating: tuple[Graph, str]) -> None:
    graph, flow_id = validating
    form = copy.deepcopy(RELAY_FORM)
    form["screens"][0]["layout"]["children"] = [{"type": "Form", "name": "form", "children": [
        *_children(RELAY_FORM)[:2], {**_children(RELAY_FORM)[2], "initial-text": "you@example.com"},
        *_children(RELAY_FORM)[3:]]}]
    text = json.dumps(form, indent=2, ensure_ascii=False)
    [error] = graph.upload(flow_id, text).json()["validation_errors"]
    assert (error["error"], error["error_type"]) == ("INVALID_PROPERTY", "JSON_SCHEMA_ERROR")
    assert error["message"] == ('The property "initial-text" cannot be specified at '
                                '"$root/screens/0/layout/children/0/children/2".')
    line = text.splitlines()[error["line_start"] - 1]
    assert error["line_start"] == error["line_end"]
    assert line[error["column_start"] - 1:error["column_end"]] == '"initial-text"'


def test_json_that_does_not_parse_is_one_error_where_it_breaks(validating: tuple[Graph, str]) -> None:
    graph, flow_id = validating
    [error] = graph.upload(flow_id, '{\n  "version": "7.0",\n  "screens": [,]\n}').json()["validation_errors"]
    assert (error["error"], error["message"], error["line_start"]) == ("INVALID_FLOW_JSON", "Flow JSON is not valid.",
                                                                       3)


# -- sending a flow ------------------------------------------------------------------------------------------------
def test_a_published_flow_is_sent_as_the_relay_sends_it(emulator: WhatsAppEmulator) -> None:
    graph = Graph(emulator)
    flow_id = graph.published("intake")
    sent = graph.send({"flow_id": flow_id, "flow_token": "tok-1", "flow_action": "navigate",
                       "flow_action_payload": {"screen": "DETAILS"}})
    assert sent.status_code == 200, sent.text
    [message] = emulator.messages_to(PATIENT)
    assert message.id == sent.json()["messages"][0]["id"]
    assert message.payload["interactive"]["action"]["parameters"]["flow_id"] == flow_id
    assert graph.send({"flow_name": "intake"}).status_code == 200
    assert not emulator.violations


def test_sending_refuses_what_meta_refuses(emulator: WhatsAppEmulator) -> None:
    graph = Graph(emulator)
    published, draft = graph.published("intake"), graph.draft("intake_draft")
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "unknown flow": ({"flow_id": "999999999999999"}, "does not exist"),
        "unknown name": ({"flow_name": "nobody"}, "does not exist"),
        "draft without mode": ({"flow_id": draft}, "without specifying draft mode"),
        "published in draft mode": ({"flow_id": published, "mode": "draft"}, "PUBLISHED flow is sent with draft"),
        "screen not in the flow": ({"flow_id": published, "flow_action_payload": {"screen": "WELCOME"}},
                                   "'WELCOME' is not a screen"),
        "empty data": ({"flow_id": published, "flow_action_payload": {"screen": "DETAILS", "data": {}}},
                       "non-empty"),
        "data_exchange without payload": ({"flow_id": published, "flow_action": "data_exchange"},
                                          "flow_action_payload is required"),
    }
    for name, (parameters, said) in cases.items():
        error = _error(graph.send(parameters))
        assert (error["code"], error["message"]) == (100, "(#100) Invalid parameter"), name
        assert said in error["error_data"]["details"], (name, error)
    assert not emulator.sent and len(emulator.violations) == len(cases)
    assert graph.send({"flow_id": draft, "mode": "draft"}).status_code == 200
    assert graph.call("POST", f"{published}/deprecate").status_code == 200
    assert "does not exist" in _error(graph.send({"flow_id": published}))["error_data"]["details"]
    assert _error(graph.send({"flow_id": published, "flow_cta": "C" * 31}))["code"] == 100  # the description's limit


# -- the patient fills the form ------------------------------------------------------------------------------------
@pytest.fixture
def receiver(emulator: WhatsAppEmulator) -> Iterator[Receiver]:
    with Receiver() as started:
        emulator.relay_url = started.url
        yield started


def _answered(receiver: Receiver) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last webhook's message, and its ``response_json`` read."""
    webhook = receiver.received[-1]
    verify_signature(webhook.raw, webhook.headers.get("X-Hub-Signature-256"), TEST_SECRETS["whatsapp_app_secret"])
    assert whatsapp_webhook_errors(webhook.body) == []
    [message] = webhook.body["entry"][0]["changes"][0]["value"]["messages"]
    return message, json.loads(message["interactive"]["nfm_reply"]["response_json"])


def test_the_patient_s_answers_arrive_as_meta_s_nfm_reply(emulator: WhatsAppEmulator, receiver: Receiver) -> None:
    graph = Graph(emulator)
    flow_id = graph.published("intake")
    sent = graph.send({"flow_id": flow_id, "flow_token": "lead:905321112233:7", "flow_action": "navigate",
                       "flow_action_payload": {"screen": "DETAILS"}}).json()["messages"][0]["id"]
    patient = emulator.patient(PATIENT, "Ayşe")
    status = patient.fill_flow({"location": "İzmir, Türkiye", "contact_language": "tr", "treatment": "hair",
                                "note": "Mostly the crown"})
    assert status == 200
    message, answers = _answered(receiver)
    assert answers == {"flow_token": "lead:905321112233:7", "location": "İzmir, Türkiye", "contact_language": "tr",
                       "treatment": "hair", "note": "Mostly the crown"}  # the e-mail left empty is left out
    assert next(iter(answers)) == "flow_token"
    assert message["type"] == "interactive" and message["from"] == PATIENT
    assert message["interactive"]["type"] == "nfm_reply"
    assert {k: v for k, v in message["interactive"]["nfm_reply"].items() if k != "response_json"} == {
        "name": "flow", "body": "Sent"}
    assert message["context"] == {"from": emulator.display_phone_number, "id": sent}
    assert not emulator.violations


def test_the_token_defaults_to_unused_and_the_message_can_be_named(emulator: WhatsAppEmulator,
                                                                   receiver: Receiver) -> None:
    graph = Graph(emulator)
    flow_id = graph.published("intake")
    graph.send({"flow_id": flow_id, "flow_token": "first"})
    graph.send({"flow_name": "intake"})  # no token, no payload: the first screen
    first, last = emulator.messages_to(PATIENT)
    patient = emulator.patient(PATIENT)
    values = {"location": "Baku", "contact_language": "en", "treatment": "hair", "email": "a@b.az"}
    patient.fill_flow(values)
    message, answers = _answered(receiver)
    assert answers["flow_token"] == "unused" and answers["email"] == "a@b.az"
    assert message["context"]["id"] == last.id
    patient.fill_flow(values, message=first)
    message, answers = _answered(receiver)
    assert (answers["flow_token"], message["context"]["id"]) == ("first", first.id)


def test_screen_data_and_the_other_inputs_are_sent_back(emulator: WhatsAppEmulator, receiver: Receiver) -> None:
    graph = Graph(emulator)
    flow_id = graph.published("booking", RICH_FORM)
    graph.send({"flow_id": flow_id, "flow_token": "b-1",
                "flow_action_payload": {"screen": "BOOKING", "data": {"clinic": "Antalya"}}})
    emulator.patient(PATIENT).fill_flow({"age": "34", "areas": ["crown", "front"], "arrival": "2030-05-02",
                                         "consent": True, "phone": "+994 50 123 45 67"})
    _, answers = _answered(receiver)
    assert answers == {"flow_token": "b-1", "age": "34", "phone": "+994 50 123 45 67", "areas": ["crown", "front"],
                       "arrival": "2030-05-02", "consent": True, "clinic": "Antalya"}


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "required field missing": ({"contact_language": "tr", "treatment": "hair"}, "location: required"),
    "required field blank": ({"location": "", "contact_language": "tr", "treatment": "hair"}, "location: required"),
    "option not offered": ({"location": "Baku", "contact_language": "de", "treatment": "hair"}, "not one of"),
    "implausible e-mail": ({"location": "Baku", "contact_language": "en", "treatment": "hair", "email": "a@b"},
                           "plausible email"),
    "unknown field": ({"location": "Baku", "contact_language": "en", "treatment": "hair", "budget": "5000"},
                      "budget: no such field"),
    "too long for a text input": ({"location": "x" * 81, "contact_language": "en", "treatment": "hair"},
                                  "at most 80"),
    "not text": ({"location": 34, "contact_language": "en", "treatment": "hair"}, "takes text"),
}
REFUSED_RICH: dict[str, tuple[dict[str, Any], str]] = {
    "number": ({"age": "thirty"}, "plausible number"),
    "phone": ({"phone": "12"}, "plausible phone"),
    "checkboxes not a list": ({"areas": "crown"}, "list of distinct option ids"),
    "checkbox not offered": ({"areas": ["crown", "neck"]}, "list of distinct option ids"),
    "too many checkboxes": ({"areas": ["crown", "front", "beard"]}, "between"),
    "date format": ({"arrival": "02/05/2030"}, "YYYY-MM-DD"),
    "no such date": ({"arrival": "2030-02-30"}, "no date"),
    "date out of range": ({"arrival": "2031-01-01"}, "after the last date"),
    "required opt-in not ticked": ({"consent": False}, "consent: required"),
}


def test_values_whatsapp_would_not_let_through_are_refused(emulator: WhatsAppEmulator, receiver: Receiver) -> None:
    graph = Graph(emulator)
    patient = emulator.patient(PATIENT)
    with pytest.raises(ValueError, match="no WhatsApp Flow"):
        patient.fill_flow({"location": "Baku"})
    graph.send({"flow_id": graph.published("intake")})
    for name, (values, said) in REFUSED.items():
        with pytest.raises(ValueError, match=said):
            patient.fill_flow(values)
        assert not receiver.received, name
    graph.send({"flow_id": graph.published("booking", RICH_FORM),
                "flow_action_payload": {"screen": "BOOKING", "data": {"clinic": "Antalya"}}})
    good = {"age": "34", "areas": ["crown"], "arrival": "2030-05-02", "consent": True}
    for name, (change, said) in REFUSED_RICH.items():
        with pytest.raises(ValueError, match=said):
            patient.fill_flow({**good, **change})
        assert not receiver.received, name
    assert patient.fill_flow(good) == 200 and len(receiver.received) == 1


def test_a_deprecated_flow_no_longer_opens(emulator: WhatsAppEmulator, receiver: Receiver) -> None:
    graph = Graph(emulator)
    flow_id = graph.published("intake")
    graph.send({"flow_id": flow_id})
    graph.call("POST", f"{flow_id}/deprecate")
    with pytest.raises(ValueError, match="deprecated"):
        emulator.patient(PATIENT).fill_flow({"location": "Baku", "contact_language": "en", "treatment": "hair"})


def test_the_demo_fills_the_form_through_the_control_endpoint(emulator: WhatsAppEmulator, receiver: Receiver) -> None:
    graph = Graph(emulator)
    graph.send({"flow_id": graph.published("intake"), "flow_token": "demo"})
    url = f"{emulator.url}/_emulator/patients/{PATIENT}/flow"  # type: ignore[attr-defined]
    refused = requests.post(url, json={"values": {"location": "Baku", "treatment": "hair"}}, timeout=10)
    assert refused.status_code == 400 and refused.json()["error"] == "contact_language: required"
    assert requests.post(url, json={"values": "Baku"}, timeout=10).status_code == 400
    done = requests.post(url, json={"values": {"location": "Baku", "contact_language": "en", "treatment": "hair"}},
                         timeout=10)
    assert done.json() == {"relay_status": 200}
    _, answers = _answered(receiver)
    assert answers == {"flow_token": "demo", "location": "Baku", "contact_language": "en", "treatment": "hair"}
    listed = requests.get(f"{emulator.url}/_emulator/flows", timeout=10).json()  # type: ignore[attr-defined]
    assert [(f["name"], f["status"], f["flow_json"]) for f in listed] == [("intake", "PUBLISHED", RELAY_FORM)]
