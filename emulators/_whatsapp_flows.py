"""WhatsApp Flows in the WhatsApp emulator: the Flows API, the checks on a ``flow`` message, and the form a patient
fills in.

**Flows API** (:func:`register`), on Meta's paths and with the shapes of its OpenAPI description
(``business-messaging-api_v23.0.yaml``) and Flows API reference (developers.facebook.com/docs/whatsapp/flows/
reference/flowsapi):

- ``GET /{Version}/{WABA-ID}/flows`` (``data`` and ``paging.cursors``, ``paging.next`` while more remain; Graph's
  ``fields``, ``limit``, ``after``, ``before``), ``POST /{Version}/{WABA-ID}/flows`` (multipart or JSON: ``name``,
  ``categories`` as a JSON array, optional ``clone_flow_id``, ``endpoint_uri``, and the reference's ``flow_json``
  and ``publish``) → ``{"id"}``;
- ``GET /{Version}/{Flow-ID}`` (``fields``; by default ``id``, ``name``, ``status``, ``categories``,
  ``validation_errors``), ``POST /{Version}/{Flow-ID}`` (metadata), ``DELETE /{Version}/{Flow-ID}`` (drafts only);
- ``GET /{Version}/{Flow-ID}/assets``, ``POST /{Version}/{Flow-ID}/assets`` (multipart ``name=flow.json``,
  ``asset_type=FLOW_JSON``, ``file``, at most 10 MB) → ``{"success": true, "validation_errors": [...]}``, the
  errors of :func:`emulators._whatsapp_flow_json.flow_json_errors`;
- ``POST /{Version}/{Flow-ID}/publish`` and ``/deprecate`` → ``{"success": true}``.

The bearer token is checked as on ``/messages``; a multipart body is checked against the form the description gives
each call (an unknown or misplaced field is a violation, answered ``(#100) Invalid parameter``), as are the query
parameters. Meta's rules (Flows API reference and "Flow Management API Error Codes", …/flows/reference/error-codes):
a name is required and unique in the WABA (code 100, subcode 4016019, "Flow name is not unique"); at least one
category, each of SIGN_UP, SIGN_IN, APPOINTMENT_BOOKING, LEAD_GENERATION, CONTACT_US, CUSTOMER_SUPPORT, SURVEY,
OTHER; a flow goes DRAFT → PUBLISHED → DEPRECATED and a published flow and its assets are immutable (139001 "Flow
can't be updated"); publishing needs a draft (139002 "Publishing Flow in invalid state") with a Flow JSON and no
validation errors (139002 "Publishing Flow with validation errors"), in a version that may be published (139002
"Versions in Flow JSON file are not available for publishing"), with an ``endpoint_uri`` when it uses the Data API;
only a published flow can be deprecated (139003), only a draft deleted (139004); an unknown flow or WABA id gets
Graph's ``GraphMethodException`` 100/33, as unknown media do. A refusal that depends on the flows' state is not a
violation (the relay may meet it and recover); a malformed call is.

**Sending** (:meth:`FlowStore.message_error`): besides the OpenAPI check of ``/messages``, a ``flow`` message is
refused (``(#100) Invalid parameter``, the details in the words of Meta's flow error codes for the On-Premises API,
2064 and 2066, as the Cloud API documents no code of its own for these) when its ``flow_id`` or ``flow_name`` is
not a flow of the WABA, the flow is deprecated ("prevents sending and opening the Flow"), a draft is sent without
``mode: "draft"`` or a published flow with it, ``flow_action_payload.screen`` is not a screen of the flow, or
``flow_action_payload.data`` is given empty ("Must be a non-empty object"), or it is missing with ``data_exchange``
("Optional only if 'flow_action' is 'navigate'").

**Filling the form** (:func:`submission`): what the WhatsApp client lets through before a patient can tap the
Footer, then the ``complete`` payload it sends (Receiving Flow Response, …/flows/guides/receiveflowresponse): see
:meth:`emulators._whatsapp_patient.Patient.fill_flow`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, jsonify, request
from werkzeug.datastructures import FileStorage

from emulators._checks import whatsapp_spec
from emulators._whatsapp_flow_json import (
    COMPONENTS,
    MAX_BYTES,
    PUBLISHABLE,
    binding,
    flow_json_errors,
    version_tuple,
)

if TYPE_CHECKING:
    from emulators.whatsapp import WhatsAppEmulator

#: Meta's flow categories (Flows API reference, "Creating a Flow")
CATEGORIES: tuple[str, ...] = ("SIGN_UP", "SIGN_IN", "APPOINTMENT_BOOKING", "LEAD_GENERATION", "CONTACT_US",
                               "CUSTOMER_SUPPORT", "SURVEY", "OTHER")
DRAFT, PUBLISHED, DEPRECATED = "DRAFT", "PUBLISHED", "DEPRECATED"
#: what a flow's details hold without ``fields``
DEFAULT_FIELDS = ("id", "name", "status", "categories", "validation_errors")
FIELDS = frozenset({*DEFAULT_FIELDS, "json_version", "data_api_version", "endpoint_uri", "data_channel_uri",
                    "preview", "whatsapp_business_account", "application", "health_status", "updated_at"})
#: Graph's paging: 25 a page unless ``limit`` says otherwise
PAGE = 25
#: the token a flow message carries when the business gives none (Sending a Flow: "default is unused")
DEFAULT_TOKEN = "unused"
#: what the client sends for a field the patient left empty and a binding that resolves to nothing
_MISSING: Any = object()


class FlowsApiError(Exception):
    """A refusal of the Flows API, as Graph words it."""

    def __init__(self, code: int, message: str, *, violation: bool = False, status: int = 400,
                 **extra: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.violation, self.extra = code, message, status, violation, extra


def _param_error(message: str) -> FlowsApiError:
    return FlowsApiError(100, f"(#100) {message}", violation=True)


def _flow_error(code: int, title: str, detail: str, **extra: Any) -> FlowsApiError:
    """A refusal of Meta's flow error table: the description as message, its explanation for the user."""
    return FlowsApiError(code, title, is_transient=False, error_user_msg=detail, **extra)


