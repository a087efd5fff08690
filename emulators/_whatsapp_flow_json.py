"""Flow JSON as Meta checks it when a WhatsApp Flow's ``flow.json`` is uploaded: :func:`flow_json_errors`.

Meta does not refuse an invalid upload: ``POST /{Flow-ID}/assets`` answers ``success: true`` and lists the
``validation_errors`` (and a flow with any cannot be published). Each item has the fields of Meta's description and
Flows API reference (``error``, ``error_type``, ``message``, ``line_start``, ``line_end``, ``column_start``,
``column_end``, and ``pointers`` with the ``path``), the lines and columns (1-based, the last column included) of
the offending key or value in the text as uploaded. An unknown property is reported as in the OpenAPI description's
own example (``INVALID_PROPERTY`` / ``JSON_SCHEMA_ERROR``, ``The property "initial-text" cannot be specified at
"$root/screens/0/layout/children/2/children/0".``); every other error carries the code of Meta's table of static
validation errors, ``error_type`` ``FLOW_JSON_ERROR`` as in the Flows API reference's example, and the wording of
that table. Where Meta documents a limit but not the code it reports it under (characters of a label, items of a
list), the error is ``INVALID_PROPERTY_VALUE`` / ``MAX_ITEMS_REQUIRED`` with Meta's wording for a maximum
(``Property 'label' should have at most '20' characters.``).

The rules enforced, with where Meta states them:

- Flow JSON reference (developers.facebook.com/docs/whatsapp/flows/reference/flowjson): required ``version`` and
  ``screens``; top-level ``routing_model``, ``data_api_version`` (``data_channel_uri`` refused from 3.0); a
  screen's ``id`` (alphabets and underscores; ``SUCCESS`` reserved), ``layout``, and optional ``terminal``,
  ``success`` (terminal screens only), ``title``, ``refresh_on_back`` (with a ``data_api_version`` only),
  ``data`` (each field typed), ``sensitive`` (5.1+); the only layout ``SingleColumnLayout``; a terminal screen
  needs a Footer; ``complete`` only on a terminal screen; from 4.0 the ``Form`` wrapper is optional, before it
  input components must sit in one; actions ``complete``, ``navigate`` (to a known, other screen), and
  ``data_exchange`` (needs ``data_api_version``), ``update_data`` and ``open_url`` from 6.0.
- Changelog (…/flows/changelogs, "Currently Supported Versions"): Flow JSON versions 2.1, 3.0, 3.1, 4.0, 5.0,
  5.1, 6.0–6.3 and 7.0–7.3 are valid (sending); only 5.1, 6.x and 7.x may be published (:data:`PUBLISHABLE`);
  Data API versions 3.0 and 4.0.
- Components reference (…/flows/reference/components): each component's properties (others refused), the
  required ones, the enums (``input-type``: text, number, email, password, passcode, phone), and the limits:
  TextHeading and TextSubheading 80 characters, TextBody 4096, TextCaption 409, no blank text; TextInput label
  20, helper text 80, error text 30; TextArea label 20, helper text 80; CheckboxGroup and RadioButtonsGroup label
  30, 1–20 options; Dropdown label 20, 1–200 options (100 with images); an option's title 30, description 300,
  metadata 20; Footer label 35, captions 15 (center, or left and right); OptIn label 120, at most 5 a screen;
  EmbeddedLink text 25, at most 2 a screen; Image at most 3 a screen; DatePicker label 40, helper text and error
  80; CalendarPicker (6.1+) title 80, description 300, label 40, helper text 80; at most 50 components a screen.
  Version notes from the same page: ``label`` of CheckboxGroup and RadioButtonsGroup required from 4.0;
  ``description`` and ``init-value``/``error-message`` (outside a Form only) from 4.0; ``media-size`` and an
  option's ``image``/``alt-text``/``color`` from 5.0; ``markdown`` and RichText from 5.1; TextInput ``pattern``
  from 6.2 (with ``helper-text``, not for email or phone); If and Switch from 4.0.
- Error codes, "Static Validation Errors" (…/flows/reference/error-codes): at most 100 screens, one Footer a screen,
  unique screen ids, unique component names on a screen, a terminal screen (one of them ``success``), payload
  bindings: ``${form.<name>}`` must name a component of the screen, ``${data.<key>}`` a field of its data model;
  a navigate payload must match the next screen's data model; an If's ``then`` is not empty and a Footer in one
  branch needs one in the other; a Switch has cases.

PhotoPicker, DocumentPicker, NavigationList, ChipsSelector and ImageCarousel are known (and their names count), but
only their required properties are checked: the emulator does not model their property lists.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str | int, ...]

#: every Flow JSON version Meta still accepts (it may be sent); older ones are refused as unsupported
VERSIONS: tuple[str, ...] = ("2.1", "3.0", "3.1", "4.0", "5.0", "5.1", "6.0", "6.1", "6.2", "6.3",
                             "7.0", "7.1", "7.2", "7.3")
#: the versions a flow may be published in
PUBLISHABLE: frozenset[str] = frozenset({"5.1", "6.0", "6.1", "6.2", "6.3", "7.0", "7.1", "7.2", "7.3"})
_OLDEST = (2, 1)
DATA_API_VERSIONS: frozenset[str] = frozenset({"3.0", "4.0"})
#: Meta: "Flow JSON content string is limited and cannot exceed 10 MB"
MAX_BYTES = 10 * 1024 * 1024
MAX_SCREENS = 100
MAX_COMPONENTS = 50
MAX_IF_NESTING = 3
INPUT_TYPES = ("text", "number", "email", "password", "passcode", "phone")
LAYOUT = "SingleColumnLayout"
CHANGELOG = "https://developers.facebook.com/docs/whatsapp/flows/changelogs#currently-supported-versions"

# property kinds
_TEXT = "text"  # a string, or (text components) an array of strings
_STR = "string"
_BOOL = "boolean"
_COUNT = "count"  # an integer (or a string of digits)
_NUM = "number"
_ACTION = "action"
_SOURCE = "data-source"
_CHILDREN = "children"
_ARRAY = "array"
_OBJECT = "object"
_ANY = "any"


@dataclass(frozen=True)
class Component:
    """What the components reference says of one component."""

    props: Mapping[str, str]
    required: tuple[str, ...] = ()
    #: property → most characters of a static value
    limits: Mapping[str, int] = field(default_factory=dict)
    #: property → the Flow JSON version it appeared in
    since_props: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: the version the component appeared in
    since: tuple[int, int] = (1, 0)
    #: it collects an answer under its ``name``
    input: bool = False
    #: at most this many a screen
    per_screen: int | None = None
    #: its property list is not modelled (only ``required`` is checked)
    open: bool = False


_V4, _V5, _V51, _V6, _V61, _V62 = (4, 0), (5, 0), (5, 1), (6, 0), (6, 1), (6, 2)
_TEXT_PROPS = {"type": _STR, "text": _TEXT, "visible": _BOOL}
_STYLED = {**_TEXT_PROPS, "font-weight": _STR, "strikethrough": _BOOL, "markdown": _BOOL}
_FONT = {"font-weight": ("bold", "italic", "bold_italic", "normal")}
_CHOICE = {"type": _STR, "data-source": _SOURCE, "name": _STR, "enabled": _BOOL, "label": _STR, "required": _BOOL,
           "visible": _BOOL, "on-select-action": _ACTION, "on-unselect-action": _ACTION, "description": _STR,
           "init-value": _ANY, "error-message": _STR, "media-size": _STR}
_CHOICE_SINCE = {"description": _V4, "init-value": _V4, "error-message": _V4, "media-size": _V5,
                 "on-unselect-action": _V6}

COMPONENTS: dict[str, Component] = {
    "TextHeading": Component(_TEXT_PROPS, ("text",), {"text": 80}),
    "TextSubheading": Component(_TEXT_PROPS, ("text",), {"text": 80}),
    "TextBody": Component(_STYLED, ("text",), {"text": 4096}, {"markdown": _V51}, _FONT),
    "TextCaption": Component(_STYLED, ("text",), {"text": 409}, {"markdown": _V51}, _FONT),
    "RichText": Component(_TEXT_PROPS, ("text",), since=_V51),
    "TextInput": Component(
        {"type": _STR, "label": _STR, "input-type": _STR, "pattern": _STR, "required": _BOOL, "min-chars": _COUNT,
         "max-chars": _COUNT, "helper-text": _STR, "name": _STR, "visible": _BOOL, "enabled": _BOOL,
         "init-value": _STR, "error-message": _STR},
        ("name", "label"), {"label": 20, "helper-text": 80, "error-message": 30},
        {"pattern": _V62, "init-value": _V4, "error-message": _V4}, {"input-type": INPUT_TYPES}, input=True),
    "TextArea": Component(
        {"type": _STR, "label": _STR, "required": _BOOL, "max-length": _COUNT, "name": _STR, "helper-text": _STR,
         "enabled": _BOOL, "visible": _BOOL, "init-value": _STR, "error-message": _STR},
        ("name", "label"), {"label": 20, "helper-text": 80}, {"init-value": _V4, "error-message": _V4}, input=True),
    "CheckboxGroup": Component(
        {**_CHOICE, "min-selected-items": _COUNT, "max-selected-items": _COUNT},
        ("name", "data-source"), {"label": 30}, _CHOICE_SINCE, {"media-size": ("regular", "large")}, input=True),
    "RadioButtonsGroup": Component(_CHOICE, ("name", "data-source"), {"label": 30}, _CHOICE_SINCE,
                                   {"media-size": ("regular", "large")}, input=True),
    "Dropdown": Component(
        {"type": _STR, "label": _STR, "data-source": _SOURCE, "required": _BOOL, "enabled": _BOOL, "visible": _BOOL,
         "on-select-action": _ACTION, "on-unselect-action": _ACTION, "init-value": _STR, "error-message": _STR,
         "name": _STR},
        ("name", "label", "data-source"), {"label": 20}, {"on-unselect-action": _V6}, input=True),
    # the reference's table leaves out `required`, which Meta's own examples and SDKs use
    "DatePicker": Component(
        {"type": _STR, "label": _STR, "min-date": _STR, "max-date": _STR, "name": _STR, "unavailable-dates": _ARRAY,
         "visible": _BOOL, "helper-text": _STR, "enabled": _BOOL, "on-select-action": _ACTION, "init-value": _STR,
         "error-message": _STR, "required": _BOOL},
        ("name", "label"), {"label": 40, "helper-text": 80, "error-message": 80},
        {"init-value": _V4, "error-message": _V4}, input=True),
    "CalendarPicker": Component(
        {"type": _STR, "name": _STR, "title": _STR, "description": _STR, "label": _ANY, "helper-text": _ANY,
         "required": _ANY, "visible": _BOOL, "enabled": _BOOL, "mode": _STR, "min-date": _STR, "max-date": _STR,
         "unavailable-dates": _ARRAY, "include-days": _ARRAY, "min-days": _COUNT, "max-days": _COUNT,
         "on-select-action": _ACTION, "init-value": _ANY, "error-message": _ANY},
        ("name", "label"), {"title": 80, "description": 300, "label": 40, "helper-text": 80},
        enums={"mode": ("single", "range")}, since=_V61, input=True),
    "OptIn": Component(
        {"type": _STR, "label": _STR, "required": _BOOL, "name": _STR, "on-click-action": _ACTION, "visible": _BOOL,
         "init-value": _BOOL},
        ("name", "label"), {"label": 120}, {"init-value": _V4}, input=True, per_screen=5),
    "EmbeddedLink": Component({"type": _STR, "text": _STR, "on-click-action": _ACTION, "visible": _BOOL},
                              ("text", "on-click-action"), {"text": 25}, per_screen=2),
    "Footer": Component(
        {"type": _STR, "label": _STR, "left-caption": _STR, "center-caption": _STR, "right-caption": _STR,
         "enabled": _BOOL, "on-click-action": _ACTION},
        ("label", "on-click-action"),
        {"label": 35, "left-caption": 15, "center-caption": 15, "right-caption": 15}, per_screen=1),
    "Image": Component(
        {"type": _STR, "src": _STR, "width": _COUNT, "height": _COUNT, "scale-type": _STR, "aspect-ratio": _NUM,
         "alt-text": _STR, "visible": _BOOL},
        ("src",), enums={"scale-type": ("cover", "contain")}, per_screen=3),
    "Form": Component({"type": _STR, "name": _STR, "children": _CHILDREN, "init-values": _OBJECT,
                       "error-messages": _OBJECT}, ("name", "children")),
    "If": Component({"type": _STR, "condition": _STR, "then": _CHILDREN, "else": _CHILDREN},
                    ("condition", "then"), since=_V4),
    "Switch": Component({"type": _STR, "value": _STR, "cases": _OBJECT}, ("value", "cases"), since=_V4),
    "PhotoPicker": Component({}, ("name", "label"), input=True, open=True),
    "DocumentPicker": Component({}, ("name", "label"), input=True, open=True),
    "ChipsSelector": Component({}, ("name", "label"), input=True, open=True),
    "NavigationList": Component({}, ("name",), open=True),
    "ImageCarousel": Component({}, (), since=(7, 1), open=True),
}
#: where each kind of action may be used (the version it came in)
_ACTIONS: dict[str, dict[str, tuple[int, int]]] = {
    "Footer": {"complete": (1, 0), "data_exchange": (1, 0), "navigate": (1, 0)},
    "EmbeddedLink": {"data_exchange": (1, 0), "navigate": (1, 0), "open_url": _V6},
    "OptIn": {"data_exchange": (1, 0), "navigate": (1, 0), "open_url": _V6},
    "on-select-action": {"data_exchange": (1, 0), "update_data": _V6},
    "on-unselect-action": {"update_data": _V6},
}
_ACTION_KEYS = {"name", "next", "payload", "url"}
_OPTION = {"id": _STR, "title": _STR, "description": _STR, "metadata": _STR, "enabled": _BOOL, "image": _STR,
           "alt-text": _STR, "color": _STR, "on-select-action": _ACTION, "on-unselect-action": _ACTION}
_OPTION_SINCE = {"image": _V5, "alt-text": _V5, "color": _V5, "on-select-action": _V6, "on-unselect-action": _V6}
_OPTION_LIMITS = {"title": 30, "description": 300, "metadata": 20}
#: (fewest, most) options; a Dropdown with images takes at most 100
_OPTION_COUNTS = {"CheckboxGroup": (1, 20), "RadioButtonsGroup": (1, 20), "Dropdown": (1, 200)}
_SCREEN_KEYS = {"id", "terminal", "success", "title", "refresh_on_back", "data", "layout", "sensitive"}
_TOP_KEYS = {"version", "screens", "routing_model", "data_api_version", "data_channel_uri"}
_BINDING = re.compile(r"^\$\{(?:screen\.([A-Za-z_,]+)\.)?(form|data)\.([^.}]+)[^}]*\}$")


def version_tuple(version: Any) -> tuple[int, int] | None:
    """``"7.0"`` → (7, 0); None when it is not a version."""
    if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+", version):
        return None
    major, minor = version.split(".")
    return int(major), int(minor)


def is_dynamic(value: Any) -> bool:
    """A value bound at run time (``${data.x}``, ``${form.x}``, ``${screen…}``, or a backticked expression)."""
    return isinstance(value, str) and ((value.startswith("${") and value.endswith("}"))
                                       or (value.startswith("`") and value.endswith("`") and len(value) > 1))


def binding(value: Any) -> tuple[str | None, str, str] | None:
    """``"${form.email}"`` → (None, "form", "email"); ``"${screen.A.data.x}"`` → ("A", "data", "x")."""
    if not isinstance(value, str):
        return None
    match = _BINDING.match(value)
    return (match.group(1), match.group(2), match.group(3)) if match else None


# -- where things are in the uploaded text ---------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """Offsets of a key or a value in the text (end exclusive)."""

    start: int
    end: int


class Positions:
    """The place of every value (and every object key) of a JSON text, by path, for Meta's lines and columns."""

    _LITERAL = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")

    def __init__(self, text: str) -> None:
        self.text = text
        self.line_starts = [0, *(i + 1 for i, char in enumerate(text) if char == "\n")]
        self.values: dict[Path, Span] = {}
        self.keys: dict[Path, Span] = {}
        # positions are best effort: the text was parsed already
        with contextlib.suppress(IndexError, ValueError, RecursionError):
            self._value(self._skip(0), ())

    def _skip(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in " \t\r\n":
            i += 1
        return i

    def _string_end(self, i: int) -> int:
        j = i + 1
        while self.text[j] != '"':
            j += 2 if self.text[j] == "\\" else 1
        return j + 1

    def _value(self, i: int, path: Path) -> int:
        char = self.text[i]
        if char in "{[":
            close, index = ("}" if char == "{" else "]"), 0
            j = self._skip(i + 1)
            while self.text[j] != close:
                if char == "{":
                    key_end = self._string_end(j)
                    child: Path = (*path, json.loads(self.text[j:key_end]))
                    self.keys[child] = Span(j, key_end)
                    j = self._skip(key_end) + 1  # past the colon
                else:
                    child, index = (*path, index), index + 1
                j = self._skip(self._value(self._skip(j), child))
                if self.text[j] == ",":
                    j = self._skip(j + 1)
            end = j + 1
        elif char == '"':
            end = self._string_end(i)
        else:
            match = self._LITERAL.match(self.text, i)
            if match is None:
                raise ValueError("not JSON")
            end = match.end()
        self.values[path] = Span(i, end)
        return end

    def where(self, offset: int) -> tuple[int, int]:
        """1-based line and column of an offset."""
        line = bisect.bisect_right(self.line_starts, offset) - 1
        return line + 1, offset - self.line_starts[line] + 1

    def span(self, path: Path, *, key: bool = False) -> Span:
        """The key (when asked and there is one) or value at ``path``, else that of its nearest ancestor."""
        while True:
            found = (self.keys.get(path) if key else None) or self.values.get(path)
            if found is not None or not path:
                return found or Span(0, max(len(self.text), 1))
            path = path[:-1]


def dotted(path: Path) -> str:
    """``("screens", 0, "layout")`` → ``screens[0].layout`` (the ``path`` of Meta's pointers)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def rooted(path: Path) -> str:
    """``("screens", 0)`` → ``$root/screens/0`` (how Meta's schema errors name a place)."""
    return "/".join(["$root", *(str(part) for part in path)])


class Report:
    """The validation errors found so far, each placed in the text."""

    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.errors: list[dict[str, Any]] = []

    def add(self, code: str, message: str, path: Path, *, key: bool = False,
            error_type: str = "FLOW_JSON_ERROR") -> None:
        span = self.positions.span(path, key=key)
        line_start, column_start = self.positions.where(span.start)
        line_end, column_end = self.positions.where(max(span.end - 1, span.start))
        place = {"line_start": line_start, "line_end": line_end, "column_start": column_start,
                 "column_end": column_end}
        error = {"error": code, "error_type": error_type, "message": message, **place,
                 "pointers": [{**place, "path": dotted(path)}]}
        if error not in self.errors:
            self.errors.append(error)


# -- the checks ------------------------------------------------------------------------------------------------
def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def _fits(kind: str, value: Any) -> bool:
    """Whether ``value`` is of ``kind`` (a bound value fits any kind: it is checked when it is bound)."""
    if is_dynamic(value):
        return True
    checks = {
        _STR: isinstance(value, str),
        _TEXT: isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)),
        _BOOL: isinstance(value, bool),
        _COUNT: (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str)
                                                                            and value.isdigit()),
        _NUM: isinstance(value, int | float) and not isinstance(value, bool),
        _ACTION: isinstance(value, dict), _OBJECT: isinstance(value, dict),
        _SOURCE: isinstance(value, list), _CHILDREN: isinstance(value, list), _ARRAY: isinstance(value, list),
    }
    return checks.get(kind, True)