@dataclass
class Flow:
    """One WhatsApp Flow of the business account."""

    id: str
    name: str
    categories: list[str]
    status: str = DRAFT
    endpoint_uri: str | None = None
    #: the Flow JSON as uploaded, and parsed (None: no asset yet, or not JSON)
    text: str | None = None
    flow_json: dict[str, Any] | None = None
    validation_errors: list[dict[str, Any]] = field(default_factory=list)
    updated_at: float = field(default_factory=time.time)

    @property
    def json_version(self) -> str | None:
        """The ``version`` of its Flow JSON."""
        version = (self.flow_json or {}).get("version")
        return version if isinstance(version, str) else None

    def screen(self, screen_id: str) -> dict[str, Any] | None:
        """The screen with that id, if the Flow JSON has it."""
        return next((s for s in self.screens() if s.get("id") == screen_id), None)

    def screens(self) -> list[dict[str, Any]]:
        """The screens of its Flow JSON (none without one)."""
        screens = (self.flow_json or {}).get("screens")
        return [s for s in screens if isinstance(s, dict)] if isinstance(screens, list) else []

    def upload(self, content: bytes) -> list[dict[str, Any]]:
        """Keep a new Flow JSON and its validation errors."""
        self.validation_errors = flow_json_errors(content)
        try:
            self.text = content.decode("utf-8")
            parsed = json.loads(self.text)
        except ValueError:
            parsed = None
        self.flow_json = parsed if isinstance(parsed, dict) else None
        self.updated_at = time.time()
        return self.validation_errors


class FlowStore:
    """The flows of the emulated business account, and the rules Meta applies to them."""

    def __init__(self) -> None:
        self._flows: dict[str, Flow] = {}
        self._lock = threading.Lock()

    def all(self) -> list[Flow]:
        """Every flow, oldest first."""
        with self._lock:
            return list(self._flows.values())

    def get(self, flow_id: str) -> Flow | None:
        """The flow with that id."""
        with self._lock:
            return self._flows.get(flow_id)

    def named(self, name: str) -> Flow | None:
        """The flow with that name."""
        with self._lock:
            return next((f for f in self._flows.values() if f.name == name), None)

    def _new_id(self) -> str:
        # Meta's flow ids are 15-16 digit numbers
        while True:
            flow_id = str(10**15 + secrets.randbelow(9 * 10**15))
            if flow_id not in self._flows:
                return flow_id

    def create(self, name: str | None, categories: Any, *, clone_flow_id: str | None = None,
               endpoint_uri: str | None = None) -> Flow:
        """A new draft, or a copy of ``clone_flow_id``'s Flow JSON.

        Raises:
            FlowsApiError: what Meta answers to a missing name, bad categories, a name in use, an unknown clone.
        """
        if not name or not name.strip():
            raise _param_error("The parameter name is required")
        checked = _categories(categories)
        _endpoint(endpoint_uri)
        with self._lock:
            if any(f.name == name for f in self._flows.values()):
                raise FlowsApiError(100, "Invalid parameter", error_subcode=4016019, is_transient=False,
                                    error_user_title="Flow name is not unique",
                                    error_user_msg="Flow name should be unique within one WhatsApp Business "
                                                   "Account. Please use a different name for your Flow.")
            source = self._flows.get(clone_flow_id) if clone_flow_id else None
            if clone_flow_id and source is None:
                raise FlowsApiError(100, "Invalid parameter", is_transient=False,
                                    error_user_title="Flow with specified ID does not exist",
                                    error_user_msg="The Flow ID you provided was not found in your account.")
            flow = Flow(self._new_id(), name, checked, endpoint_uri=endpoint_uri)
            if source is not None and source.text is not None:
                flow.upload(source.text.encode())
            self._flows[flow.id] = flow
            return flow

    def update(self, flow: Flow, name: str | None, categories: Any, endpoint_uri: str | None) -> None:
        """Change a draft's metadata (what is not given stays).

        Raises:
            FlowsApiError: the flow is no longer a draft, or the values are Meta's errors.
        """
        _editable(flow)
        checked = _categories(categories) if categories is not None else None
        _endpoint(endpoint_uri)
        with self._lock:
            if name is not None:
                if not name.strip():
                    raise _param_error("The parameter name is required")
                if any(f.name == name and f.id != flow.id for f in self._flows.values()):
                    raise FlowsApiError(100, "Invalid parameter", error_subcode=4016019, is_transient=False,
                                        error_user_title="Flow name is not unique",
                                        error_user_msg="Flow name should be unique within one WhatsApp Business "
                                                       "Account. Please use a different name for your Flow.")
                flow.name = name
            if checked is not None:
                flow.categories = checked
            if endpoint_uri is not None:
                flow.endpoint_uri = endpoint_uri
            flow.updated_at = time.time()

    def delete(self, flow: Flow) -> None:
        """Delete a draft.

        Raises:
            FlowsApiError: 139004, the flow was published.
        """
        if flow.status != DRAFT:
            raise _flow_error(139004, "Can't delete published Flow",
                              "After a Flow has been published, it cannot be deleted. Please deprecate instead.")
        with self._lock:
            self._flows.pop(flow.id, None)

    def upload(self, flow: Flow, content: bytes) -> list[dict[str, Any]]:
        """Replace a draft's Flow JSON; its validation errors.

        Raises:
            FlowsApiError: 139001, the flow is no longer a draft.
        """
        _editable(flow)
        with self._lock:
            return flow.upload(content)

    def publish(self, flow: Flow) -> None:
        """DRAFT → PUBLISHED.

        Raises:
            FlowsApiError: 139002, with Meta's reason.
        """
        title = "Flow publishing failed"
        if flow.status != DRAFT:
            raise _flow_error(139002, "Publishing Flow in invalid state", "You tried to publish a Flow that isn't "
                              "a draft. Once a Flow leaves the draft state, it cannot be republished.",
                              error_user_title=title)
        if flow.flow_json is None or flow.validation_errors:
            said = ("the Flow has no Flow JSON" if flow.flow_json is None and not flow.validation_errors
                    else f"{len(flow.validation_errors)} validation error(s), the first: "
                         f"{flow.validation_errors[0]['message']}")
            raise _flow_error(139002, "Publishing Flow with validation errors", f"You tried to publish a draft Flow "
                              f"that has validation errors ({said}).", error_user_title=title)
        if flow.json_version not in PUBLISHABLE:
            raise _flow_error(139002, "Versions in Flow JSON file are not available for publishing",
                              f"The flow is using an unsupported version ({flow.json_version}).",
                              error_user_title=title)
        if "data_api_version" in flow.flow_json and not flow.endpoint_uri:
            raise _flow_error(139002, "Publishing without specifying endpoint_uri is forbidden",
                              "Please set endpoint_uri property for a Flow before publishing.", error_user_title=title)
        with self._lock:
            flow.status, flow.updated_at = PUBLISHED, time.time()

    def deprecate(self, flow: Flow) -> None:
        """PUBLISHED → DEPRECATED.

        Raises:
            FlowsApiError: 139003, the flow is a draft or deprecated already.
        """
        if flow.status == DEPRECATED:
            raise _flow_error(139003, "Flow is already deprecated", "You tried to deprecate a Flow that is already "
                              "marked as deprecated.")
        if flow.status != PUBLISHED:
            raise _flow_error(139003, "Can't deprecate unpublished flow", "Deprecating a Flow is only permitted "
                              "after it's been published. Delete the draft instead.")
        with self._lock:
            flow.status, flow.updated_at = DEPRECATED, time.time()

    # -- flow messages ---------------------------------------------------------------------------------------
    def flow_of(self, parameters: Mapping[str, Any]) -> Flow | None:
        """The flow a message's ``action.parameters`` name (by ``flow_id`` or ``flow_name``)."""
        if parameters.get("flow_id") is not None:
            return self.get(str(parameters["flow_id"]))
        return self.named(str(parameters.get("flow_name", "")))

    def message_error(self, body: Mapping[str, Any]) -> str | None:
        """Why Meta refuses this ``flow`` message (None: it sends it, or it is no flow message)."""
        interactive = body.get("interactive") if body.get("type") == "interactive" else None
        if not isinstance(interactive, dict) or interactive.get("type") != "flow":
            return None
        parameters = (interactive.get("action") or {}).get("parameters") or {}
        flow = self.flow_of(parameters)
        if flow is None or flow.status == DEPRECATED:
            return ("Flow with specified ID does not exist or does not belong to your WhatsApp Business Account "
                    "(WABA), or it is in invalid state." + (" The flow is deprecated." if flow is not None else ""))
        mode = parameters.get("mode", "published")
        if flow.status == DRAFT and mode != "draft":
            return "Invalid Flow Mode: the flow is in DRAFT state and is sent without specifying draft mode."
        if flow.status == PUBLISHED and mode == "draft":
            return "Invalid Flow Mode: a PUBLISHED flow is sent with draft mode."
        action = parameters.get("flow_action", "navigate")
        payload = parameters.get("flow_action_payload")
        if action == "data_exchange" and payload is None:
            return "flow_action_payload is required when flow_action is data_exchange."
        if isinstance(payload, dict):
            if "data" in payload and not payload["data"]:
                return "flow_action_payload.data must be a non-empty object."
            screen = payload.get("screen")
            if action == "navigate" and screen is not None and flow.screen(str(screen)) is None:
                return f"flow_action_payload.screen: {screen!r} is not a screen of the flow."
        return None

    def response_to(self, message: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
        """What a patient's WhatsApp sends when they submit the form of this flow ``message`` filled with
        ``values``: the ``complete`` payload and the ``flow_token``.

        Raises:
            ValueError: the flow cannot be opened, or WhatsApp would not let these values through.
        """
        interactive = message.get("interactive") or {}
        parameters = (interactive.get("action") or {}).get("parameters") or {}
        flow = self.flow_of(parameters)
        if flow is None or flow.flow_json is None:
            raise ValueError("the message's flow does not exist, or has no Flow JSON")
        if flow.status == DEPRECATED:
            raise ValueError("the flow was deprecated: WhatsApp no longer opens it")
        if parameters.get("flow_action", "navigate") != "navigate":
            raise ValueError("a data_exchange flow is driven by the business's endpoint, which the emulator does not "
                             "run")
        payload = parameters.get("flow_action_payload") or {}
        screens = flow.screens()
        entry = str(payload.get("screen") or (screens[0].get("id") if screens else ""))
        answers = submission(flow.flow_json, entry, values, dict(payload.get("data") or {}))
        token = parameters.get("flow_token")
        return {"flow_token": token if isinstance(token, str) else DEFAULT_TOKEN, **answers}


def _categories(value: Any) -> list[str]:
    """``categories`` as Meta takes them: a JSON array (a string, in a form), at least one, each of :data:`CATEGORIES`."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if value is None or value == []:
        raise _param_error("The parameter categories is required")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _param_error("Param categories must be an array of strings")
    for index, category in enumerate(value):
        if category not in CATEGORIES:
            raise _param_error(f"Param categories[{index}] must be one of {{{', '.join(CATEGORIES)}}} - got "
                               f'"{category}"')
    return list(dict.fromkeys(value))


def _endpoint(uri: str | None) -> None:
    if uri is None:
        return
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FlowsApiError(100, "Invalid parameter", violation=True, is_transient=False,
                            error_user_title="Invalid Endpoint URI", error_user_msg="Provide a valid URL.")


def _editable(flow: Flow) -> None:
    if flow.status != DRAFT:
        raise _flow_error(139001, "Flow can't be updated", "You attempted to update a Flow that has already been "
                          "published. Once published, Flows can no longer be updated: clone the Flow and publish "
                          "the new one.")


# -- the form a patient fills in ---------------------------------------------------------------------------------
@dataclass
class _Field:
    component: dict[str, Any]
    #: inside an If or a Switch: the emulator does not evaluate the condition, so it never insists on it
    conditional: bool
    #: the value the client starts with (``init-value``, or the Form's ``init-values``)
    initial: Any = _MISSING


def _walk(children: Any, *, conditional: bool, initial: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], bool,
                                                                                              Mapping[str, Any]]]:
    for component in children if isinstance(children, list) else []:
        if not isinstance(component, dict):
            continue
        yield component, conditional, initial
        kind = component.get("type")
        if kind == "Form":
            values = component.get("init-values")
            yield from _walk(component.get("children"), conditional=conditional,
                             initial=values if isinstance(values, dict) else {})
        elif kind == "If":
            for branch in ("then", "else"):
                yield from _walk(component.get(branch), conditional=True, initial=initial)
        elif kind == "Switch":
            for case in (component.get("cases") or {}).values():
                yield from _walk(case, conditional=True, initial=initial)


def _screen_parts(screen: Mapping[str, Any]) -> tuple[dict[str, _Field], dict[str, Any] | None]:
    """A screen's named inputs and its Footer's action."""
    fields: dict[str, _Field] = {}
    action = None
    for component, conditional, initial in _walk((screen.get("layout") or {}).get("children"), conditional=False,
                                                 initial={}):
        kind = component.get("type")
        if kind == "Footer" and action is None and isinstance(component.get("on-click-action"), dict):
            action = component["on-click-action"]
        spec = COMPONENTS.get(kind) if isinstance(kind, str) else None
        name = component.get("name")
        if spec is not None and spec.input and isinstance(name, str):
            start = component.get("init-value", initial.get(name, _MISSING))
            fields[name] = _Field(component, conditional, _MISSING if isinstance(start, str) and
                                  start.startswith("${") else start)
    return fields, action


def _static(value: Any, data: Mapping[str, Any]) -> Any:
    """A property's value on the screen: a ``${data.x}`` binding read from the screen's data."""
    bound = binding(value)
    if bound is not None and bound[0] is None and bound[1] == "data":
        return data.get(bound[2], _MISSING)
    return value


def _empty(value: Any) -> bool:
    return value is _MISSING or value is None or value is False or (isinstance(value, str | list) and not value)


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")
_PHONE = re.compile(r"\+?[\d ()-]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _date(name: str, value: Any) -> dt.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError(f"{name}: a date is picked as YYYY-MM-DD, not {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is no date") from None


def _count(value: Any, default: int | None) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def _text(name: str, component: Mapping[str, Any], value: Any, data: Mapping[str, Any], version: tuple[int, int]) \
        -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: the field takes text, not {type(value).__name__}")
    kind = component.get("type")
    longest = _count(_static(component.get("max-chars" if kind == "TextInput" else "max-length"), data),
                     80 if kind == "TextInput" else 600)
    shortest = _count(_static(component.get("min-chars"), data), None)
    if longest is not None and len(value) > longest:
        raise ValueError(f"{name}: at most {longest} characters can be typed")
    if shortest is not None and len(value) < shortest:
        raise ValueError(f"{name}: at least {shortest} characters are needed")
    if kind != "TextInput":
        return value
    input_type = component.get("input-type", "text")
    stripped = value.strip()
    wrong = {"email": not _EMAIL.fullmatch(stripped),
             "number": not _NUMBER.fullmatch(stripped),
             "phone": not _PHONE.fullmatch(stripped) or sum(c.isdigit() for c in stripped) < 5,
             "passcode": not stripped.isdigit()}.get(str(input_type), False)
    if wrong:
        raise ValueError(f"{name}: {value!r} is not a plausible {input_type}")
    pattern = component.get("pattern")
    if isinstance(pattern, str) and version >= (6, 2):
        try:
            if not re.fullmatch(pattern, value):
                raise ValueError(f"{name}: {value!r} does not match the field's pattern")
        except re.error:
            pass  # a JavaScript pattern Python cannot read: the emulator does not judge it
    return value


def _options(name: str, component: Mapping[str, Any], data: Mapping[str, Any]) -> set[str]:
    source = _static(component.get("data-source"), data)
    if not isinstance(source, list):
        raise ValueError(f"{name}: the options are not known to the emulator")
    return {str(o.get("id")) for o in source if isinstance(o, dict) and o.get("enabled", True) is not False}


def _picked_dates(name: str, component: Mapping[str, Any], value: Any, data: Mapping[str, Any]) -> Any:
    """A DatePicker's (or single CalendarPicker's) ``YYYY-MM-DD``, or a range CalendarPicker's start and end."""
    lowest, highest = _static(component.get("min-date"), data), _static(component.get("max-date"), data)
    unavailable = _static(component.get("unavailable-dates"), data)
    if component.get("type") == "CalendarPicker" and component.get("mode") == "range":
        if not isinstance(value, dict) or set(value) != {"start-date", "end-date"}:
            raise ValueError(f"{name}: a range is {{'start-date': ..., 'end-date': ...}}")
        days = [value["start-date"], value["end-date"]]
        if _date(name, days[0]) > _date(name, days[1]):
            raise ValueError(f"{name}: the range ends before it starts")
    else:
        days = [value]
    for day in days:
        picked = _date(name, day)
        if isinstance(lowest, str) and _DATE.fullmatch(lowest) and picked < dt.date.fromisoformat(lowest):
            raise ValueError(f"{name}: {day} is before the first date offered ({lowest})")
        if isinstance(highest, str) and _DATE.fullmatch(highest) and picked > dt.date.fromisoformat(highest):
            raise ValueError(f"{name}: {day} is after the last date offered ({highest})")
        if isinstance(unavailable, list) and day in unavailable:
            raise ValueError(f"{name}: {day} cannot be picked")
    return value