@dataclass
class _Screen:
    """What one screen holds, gathered while its components are checked."""

    id: str
    path: Path
    data: dict[str, Any]
    #: it declares a data model at all
    has_data: bool = False
    names: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    has_form: bool = False
    inputs_outside_form: list[str] = field(default_factory=list)
    #: (path, name, payload, where it is used) of every action
    actions: list[tuple[Path, str, Any, str]] = field(default_factory=list)
    bindings: list[tuple[Path, str]] = field(default_factory=list)
    footers: int = 0


class _Validator:
    def __init__(self, doc: dict[str, Any], report: Report) -> None:
        self.doc, self.report = doc, report
        self.version: tuple[int, int] = (7, 3)
        self.screens: dict[str, _Screen] = {}
        self.has_data_api = "data_api_version" in doc

    def add(self, code: str, message: str, path: Path, *, key: bool = False) -> None:
        self.report.add(code, message, path, key=key)

    def unknown(self, prop: str, path: Path) -> None:
        # the OpenAPI description's own example of a schema error
        self.report.add("INVALID_PROPERTY", f'The property "{prop}" cannot be specified at "{rooted(path)}".',
                        (*path, prop), key=True, error_type="JSON_SCHEMA_ERROR")

    def missing(self, prop: str, path: Path) -> None:
        code = "MISSING_REQUIRED_TYPE_PROPERTY" if prop == "type" else "MISSING_REQUIRED_PROPERTY"
        self.add(code, f"Required property '{prop}' is missing.", path)

    # top level ----------------------------------------------------------------------------------------------
    def run(self) -> None:
        doc = self.doc
        for prop in doc:
            if prop not in _TOP_KEYS:
                self.unknown(prop, ())
        if not self.check_version():
            return
        if "data_channel_uri" in doc and self.version >= (3, 0):
            self.add("INVALID_PROPERTY_KEY", "Property 'data_channel_uri' is no longer supported in Flow JSON as of "
                     "version '3.0'. Please configure your endpoint URI using Flows API or Builder. Refer Flows "
                     "documentation at https://developers.facebook.com/docs/whatsapp/flows for more information.",
                     ("data_channel_uri",), key=True)
        if self.has_data_api and doc["data_api_version"] not in DATA_API_VERSIONS:
            self.add("INVALID_DATA_API_VERSION", "Invalid Data API version.", ("data_api_version",))
        screens = doc.get("screens")
        if "screens" not in doc:
            self.missing("screens", ())
            return
        if not isinstance(screens, list):
            self.add("INVALID_PROPERTY_TYPE", f"Expected property 'screens' to be of type 'array' but found "
                     f"'{_type_name(screens)}'.", ("screens",))
            return
        if not screens:
            self.add("MIN_ITEMS_REQUIRED", "Property 'screens' should have at least '1' items.", ("screens",))
            return
        if len(screens) > MAX_SCREENS:
            self.add("MAX_SCREENS_NUMBER", f"Maximum number of screens allowed per Flow is {MAX_SCREENS} but found "
                     f"{len(screens)}.", ("screens",))
        for index, screen in enumerate(screens):
            self.check_screen(screen, ("screens", index))
        self.check_flow(screens)

    def check_version(self) -> bool:
        if "version" not in self.doc:
            self.add("MISSING_FLOW_JSON_VERSION", "Flow JSON version is not specified.", ())
            return False
        version = self.doc["version"]
        parsed = version_tuple(version)
        if version in VERSIONS and parsed is not None:
            self.version = parsed
            return True
        if parsed is not None and parsed < _OLDEST:
            self.add("UNSUPPORTED_FLOW_JSON_VERSION", "Unsupported Flow JSON version.", ("version",))
        else:
            self.add("INVALID_FLOW_JSON_VERSION", "Given Flow JSON version is not supported. Please refer the "
                     f"supported versions at {CHANGELOG}.", ("version",))
        return False

    # screens ------------------------------------------------------------------------------------------------
    def check_screen(self, screen: Any, path: Path) -> None:
        if not isinstance(screen, dict):
            self.add("INVALID_PROPERTY_TYPE", f"Expected property '{dotted(path)}' to be of type 'object' but found "
                     f"'{_type_name(screen)}'.", path)
            return
        for prop in screen:
            if prop not in _SCREEN_KEYS or (prop == "sensitive" and self.version < _V51):
                self.unknown(prop, path)
        for prop in ("id", "layout"):
            if prop not in screen:
                self.missing(prop, path)
        screen_id = screen.get("id")
        if not isinstance(screen_id, str):
            return
        self.check_screen_id(screen_id, (*path, "id"))
        if screen_id in self.screens:
            self.add("DUPLICATE_SCREEN_IDS", f"Duplicate screen id found: '{screen_id}'.", (*path, "id"))
            return
        self.check_screen_flags(screen, path)
        data = screen.get("data", {})
        if not isinstance(data, dict):
            self.add("INVALID_PROPERTY_TYPE", f"Expected property 'data' to be of type 'object' but found "
                     f"'{_type_name(data)}'.", (*path, "data"))
            data = {}
        self.check_data_model(data, (*path, "data"))
        state = self.screens[screen_id] = _Screen(screen_id, path, data, has_data="data" in screen)
        layout = screen.get("layout")
        if isinstance(layout, dict):
            self.check_layout(layout, (*path, "layout"), state)
        elif layout is not None:
            self.add("INVALID_PROPERTY_TYPE", f"Expected property 'layout' to be of type 'object' but found "
                     f"'{_type_name(layout)}'.", (*path, "layout"))

    def check_screen_id(self, screen_id: str, path: Path) -> None:
        """A screen id: alphabets and underscores (7.0: not only underscores), not the reserved one."""
        pattern = r"(?!_+$)[a-zA-Z_]+" if self.version >= (7, 0) else r"[a-zA-Z,_]+"
        if not screen_id:
            self.add("MIN_CHARS_REQUIRED", "Property 'id' should have at least '1' characters.", path)
        elif not re.fullmatch(pattern, screen_id):
            self.add("PATTERN_MISMATCH", "Property 'id' should only consist of alphabets and underscores.",
                     path)
        # the reference spells the reserved id SUCCESS, the error table 'success'
        if screen_id.upper() == "SUCCESS":
            self.add("SCREEN_ID_IS_RESERVED_KEYWORD", f"Screen id cannot be '{screen_id}' since it is a reserved "
                     "keyword.", path)

    def check_screen_flags(self, screen: dict[str, Any], path: Path) -> None:
        for prop in ("terminal", "success", "refresh_on_back"):
            if prop in screen and not isinstance(screen[prop], bool):
                self.add("INVALID_PROPERTY_TYPE", f"Expected property '{prop}' to be of type 'boolean' but found "
                         f"'{_type_name(screen[prop])}'.", (*path, prop))
        if "success" in screen and screen.get("terminal") is not True:
            self.add("NOT_KEYWORD_SCHEMA_VALIDATION_FAILED", "Property 'success' can only be specified on a "
                     "terminal screen.", (*path, "success"), key=True)
        if screen.get("refresh_on_back") is True and not self.has_data_api:
            self.add("INVALID_PROPERTY_VALUE", "Property 'refresh_on_back' can be true only when property "
                     "'data_api_version' is set.", (*path, "refresh_on_back"))

    def check_data_model(self, data: dict[str, Any], path: Path) -> None:
        for name, schema in data.items():
            where = (*path, name)
            if not isinstance(schema, dict) or "type" not in schema:
                self.add("INVALID_SCREEN_DATA", "Missing the definition of property 'type'.", where)
            elif not isinstance(schema["type"], str):
                self.add("INVALID_SCREEN_DATA", "Expected the property 'type' to be of type string.", (*where, "type"))
            elif schema["type"] == "array" and "items" not in schema:
                self.add("INVALID_SCREEN_DATA", "Missing the schema for property 'items' in array.", where)

    def check_layout(self, layout: dict[str, Any], path: Path, screen: _Screen) -> None:
        for prop in layout:
            if prop not in ("type", "children"):
                self.unknown(prop, path)
        if "type" not in layout:
            self.missing("type", path)
        elif layout["type"] != LAYOUT:
            self.add("INVALID_PROPERTY_VALUE", f"Invalid value found for property 'type'. Expected '{LAYOUT}'.",
                     (*path, "type"))
        children = layout.get("children")
        if "children" not in layout:
            self.missing("children", path)
            return
        if not isinstance(children, list):
            self.add("INVALID_PROPERTY_TYPE", f"Expected property 'children' to be of type 'array' but found "
                     f"'{_type_name(children)}'.", (*path, "children"))
            return
        screen.footers = self.check_children(children, (*path, "children"), screen, in_form=False, depth=0)
        total = sum(screen.counts.values())
        if total > MAX_COMPONENTS:
            self.add("MAX_ALLOWED_COMPONENTS_PER_SCREEN", f"Maximum number of components allowed per screen is "
                     f"{MAX_COMPONENTS} but found {total}.", (*path, "children"))
        for kind, spec in COMPONENTS.items():
            count = screen.counts.get(kind, 0)
            if spec.per_screen is not None and count > spec.per_screen and kind != "Footer":
                code = {"EmbeddedLink": "MAX_EMBEDDED_LINK_PER_SCREEN", "Image": "MAX_IMAGE_PER_SCREEN",
                        "OptIn": "MAX_OPT_IN_PER_SCREEN"}[kind]
                self.add(code, f"Maximum number of {kind} allowed per screen is {spec.per_screen} but found {count}.",
                         (*path, "children"))
        if screen.footers > 1:
            self.add("MAX_FOOTER_PER_SCREEN", f"Maximum number of Footer allowed per screen is 1 but found "
                     f"{screen.footers}.", (*path, "children"))
        if screen.counts.get("Form", 0) > 1:
            self.add("INVALID_PROPERTY_VALUE", f"Maximum number of Form allowed per screen is 1 but found "
                     f"{screen.counts['Form']}.", (*path, "children"))
        if screen.has_form and screen.inputs_outside_form:
            names = screen.inputs_outside_form
            said = (f"Component '{names[0]}' is" if len(names) == 1 else "Components '" + "', '".join(names) + "' are")
            self.add("COMPONENTS_OUTSIDE_FORM", f"{said} not allowed outside Form when Form component is present.",
                     (*path, "children"))

    # components ---------------------------------------------------------------------------------------------
    def check_children(self, children: list[Any], path: Path, screen: _Screen, *, in_form: bool, depth: int) -> int:
        """Check a list of components; returns how many Footers it holds (a branch's count as one)."""
        footers = 0
        for index, component in enumerate(children):
            footers += self.check_component(component, (*path, index), screen, in_form=in_form, depth=depth)
        return footers

    def check_component(self, component: Any, path: Path, screen: _Screen, *, in_form: bool, depth: int) -> int:
        if not isinstance(component, dict):
            self.add("INVALID_PROPERTY_TYPE", f"Expected property '{dotted(path)}' to be of type 'object' but found "
                     f"'{_type_name(component)}'.", path)
            return 0
        if "type" not in component:
            self.missing("type", path)
            return 0
        kind = component["type"]
        spec = COMPONENTS.get(kind) if isinstance(kind, str) else None
        if spec is None or self.version < spec.since:
            self.add("INVALID_PROPERTY_VALUE", "Invalid value found for property 'type'.", (*path, "type"))
            return 0
        screen.counts[kind] = screen.counts.get(kind, 0) + 1
        self.check_properties(kind, spec, component, path, screen, in_form=in_form)
        if spec.input:
            self.check_name(component, path, screen)
            if not in_form and self.version < _V4:
                self.add("KEYWORD_ONE_OF", f"Property '{kind}' must be defined inside parent property 'Form'.", path)
            if not in_form:
                screen.inputs_outside_form.append(kind)
        if kind == "Footer":
            return 1
        if kind == "Form":
            screen.has_form = True
            if in_form:
                self.add("INVALID_PROPERTY_VALUE", "Invalid value found for property 'type'.", (*path, "type"))
            children = component.get("children")
            if isinstance(children, list):
                return self.check_children(children, (*path, "children"), screen, in_form=True, depth=depth)
            return 0
        if kind == "If":
            return self.check_if(component, path, screen, in_form=in_form, depth=depth + 1)
        if kind == "Switch":
            return self.check_switch(component, path, screen, in_form=in_form, depth=depth)
        return 0

    def check_properties(self, kind: str, spec: Component, component: dict[str, Any], path: Path, screen: _Screen,
                         *, in_form: bool) -> None:
        for prop in spec.required:
            if prop not in component:
                self.missing(prop, path)
        if kind in ("CheckboxGroup", "RadioButtonsGroup") and self.version >= _V4 and "label" not in component:
            self.missing("label", path)
        if spec.open:
            return
        for prop, value in component.items():
            where = (*path, prop)
            kind_of = spec.props.get(prop)
            since = spec.since_props.get(prop, (1, 0))
            if kind_of is None or self.version < since:
                self.unknown(prop, path)
                continue
            if prop in ("init-value", "error-message") and in_form:
                self.unknown(prop, path)  # "Only available when component is outside Form component"
                continue
            if not _fits(kind_of, value):
                self.add("INVALID_PROPERTY_TYPE", f"Expected property '{prop}' to be of type "
                         f"'{'string' if kind_of == _TEXT else kind_of}' but found '{_type_name(value)}'.", where)
                continue
            self.check_value(kind, spec, prop, value, where=where, screen=screen)
        self.check_relations(kind, component, path)

    def check_relations(self, kind: str, component: dict[str, Any], path: Path) -> None:
        """The rules between a component's properties (captions, pattern, min and max)."""
        if kind == "Footer":
            self.check_captions(component, path)
        if kind == "TextInput" and "pattern" in component:
            if "helper-text" not in component:
                self.add("INVALID_DEPENDENCIES", "TextInput should have property helper-text when property pattern "
                         "is present.", path)
            if component.get("input-type") in ("email", "phone"):
                self.add("INVALID_DEPENDENCIES", "Property 'pattern' is supported with input-type text, number, "
                         "password and passcode only.", (*path, "pattern"), key=True)
        for low, high in (("min-chars", "max-chars"), ("min-selected-items", "max-selected-items")):
            lo, hi = component.get(low), component.get(high)
            if _fits(_COUNT, lo) and _fits(_COUNT, hi) and not is_dynamic(lo) and not is_dynamic(hi) \
                    and lo is not None and hi is not None and int(lo) > int(hi):
                self.add("MIN_VALUE_GREATER_THAN_MAX", f"'{low}' cannot be greater than '{high}' for {kind} "
                         f"'{component.get('name', '')}'.", path)

    def check_value(self, kind: str, spec: Component, prop: str, value: Any, *, where: Path, screen: _Screen) -> None:
        if is_dynamic(value):
            bound = binding(value)
            if bound is not None and bound[0] is None and bound[1] == "data":
                screen.bindings.append((where, value))
            return
        if prop in spec.enums and value not in spec.enums[prop]:
            self.add("INVALID_ENUM_VALUE", f"Value should be one of: [{', '.join(spec.enums[prop])}].", where)
        if prop in ("text", "label") and isinstance(value, str) and not value.strip():
            self.add("PATTERN_MISMATCH", f"Property '{prop}' should not be blank or an empty string.", where)
        limit = spec.limits.get(prop)
        if limit is not None:
            length = len(value) if isinstance(value, str) else (
                sum(len(v) for v in value) if isinstance(value, list) else 0)
            if length > limit:
                self.add("INVALID_PROPERTY_VALUE", f"Property '{prop}' should have at most '{limit}' characters.",
                         where)
        if prop == "data-source":
            self.check_options(kind, value, where, screen)
        elif prop in ("on-click-action", "on-select-action", "on-unselect-action"):
            self.check_action(kind if prop == "on-click-action" else prop, value, where, screen)
        elif prop == "unavailable-dates" and not all(isinstance(d, str) for d in value):
            self.add("INVALID_PROPERTY_TYPE", "Expected property 'unavailable-dates' to be of type 'array' of "
                     "strings.", where)

    def check_name(self, component: dict[str, Any], path: Path, screen: _Screen) -> None:
        name = component.get("name")
        if not isinstance(name, str):
            return
        if not name.strip():
            self.add("PATTERN_MISMATCH", "Property 'name' should not be blank or an empty string.", (*path, "name"))
        elif name in screen.names:
            self.add("DUPLICATE_FORM_COMPONENT_NAMES", f"Duplicate name found for Form components: '{name}'.",
                     (*path, "name"))
        else:
            screen.names[name] = path

    def check_captions(self, footer: dict[str, Any], path: Path) -> None:
        sides = [side for side in ("left-caption", "right-caption") if side in footer]
        if "center-caption" in footer and sides:
            self.add("NOT_KEYWORD_SCHEMA_VALIDATION_FAILED", "Properties 'center-caption' and [left-caption, "
                     "right-caption] must be present exclusively at Footer.", path)
        elif len(sides) == 1:
            other = "left-caption" if sides[0] == "right-caption" else "right-caption"
            self.add("INVALID_DEPENDENCIES", f"Footer should have property {other} when property {sides[0]} is "
                     "present.", path)

    def check_options(self, kind: str, options: list[Any], path: Path, screen: _Screen) -> None:
        fewest, most = _OPTION_COUNTS.get(kind, (1, 20))
        if kind == "Dropdown" and any(isinstance(o, dict) and "image" in o for o in options):
            most = 100
        if len(options) < fewest:
            self.add("MIN_ITEMS_REQUIRED", f"Property 'data-source' should have at least '{fewest}' items.", path)
        if len(options) > most:
            self.add("MAX_ITEMS_REQUIRED", f"Property 'data-source' should have at most '{most}' items.", path)
        for index, option in enumerate(options):
            where = (*path, index)
            if not isinstance(option, dict):
                self.add("INVALID_PROPERTY_TYPE", f"Expected property '{dotted(where)}' to be of type 'object' but "
                         f"found '{_type_name(option)}'.", where)
                continue
            for prop in ("id", "title"):
                if prop not in option:
                    self.missing(prop, where)
            for prop, value in option.items():
                if prop not in _OPTION or self.version < _OPTION_SINCE.get(prop, (1, 0)):
                    self.unknown(prop, where)
                elif not _fits(_OPTION[prop], value):
                    self.add("INVALID_PROPERTY_TYPE", f"Expected property '{prop}' to be of type '{_OPTION[prop]}' "
                             f"but found '{_type_name(value)}'.", (*where, prop))
                elif prop in _OPTION_LIMITS and isinstance(value, str) and not is_dynamic(value) \
                        and len(value) > _OPTION_LIMITS[prop]:
                    self.add("INVALID_PROPERTY_VALUE", f"Property '{prop}' should have at most "
                             f"'{_OPTION_LIMITS[prop]}' characters.", (*where, prop))
                elif prop in ("on-select-action", "on-unselect-action"):
                    self.check_action(prop, value, (*where, prop), screen)

    def check_action(self, where_used: str, action: dict[str, Any], path: Path, screen: _Screen) -> None:
        for prop in action:
            if prop not in _ACTION_KEYS:
                self.unknown(prop, path)
        name = action.get("name")
        if "name" not in action:
            self.missing("name", path)
            return
        allowed = {n for n, since in _ACTIONS.get(where_used, {}).items() if self.version >= since}
        if name not in allowed:
            self.add("INVALID_ENUM_VALUE", f"Value should be one of: [{', '.join(sorted(allowed))}].", (*path, "name"))
            return
        if name in ("complete", "data_exchange", "update_data") and "payload" not in action:
            self.missing("payload", path)
        if name == "navigate":
            nxt = action.get("next")
            if not isinstance(nxt, dict):
                self.missing("next", path)
            elif nxt.get("type") != "screen" or not isinstance(nxt.get("name"), str):
                self.add("INVALID_PROPERTY_VALUE", "Invalid value found for property 'next'.", (*path, "next"))
        if name == "open_url" and not isinstance(action.get("url"), str):
            self.missing("url", path)
        if name == "data_exchange" and not self.has_data_api:
            self.add("MISSING_REQUIRED_PROPERTY", "The property 'data_api_version' is required for data_exchange "
                     "action.", (*path, "name"))
        payload = action.get("payload", {})
        if "payload" in action and not isinstance(payload, dict):
            self.add("INVALID_PROPERTY_TYPE", f"Expected property 'payload' to be of type 'object' but found "
                     f"'{_type_name(payload)}'.", (*path, "payload"))
            payload = {}
        screen.actions.append((path, str(name), payload, where_used))

    def check_if(self, component: dict[str, Any], path: Path, screen: _Screen, *, in_form: bool, depth: int) -> int:
        if depth > MAX_IF_NESTING:
            self.add("MAXIMUM_IF_NESTING", "The 'If' component can only be nested up to 3 levels deep.", path)
        condition = component.get("condition")
        if isinstance(condition, str) and not condition.strip():
            self.add("INVALID_PROPERTY_VALUE", "Expected property 'condition' to contain at least one operand.",
                     (*path, "condition"))
        branches = {}
        for branch in ("then", "else"):
            children = component.get(branch)
            if isinstance(children, list):
                if branch == "then" and not children:
                    self.add("INVALID_PROPERTY_VALUE", "Expected array to contain at least one component.",
                             (*path, branch))
                branches[branch] = self.check_children(children, (*path, branch), screen, in_form=in_form,
                                                       depth=depth)
        then, otherwise = branches.get("then", 0), branches.get("else")
        if then and otherwise is None:
            self.add("MISSING_FOOTER_IN_IF_ELSE_BRANCHES", "Missing Footer inside one of the 'If' component "
                     "branches. Branch 'else' should exist and contain one Footer.", path)
        elif bool(then) != bool(otherwise):
            self.add("MISSING_FOOTER_IN_IF_ELSE_BRANCHES", "Footer component must be present in all branches of "
                     "'If' component if it exists in any one branch.", path)
        return 1 if then or otherwise else 0

    def check_switch(self, component: dict[str, Any], path: Path, screen: _Screen, *, in_form: bool,
                     depth: int) -> int:
        cases = component.get("cases")
        if not isinstance(cases, dict):
            return 0
        if not cases:
            self.add("EMPTY_SWITCH_CASES", "The 'cases' property of a Switch component cannot be empty.",
                     (*path, "cases"))
        footers = [self.check_children(children, (*path, "cases", key), screen, in_form=in_form, depth=depth)
                   if isinstance(children, list) else 0 for key, children in cases.items()]
        if any(footers) and not all(footers):
            self.add("MISSING_FOOTER_IN_SWITCH_BRANCHES", "Footer component must be present in all switch cases if "
                     "it exists in one of the cases.", path)
        return 1 if any(footers) else 0

    # the flow as a whole ------------------------------------------------------------------------------------
    def check_flow(self, screens: list[Any]) -> None:
        terminal = [s for s in screens if isinstance(s, dict) and s.get("terminal") is True]
        if not terminal:
            self.add("MISSING_TERMINAL_SCREEN", "Terminal screen is required but not provided.", ("screens",))
        elif all(s.get("success") is False for s in terminal):
            self.add("INVALID_PROPERTY_VALUE", "At least one terminal screen must have property 'success' set as "
                     "true.", ("screens",))
        without_footer = [s["id"] for s in terminal if isinstance(s.get("id"), str) and s["id"] in self.screens
                          and self.screens[s["id"]].footers == 0]
        if without_footer:
            said = (f"terminal screen '{without_footer[0]}'" if len(without_footer) == 1
                    else f"terminal screens: [{', '.join(without_footer)}]")
            where = self.screens[without_footer[0]].path
            self.add("MISSING_FOOTER_ON_TERMINAL_SCREEN", f"Footer component is missing on {said}.", where)
        terminal_ids = {s.get("id") for s in terminal}
        edges: dict[str, set[str]] = {screen_id: set() for screen_id in self.screens}
        for screen in self.screens.values():
            for binding_path, value in screen.bindings:
                key = binding(value)
                if key is not None and key[2] not in screen.data:
                    self.add("INVALID_SCREEN_DYNAMIC_DATA", f"Missing dynamic data '{value}' in the screen data model.",
                             binding_path)
            for path, name, payload, where_used in screen.actions:
                if name == "complete" and screen.id not in terminal_ids:
                    self.add("INVALID_COMPLETE_ACTION", "On-click-action 'complete' can only be configured on a "
                             "terminal screen.", (*path, "name"))
                self.check_payload(screen, payload, (*path, "payload"), where_used)
                if name == "navigate":
                    target = self.check_navigate(screen, path, payload)
                    if target is not None:
                        edges[screen.id].add(target)
        self.check_routes(edges)

    def check_payload(self, screen: _Screen, payload: Any, path: Path, where_used: str) -> None:
        for where, value in _strings(payload, path):
            bound = binding(value)
            if bound is None:
                continue
            other, store, key = bound
            if other is not None:
                if other not in self.screens:
                    self.add("INVALID_ON_CLICK_ACTION_PAYLOAD", f"The screen id '{other}' referenced in the dynamic "
                             f"binding expression '{value}' does not exist.", where)
                continue
            if store == "form":
                if key not in screen.names:
                    self.add("INVALID_ON_CLICK_ACTION_PAYLOAD", f"Missing Form component {value} for screen "
                             f"'{screen.id}'.", where)
                elif where_used == "Footer" and screen.has_form and _outside_form(screen, path):
                    self.add("INVALID_ON_CLICK_ACTION_PAYLOAD", "Footer placed outside Form component is not allowed "
                             "to reference form data.", where)
            elif key not in screen.data:
                self.add("INVALID_ON_CLICK_ACTION_PAYLOAD", f"Missing dynamic data '{value}' in the data model for "
                         f"screen {screen.id}.", where)

    def check_navigate(self, screen: _Screen, path: Path, payload: Any) -> str | None:
        nxt = self._action_at(path).get("next")
        target = nxt.get("name") if isinstance(nxt, dict) else None
        if not isinstance(target, str):
            return None
        if target == screen.id:
            self.add("INVALID_NAVIGATE_ACTION_NEXT_SCREEN_NAME", f"Same screen navigation is not allowed. Loop "
                     f"detected at [{target}].", (*path, "next", "name"))
            return None
        if target not in self.screens:
            self.add("INVALID_NAVIGATE_ACTION_NEXT_SCREEN_NAME", f"Unknown screen ids found: [{target}].",
                     (*path, "next", "name"))
            return None
        expected = set(self.screens[target].data)
        given = set(payload) if isinstance(payload, dict) else set()
        if given and not self.screens[target].has_data:
            self.add("INVALID_NAVIGATE_ACTION_PAYLOAD", f"No data model is defined in the next screen '{target}'.",
                     (*path, "payload"))
        elif given - expected:
            self.add("INVALID_NAVIGATE_ACTION_PAYLOAD", "Following fields are missing in the next screen's data "
                     f"model: [{', '.join(sorted(given - expected))}].", (*path, "payload"))
        elif expected - given and not self.has_data_api:
            self.add("INVALID_NAVIGATE_ACTION_PAYLOAD", "Following fields are expected in the next screen's data "
                     f"model but missing in payload: [{', '.join(sorted(expected - given))}].", (*path, "payload"))
        return target

    def _action_at(self, path: Path) -> dict[str, Any]:
        node: Any = self.doc
        for part in path:
            node = node[part]
        return node if isinstance(node, dict) else {}

    def check_routes(self, edges: dict[str, set[str]]) -> None:
        if self.has_data_api:
            routing = self.doc.get("routing_model")
            if routing is None:
                self.add("MISSING_REQUIRED_PROPERTY", "The property 'routing_model' is required for property "
                         "'data_api_version'.", ("data_api_version",), key=True)
                return
            if not isinstance(routing, dict):
                return
            invalid = [s for s in routing if s not in self.screens]
            if invalid:
                self.add("INVALID_ROUTING_MODEL", f"Invalid screens found in the routing model: "
                         f"[{', '.join(invalid)}].", ("routing_model",))
            missing = [s for s in self.screens if s not in routing]
            if missing:
                self.add("INVALID_ROUTING_MODEL", f"Following screens are missing in the routing model: "
                         f"[{', '.join(missing)}].", ("routing_model",))
            wide = [s for s, routes in routing.items() if isinstance(routes, list) and len(routes) > 10]
            if wide:
                self.add("INVALID_ROUTING_MODEL", f"Number of branches exceeds the max limit of 10 for screens: "
                         f"[{', '.join(wide)}].", ("routing_model",))
            return
        if len(self.screens) < 2:
            return
        inbound = {target for targets in edges.values() for target in targets}
        if not set(self.screens) - inbound:
            self.add("INVALID_ROUTING_MODEL", "No entry screen found in the routing model. Add a screen that is not "
                     "used as the next screen in any of the navigate actions.", ("screens",))
            return
        # the first screen is where a message opens the flow by default: every other must be reached from it
        first = next(iter(self.screens))
        reached, todo = {first}, [first]
        while todo:
            for target in edges[todo.pop()] - reached:
                reached.add(target)
                todo.append(target)
        lonely = [s for s in self.screens if s not in reached]
        if lonely:
            self.add("INVALID_ROUTING_MODEL", "Following screens are not connected with the rest of the screens via "
                     f"navigate screen action: [{', '.join(lonely)}]. All screens should be connected.", ("screens",))
        wide = [s for s, targets in edges.items() if len(targets) > 10]
        if wide:
            self.add("INVALID_ROUTING_MODEL", f"Number of branches exceeds the max limit of 10 for screens: "
                     f"[{','.join(wide)}]. Reduce navigate actions for the screen.", ("screens",))