def _answer(name: str, field_: _Field, value: Any, data: Mapping[str, Any], version: tuple[int, int]) -> Any:
    """The value the client sends for one field, after the checks it makes before the Footer can be tapped."""
    component = field_.component
    kind = component.get("type")
    if _static(component.get("visible", True), data) is False:
        if value is not _MISSING:
            raise ValueError(f"{name}: the field is not shown")
        return _MISSING
    if _static(component.get("enabled", True), data) is False and value is not _MISSING:
        raise ValueError(f"{name}: the field cannot be changed")
    if value is _MISSING:
        value = field_.initial
    required = _static(component.get("required", False), data) is True and not field_.conditional
    if kind == "CalendarPicker" and isinstance(component.get("required"), dict):
        required = any(v is True for v in component["required"].values()) and not field_.conditional
    if _empty(value) and not (kind == "OptIn" and value is False):
        if required:
            raise ValueError(f"{name}: required")
        return _MISSING
    return _typed(name, component, value, data, version=version, required=required)


def _typed(name: str, component: Mapping[str, Any], value: Any, data: Mapping[str, Any], *,
           version: tuple[int, int], required: bool) -> Any:
    """A value given for a field, checked for its kind of component."""
    kind = component.get("type")
    if kind in ("TextInput", "TextArea"):
        return _text(name, component, value, data, version)
    if kind in ("Dropdown", "RadioButtonsGroup"):
        if not isinstance(value, str) or value not in _options(name, component, data):
            raise ValueError(f"{name}: {value!r} is not one of the options")
        return value
    if kind in ("CheckboxGroup", "ChipsSelector"):
        offered = _options(name, component, data)
        if not isinstance(value, list) or not all(isinstance(v, str) and v in offered for v in value) \
                or len(set(value)) != len(value):
            raise ValueError(f"{name}: a list of distinct option ids is expected, not {value!r}")
        fewest = _count(_static(component.get("min-selected-items"), data), None)
        most = _count(_static(component.get("max-selected-items"), data), None)
        if (fewest is not None and len(value) < fewest) or (most is not None and len(value) > most):
            raise ValueError(f"{name}: between {fewest or 0} and {most or len(offered)} options can be ticked")
        return value
    if kind in ("DatePicker", "CalendarPicker"):
        return _picked_dates(name, component, value, data)
    if kind == "OptIn":
        if not isinstance(value, bool):
            raise ValueError(f"{name}: an opt-in is ticked (true) or not (false)")
        if required and not value:
            raise ValueError(f"{name}: required")
        return value
    raise ValueError(f"{name}: a {kind} cannot be filled in the emulator")