def _strings(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """Every string inside a payload, with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _outside_form(screen: _Screen, path: Path) -> bool:
    """Whether the action at ``path`` is on a component placed outside the screen's Form."""
    layout = (*screen.path, "layout", "children")
    rest = path[len(layout):]
    # a component inside a Form sits under <form index>/children/<index>
    return not (len(rest) > 2 and rest[1] == "children")


def flow_json_errors(text: str | bytes) -> list[dict[str, Any]]:
    """Meta's ``validation_errors`` for an uploaded Flow JSON (empty: it is valid). Never raises."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            return [_whole("INVALID_FLOW_JSON", f"The maximum size of the Flow JSON is 10 MB. But your Flow JSON "
                                                f"size exceeds the maximum size by {len(text) - MAX_BYTES} bytes.")]
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return [_whole("INVALID_FLOW_JSON", "Flow JSON is not valid.")]
    try:
        doc = json.loads(text)
    except ValueError as exc:
        line, column = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
        place = {"line_start": line, "line_end": line, "column_start": column, "column_end": column}
        return [{"error": "INVALID_FLOW_JSON", "error_type": "FLOW_JSON_ERROR", "message": "Flow JSON is not valid.",
                 **place, "pointers": [{**place, "path": ""}]}]
    report = Report(Positions(text))
    if not isinstance(doc, dict):
        report.add("INVALID_FLOW_JSON", "Flow JSON is not valid.", ())
        return report.errors
    _Validator(doc, report).run()
    return report.errors


def _whole(code: str, message: str) -> dict[str, Any]:
    place = {"line_start": 1, "line_end": 1, "column_start": 1, "column_end": 1}
    return {"error": code, "error_type": "FLOW_JSON_ERROR", "message": message, **place,
            "pointers": [{**place, "path": ""}]}