def _resolve(value: Any, form: Mapping[str, Any], data: Mapping[str, Any],
             screens: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Any:
    """A payload with its ``${form.x}``, ``${data.x}`` and ``${screen.S.(form|data).x}`` bindings replaced;
    what resolves to nothing is left out."""
    if isinstance(value, dict):
        resolved = {k: _resolve(v, form, data, screens) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _MISSING}
    if isinstance(value, list):
        return [v for v in (_resolve(item, form, data, screens) for item in value) if v is not _MISSING]
    bound = binding(value)
    if bound is None:
        return value
    screen, store, key = bound
    source = ({"form": form, "data": data} if screen is None else screens.get(screen, {})).get(store, {})
    return source.get(key, _MISSING)


def submission(flow_json: Mapping[str, Any], entry: str, values: Mapping[str, Any],
               data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``complete`` payload the client sends once the patient has filled the form from ``entry`` with ``values``
    (field name → value, over every screen the Footers lead through), the entry screen's data being ``data``.

    Before the Footer can be tapped, WhatsApp insists on every ``required`` field; takes a Dropdown's or
    RadioButtonsGroup's value only among its options, a CheckboxGroup's as a list of them (within
    ``min/max-selected-items``); keeps text within ``max-chars`` (80 by default) or ``max-length`` (600), and a
    TextInput's ``email``, ``number``, ``phone`` and ``passcode`` plausible; a date as ``YYYY-MM-DD`` within the
    offered range. Fields inside If or Switch are never insisted on (their conditions are not evaluated). A field
    the patient left empty resolves to nothing, and its key is left out of the payload: Meta does not document what
    the client sends for it, and its Flow JSON reference has no ``null`` ("omit the property entirely").

    Raises:
        ValueError: a value WhatsApp would not let through, a field the form does not have, a screen that does not
            end in ``complete`` or ``navigate``.
    """
    screens = {s.get("id"): s for s in flow_json.get("screens", []) if isinstance(s, dict)}
    version = version_tuple(flow_json.get("version")) or (7, 3)
    unused = set(values)
    stores: dict[str, dict[str, Mapping[str, Any]]] = {}
    screen_id, screen_data = entry, dict(data)
    while True:
        screen = screens.get(screen_id)
        if screen is None or screen_id in stores:
            raise ValueError(f"the flow has no screen {screen_id!r} to show" if screen is None
                             else f"the flow loops back to {screen_id!r}")
        fields, action = _screen_parts(screen)
        form: dict[str, Any] = {}
        for name, field_ in fields.items():
            unused.discard(name)
            answer = _answer(name, field_, values.get(name, _MISSING), screen_data, version)
            if answer is not _MISSING:
                form[name] = answer
        stores[screen_id] = {"form": form, "data": screen_data}
        if action is None:
            raise ValueError(f"screen {screen_id!r} has no Footer to submit")
        payload = _resolve(action.get("payload", {}), form, screen_data, stores)
        if action.get("name") == "complete":
            break
        if action.get("name") != "navigate":
            raise ValueError(f"the Footer's {action.get('name')!r} needs the business's endpoint, which the emulator "
                             "does not run")
        screen_id, screen_data = str((action.get("next") or {}).get("name")), dict(payload)
    if unused:
        raise ValueError(f"{', '.join(sorted(unused))}: no such field on the form")
    return payload if isinstance(payload, dict) else {}


# -- the HTTP side -------------------------------------------------------------------------------------------------
def _spec_form(path: str, method: str) -> dict[str, Any]:
    """The multipart form Meta's description gives a call (field → schema)."""
    operation = whatsapp_spec()["paths"][path][method]
    content = (operation.get("requestBody") or {}).get("content") or {}
    schema = (content.get("multipart/form-data") or {}).get("schema") or {}
    return dict(schema.get("properties") or {})


def form_errors(path: str, method: str, fields: Mapping[str, str], files: Mapping[str, FileStorage],
                extra: frozenset[str] = frozenset()) -> list[str]:
    """Why Meta's description does not allow this multipart body (``extra``: fields its reference adds)."""
    allowed = _spec_form(path, method)
    errors = [f"{name}: not a field of this call" for name in [*fields, *files]
              if name not in allowed and name not in extra]
    for name, schema in allowed.items():
        binary = schema.get("format") == "binary"
        if binary and name in fields:
            errors.append(f"{name}: a file is expected, not a text field")
        if not binary and name in files and files[name].filename:
            errors.append(f"{name}: a text field is expected, not a file")
    return errors


def _cursor(flow_id: str) -> str:
    return base64.urlsafe_b64encode(f"flow:{flow_id}".encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> str | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        return None
    return text[5:] if text.startswith("flow:") else None


def wanted_fields(args: Mapping[str, str]) -> list[str]:
    """The ``fields`` asked for (``preview.invalidate(false)`` asks for ``preview``)."""
    if not args.get("fields"):
        return list(DEFAULT_FIELDS)
    names = [re.split(r"[.({]", part.strip(), maxsplit=1)[0] for part in args["fields"].split(",") if part.strip()]
    for name in names:
        if name not in FIELDS:
            raise _param_error(f"Tried accessing nonexisting field ({name})")
    return names


def describe(flow: Flow, names: list[str], emulator: WhatsAppEmulator) -> dict[str, Any]:
    """A flow's details, as ``GET /{Flow-ID}`` (and each item of the list) answer them."""
    root = request.url_root.rstrip("/")
    can_send = "AVAILABLE" if flow.status in (DRAFT, PUBLISHED) else "BLOCKED"
    every: dict[str, Callable[[], Any]] = {
        "id": lambda: flow.id, "name": lambda: flow.name, "status": lambda: flow.status,
        "categories": lambda: list(flow.categories), "validation_errors": lambda: list(flow.validation_errors),
        "json_version": lambda: flow.json_version,
        "data_api_version": lambda: (flow.flow_json or {}).get("data_api_version"),
        "endpoint_uri": lambda: flow.endpoint_uri, "data_channel_uri": lambda: flow.endpoint_uri,
        "preview": lambda: {"preview_url": f"{root}/_emulator/flows/{flow.id}/flow.json",
                            "expires_at": time.strftime("%Y-%m-%dT%H:%M:%S+0000",
                                                        time.gmtime(time.time() + 30 * 86400))},
        "whatsapp_business_account": lambda: {"id": emulator.waba_id},
        "application": lambda: {"id": "emulator-app", "name": "chat2crm emulator"},
        "health_status": lambda: {"can_send_message": can_send, "entities": [
            {"entity_type": "FLOW", "id": flow.id, "can_send_message": can_send}]},
        "updated_at": lambda: time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(flow.updated_at)),
    }
    details = {"id": flow.id}
    for name in names:
        value = every[name]()
        if value is not None:
            details[name] = value
    return details


def _page(flows: list[Flow], args: Mapping[str, str]) -> tuple[list[Flow], dict[str, Any]]:
    """One page of flows, and Graph's ``paging`` (``cursors``; ``next`` and ``previous`` when there are more)."""
    raw_limit = args.get("limit", str(PAGE))
    if not raw_limit.isdigit() or int(raw_limit) < 1:
        raise _param_error("Param limit must be a positive integer")
    limit = int(raw_limit)
    ids = [f.id for f in flows]
    start, end = 0, len(flows)
    if args.get("after"):
        after = _uncursor(args["after"])
        start = ids.index(after) + 1 if after in ids else len(ids)
        end = min(start + limit, len(flows))
    elif args.get("before"):
        before = _uncursor(args["before"])
        end = ids.index(before) if before in ids else 0
        start = max(end - limit, 0)
    else:
        end = min(limit, len(flows))
    chosen = flows[start:end]
    if not chosen:
        return chosen, {}
    paging: dict[str, Any] = {"cursors": {"before": _cursor(chosen[0].id), "after": _cursor(chosen[-1].id)}}
    base = request.base_url
    query = {k: v for k, v in args.items() if k not in ("after", "before")}
    if end < len(flows):
        paging["next"] = f"{base}?{urlencode({**query, 'after': paging['cursors']['after']})}"
    if start > 0:
        paging["previous"] = f"{base}?{urlencode({**query, 'before': paging['cursors']['before']})}"
    return chosen, paging


def _body() -> tuple[dict[str, str], dict[str, FileStorage], dict[str, Any] | None]:
    """A call's form fields and files, or its JSON body (Graph takes both)."""
    if request.is_json:
        data = request.get_json(silent=True)
        return {}, {}, data if isinstance(data, dict) else {}
    return request.form.to_dict(), request.files.to_dict(), None


#: the faults of :meth:`WhatsAppEmulator.fail_next` a Flows API call meets (the others wait for a message)
_CALL_FAULTS = frozenset({"429", "500", "timeout", "190"})


class _FlowsApi:
    """The Flows API's routes, on the emulator's state, token and faults."""

    def __init__(self, emulator: WhatsAppEmulator) -> None:
        self.emulator, self.store = emulator, emulator.flows

    def register(self, app: Flask) -> None:
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("/<version>/<waba_id>/flows", "GET", self.list_flows),
            ("/<version>/<waba_id>/flows", "POST", self.create_flow),
            ("/<version>/<flow_id>", "POST", self.update_flow),
            ("/<version>/<flow_id>", "DELETE", self.delete_flow),
            ("/<version>/<flow_id>/assets", "GET", self.list_assets),
            ("/<version>/<flow_id>/assets", "POST", self.upload_asset),
            ("/<version>/<flow_id>/publish", "POST", self.publish_flow),
            ("/<version>/<flow_id>/deprecate", "POST", self.deprecate_flow),
            ("/_emulator/flows", "GET", self.emulator_flows),
            ("/_emulator/flows/<flow_id>/flow.json", "GET", self.emulator_flow_json),
            ("/_emulator/patients/<wa_id>/flow", "POST", self.patient_flow),
        ]
        for rule, method, view in routes:
            app.add_url_rule(rule, endpoint=f"flows_{view.__name__}", view_func=view, methods=[method])

    # -- answers ---------------------------------------------------------------------------------------------
    def refused(self) -> tuple[Response, int] | None:
        self.emulator.calls += 1
        return self.emulator._refused(self.emulator._take_fault(only=_CALL_FAULTS))

    def failed(self, error: FlowsApiError, record: dict[str, Any]) -> tuple[Response, int]:
        if error.violation:
            with self.emulator.lock:
                self.emulator.violations.append({**record, "problems": [error.message]})
        return self.emulator._error(error.status, error.code, error.message, **error.extra)

    def unknown(self, object_id: str, method: str) -> tuple[Response, int]:
        return self.emulator._error(
            400, 100, f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be loaded "
            "due to missing permissions, or does not support this operation. Please read the Graph API documentation "
            "at https://developers.facebook.com/docs/graph-api", type="GraphMethodException", error_subcode=33)

    def flow(self, version: str, flow_id: str) -> Flow | None:
        return self.store.get(flow_id) if version.startswith("v") else None

    def reached(self, version: str, flow_id: str, method: str) -> Flow | tuple[Response, int]:
        """The flow a call names, or the answer instead: an injected fault, or Graph's unknown object."""
        answer = self.refused()
        if answer is not None:
            return answer
        flow = self.flow(version, flow_id)
        return self.unknown(flow_id, method) if flow is None else flow

    def account(self, version: str, waba_id: str) -> bool:
        return version.startswith("v") and waba_id == self.emulator.waba_id

    # -- the business account's flows ------------------------------------------------------------------------
    def list_flows(self, version: str, waba_id: str) -> tuple[Response, int]:
        answer = self.refused()
        if answer is not None:
            return answer
        if not self.account(version, waba_id):
            return self.unknown(waba_id, "get")
        args = request.args.to_dict()
        try:
            odd = [name for name in args if name not in ("fields", "limit", "after", "before")]
            if odd:
                raise _param_error(f"Invalid parameter ({odd[0]}: not a query parameter of this call)")
            names = wanted_fields(args)
            chosen, paging = _page(self.store.all(), args)
        except FlowsApiError as error:
            return self.failed(error, {"query": args})
        body: dict[str, Any] = {"data": [describe(f, names, self.emulator) for f in chosen]}
        if paging:
            body["paging"] = paging
        return jsonify(body), 200

    def create_flow(self, version: str, waba_id: str) -> tuple[Response, int]:
        answer = self.refused()
        if answer is not None:
            return answer
        if not self.account(version, waba_id):
            return self.unknown(waba_id, "post")
        fields, files, data = _body()
        record = {"form": fields} if data is None else {"body": data}
        try:
            if data is None:
                problems = form_errors("/{Version}/{WABA-ID}/flows", "post", fields, files,
                                       frozenset({"flow_json", "publish"}))
                if problems:
                    raise _param_error(f"Invalid parameter ({problems[0]})")
                data = dict(fields)
            flow = self.store.create(_str(data.get("name")), data.get("categories"),
                                     clone_flow_id=_str(data.get("clone_flow_id")),
                                     endpoint_uri=_str(data.get("endpoint_uri")))
            if data.get("flow_json") is None:
                return jsonify({"id": flow.id}), 200
            errors = self.store.upload(flow, str(data["flow_json"]).encode())
            if str(data.get("publish", "")).lower() == "true" and not errors:
                self.store.publish(flow)
        except FlowsApiError as error:
            return self.failed(error, record)
        return jsonify({"id": flow.id, "success": True, "validation_errors": errors}), 200

    # -- one flow ----------------------------------------------------------------------------------------------
    def update_flow(self, version: str, flow_id: str) -> tuple[Response, int]:
        flow = self.reached(version, flow_id, "post")
        if not isinstance(flow, Flow):
            return flow
        fields, files, data = _body()
        record = {"form": fields} if data is None else {"body": data}
        try:
            if data is None:
                problems = form_errors("/{Version}/{Flow-ID}", "post", fields, files, frozenset({"application_id"}))
                if problems:
                    raise _param_error(f"Invalid parameter ({problems[0]})")
                data = dict(fields)
            self.store.update(flow, _str(data.get("name")), data.get("categories"), _str(data.get("endpoint_uri")))
        except FlowsApiError as error:
            return self.failed(error, record)
        return jsonify({"success": True}), 200

    def delete_flow(self, version: str, flow_id: str) -> tuple[Response, int]:
        return self.transition(version, flow_id, self.store.delete, "delete")

    def list_assets(self, version: str, flow_id: str) -> tuple[Response, int]:
        flow = self.reached(version, flow_id, "get")
        if not isinstance(flow, Flow):
            return flow
        if flow.text is None:
            return jsonify({"data": []}), 200
        cursor = _cursor(f"{flow.id}:asset")
        link = f"{request.url_root.rstrip('/')}/_emulator/flows/{flow.id}/flow.json"
        return jsonify({"data": [{"name": "flow.json", "asset_type": "FLOW_JSON", "download_url": link}],
                        "paging": {"cursors": {"before": cursor, "after": cursor}}}), 200

    def upload_asset(self, version: str, flow_id: str) -> tuple[Response, int]:
        flow = self.reached(version, flow_id, "post")
        if not isinstance(flow, Flow):
            return flow
        fields, files = request.form.to_dict(), request.files.to_dict()
        try:
            problems = form_errors("/{Version}/{Flow-ID}/assets", "post", fields, files)
            for name, only in (("name", "flow.json"), ("asset_type", "FLOW_JSON")):
                if name not in fields:
                    problems.append(f"The parameter {name} is required")
                elif fields[name] != only:
                    problems.append(f'Param {name} must be one of {{{only}}} - got "{fields[name]}"')
            if "file" not in files:
                problems.append("The parameter file is required")
            if problems:
                raise _param_error(problems[0])
            errors = self.store.upload(flow, files["file"].read(MAX_BYTES + 1))
        except FlowsApiError as error:
            return self.failed(error, {"form": fields, "files": sorted(files)})
        return jsonify({"success": True, "validation_errors": errors}), 200

    def transition(self, version: str, flow_id: str, change: Callable[[Flow], None],
                   method: str = "post") -> tuple[Response, int]:
        flow = self.reached(version, flow_id, method)
        if not isinstance(flow, Flow):
            return flow
        try:
            change(flow)
        except FlowsApiError as error:
            return self.failed(error, {"flow": flow_id})
        return jsonify({"success": True}), 200

    def publish_flow(self, version: str, flow_id: str) -> tuple[Response, int]:
        return self.transition(version, flow_id, self.store.publish)

    def deprecate_flow(self, version: str, flow_id: str) -> tuple[Response, int]:
        return self.transition(version, flow_id, self.store.deprecate)

    # -- control endpoints (the demo page) ---------------------------------------------------------------------
    def emulator_flows(self) -> Response:
        shown = ["name", "status", "categories", "validation_errors", "json_version"]
        return jsonify([{**describe(f, shown, self.emulator), "flow_json": f.flow_json} for f in self.store.all()])

    def emulator_flow_json(self, flow_id: str) -> Response | tuple[Response, int]:
        # what the asset's download_url serves (Meta: a CDN link that needs no token)
        flow = self.store.get(flow_id)
        if flow is None or flow.text is None:
            return jsonify({"error": "no such flow asset"}), 404
        return Response(flow.text, mimetype="application/json")

    def patient_flow(self, wa_id: str) -> tuple[Response, int]:
        data = request.get_json(silent=True) or {}
        values = data.get("values")
        if not isinstance(values, dict):
            return jsonify({"error": "values: an object of the form's fields and what the patient filled in"}), 400
        patient = self.emulator.patient(wa_id, data.get("name") or "Demo Patient")
        try:
            status = patient.fill_flow(values)
        except ValueError as exc:  # what WhatsApp would not let the patient submit
            return jsonify({"error": str(exc)}), 400
        return jsonify({"relay_status": status}), 200


def register(emulator: WhatsAppEmulator, app: Flask) -> None:
    """Add the Flows API, and the flows' control endpoints, to the emulator's app."""
    _FlowsApi(emulator).register(app)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
