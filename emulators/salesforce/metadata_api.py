"""The emulated org's Metadata API (SOAP, ``POST /services/Soap/m/<version>``): ``readMetadata`` and
``updateMetadata`` of the standard value sets behind Lead Status, Case Status and Opportunity Stage.

Requests are checked as the Metadata API's WSDL describes them (the WSDL simple-salesforce bundles, the text
the org serves at Setup → API): a SOAP 1.1 envelope, a ``SessionHeader`` holding a live session, the operation's
elements, an ``xsi:type`` naming a metadata type, and every element of a ``StandardValueSet`` and its
``standardValue`` entries known to their types with values of the type's kind (``xsd:boolean``, ``xsd:int``,
the ``ForecastCategories`` enumeration). A malformed request or a refused session is a SOAP fault (HTTP 500,
``faultcode`` ``sf:<ExceptionCode>`` or ``soapenv:Client``); a well-formed update Salesforce would not save is a
``SaveResult`` with ``success`` false and its ``errors`` (``INVALID_CROSS_REFERENCE_KEY``,
``DUPLICATE_DEVELOPER_NAME``, ``FIELD_INTEGRITY_EXCEPTION``).

An update carries the whole value set: the values it lists, in its order, become the picklist ``describe``
reports (a value left out is removed, so a client must send back the org's own values).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from flask import Flask, Response, request

from emulators.salesforce.state import OrgState

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
MD = "http://soap.sforce.com/2006/04/metadata"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_XSD = "http://www.w3.org/2001/XMLSchema"
_WSDL = "http://schemas.xmlsoap.org/wsdl/"

#: a standard value set → the sObject field whose picklist it is
VALUE_SETS = {"LeadStatus": ("Lead", "Status"), "CaseStatus": ("Case", "Status"),
              "OpportunityStage": ("Opportunity", "StageName")}
#: the attributes of a value that mean something in each set (beside fullName, label, default)
_SET_FLAGS = {"LeadStatus": {"converted"}, "CaseStatus": {"closed"},
              "OpportunityStage": {"closed", "won", "probability", "forecastCategory"}}
#: the flags of the org's standard values (Salesforce's defaults in a new org)
_STANDARD_FLAGS: dict[str, dict[str, dict[str, Any]]] = {
    "LeadStatus": {"Closed - Converted": {"converted": True}},
    "CaseStatus": {"Closed": {"closed": True}},
    "OpportunityStage": {
        **{name: {"probability": p, "forecastCategory": "Pipeline"} for name, p in (
            ("Prospecting", 10), ("Qualification", 10), ("Needs Analysis", 20), ("Value Proposition", 50),
            ("Id. Decision Makers", 60), ("Perception Analysis", 70), ("Proposal/Price Quote", 75),
            ("Negotiation/Review", 90))},
        "Closed Won": {"closed": True, "won": True, "probability": 100, "forecastCategory": "Closed"},
        "Closed Lost": {"closed": True, "won": False, "probability": 0, "forecastCategory": "Omitted"}},
}
#: how many components one call may name
_LIMIT = 10


class SoapFault(Exception):
    """A SOAP fault to answer: ``code`` is ``sf:<ExceptionCode>`` or ``soapenv:Client``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@functools.cache
def wsdl_types() -> tuple[dict[str, dict[str, tuple[str, bool]]], dict[str, list[str]]]:
    """The WSDL's complex types (name → element → (type, repeated), the base type's elements first) and its
    enumerations (simple type → values), read once from the WSDL simple-salesforce bundles."""
    import simple_salesforce

    wsdl = Path(simple_salesforce.__file__).parent / "metadata.wsdl"
    root = ET.parse(wsdl).getroot()  # noqa: S314 - the installed client's own file
    schema = root.find(f"{{{_WSDL}}}types/{{{_XSD}}}schema")
    assert schema is not None
    nodes = {c.get("name", ""): c for c in schema.findall(f"{{{_XSD}}}complexType")}
    enums = {s.get("name", ""): [e.get("value", "") for e in s.iter(f"{{{_XSD}}}enumeration")]
             for s in schema.findall(f"{{{_XSD}}}simpleType")}

    def elements(name: str) -> dict[str, tuple[str, bool]]:
        node = nodes[name]
        out: dict[str, tuple[str, bool]] = {}
        extension = node.find(f"{{{_XSD}}}complexContent/{{{_XSD}}}extension")
        if extension is not None:
            out.update(elements(extension.get("base", "").split(":")[-1]))
            node = extension
        sequence = node.find(f"{{{_XSD}}}sequence")
        for element in sequence.findall(f"{{{_XSD}}}element") if sequence is not None else []:
            out[element.get("name", "")] = (element.get("type", ""), element.get("maxOccurs") == "unbounded")
        return out

    return {name: elements(name) for name in nodes}, enums


class OrgMetadata(OrgState):
    """The Metadata API layer of the emulated org (standard value sets)."""

    #: a standard value set → a value's fullName → its label and flags (what ``describe`` does not say)
    value_attributes: dict[str, dict[str, dict[str, Any]]]

    def _init_metadata(self) -> None:
        self.value_attributes = {name: {value: dict(flags) for value, flags in _STANDARD_FLAGS[name].items()}
                                 for name in VALUE_SETS}

    def value_set(self, name: str) -> list[dict[str, Any]]:
        """A standard value set's values as ``readMetadata`` answers them: ``fullName``, ``label``, ``default``
        and the set's flags (a value an admin added in Setup has them unset, as Salesforce's defaults)."""
        sobject, field = VALUE_SETS[name]
        with self.lock:
            spec = self.schema[sobject][field]
            out = []
            for value in spec.picklist:
                extra = self.value_attributes[name].get(value, {})
                entry: dict[str, Any] = {"fullName": value, "default": value == spec.default,
                                         "label": spec.labels.get(value, value)}
                for flag in sorted(_SET_FLAGS[name]):
                    if flag in ("closed", "won", "converted"):
                        entry[flag] = bool(extra.get(flag, False))
                    else:  # Setup asks every stage for both: an admin's stage is open, at 0%, in the pipeline
                        entry[flag] = extra.get(flag, {"probability": 0, "forecastCategory": "Pipeline"}[flag])
                out.append(entry)
            return out

    # -- the endpoint --------------------------------------------------------------------------
    def _add_metadata_routes(self, app: Flask) -> None:
        @app.post("/services/Soap/m/<version>", strict_slashes=False)
        @app.post("/services/Soap/m/<version>/<path:org>")
        def metadata(version: str, org: str = "") -> Response:
            return self._metadata_call(version)

    def _metadata_call(self, version: str) -> Response:
        self._record_call(auto_assign=None)
        try:
            if not version.replace(".", "", 1).isdigit():
                raise SoapFault("sf:UNSUPPORTED_API_VERSION", f"UNSUPPORTED_API_VERSION: Invalid Api version "
                                                              f"specified on URL: {version}")
            fault = self._draw_fault()
            if fault in ("500", "502", "503"):
                raise SoapFault("sf:UNKNOWN_EXCEPTION", "UNKNOWN_EXCEPTION: An unexpected error occurred. Please "
                                                        "include this ErrorId if you contact support: 1907455961-61224")
            operation, header, prefixes = self._md_envelope(request.get_data())
            self._md_session(header, fault)
            with self.lock:
                if self.used >= self.daily_limit:
                    raise SoapFault("sf:REQUEST_LIMIT_EXCEEDED", "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit "
                                                                 "exceeded.")
                self.used += 1
            if not self.can_customize:
                raise SoapFault("sf:INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS: use of the Metadata API requires a "
                                                          "user with the ModifyAllData or ModifyMetadata permissions")
            name = operation.tag.split("}", 1)[1]
            body = self._read_metadata(operation) if name == "readMetadata" else self._update_metadata(operation, prefixes)
        except SoapFault as exc:
            if exc.code == "soapenv:Client":
                self._violation(f"Metadata API: {exc.message}")
            return self._md_answer(_fault(exc), status=500)
        return self._md_answer(body)

    def _md_answer(self, body: str, *, status: int = 200) -> Response:
        text = (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns="{MD}" '
                f'xmlns:xsi="{XSI}"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>')
        response = Response(text, status=status, content_type="text/xml;charset=UTF-8")
        response.headers.update(self._limit_headers())
        return response

    def _md_envelope(self, data: bytes) -> tuple[ET.Element, ET.Element | None, dict[str, str]]:
        """The operation element of the request's body, its ``SessionHeader``, and the namespace prefixes the
        request declares (an ``xsi:type`` names its type through one)."""
        prefixes: dict[str, str] = {}
        parser: Any = ET.XMLPullParser(events=("start-ns",))  # its events are (prefix, uri) pairs
        try:
            parser.feed(data)
            parser.close()
            for _, declared in parser.read_events():
                prefixes[declared[0]] = declared[1]
            # the emulator's own clients, on this machine; expat resolves no external entities
            root = ET.fromstring(data)  # noqa: S314
        except ET.ParseError as exc:
            raise SoapFault("soapenv:Client", f"Could not parse the request: {exc}") from None
        if root.tag != f"{{{SOAP}}}Envelope":
            raise SoapFault("soapenv:VersionMismatch", f"Wrong SOAP envelope: {root.tag}")
        body = root.find(f"{{{SOAP}}}Body")
        if body is None or len(body) != 1:
            raise SoapFault("soapenv:Client", "The SOAP Body must hold exactly one operation")
        operation = body[0]
        if operation.tag not in (f"{{{MD}}}readMetadata", f"{{{MD}}}updateMetadata"):
            raise SoapFault("soapenv:Client", f"No operation available for request {operation.tag}")
        return operation, root.find(f"{{{SOAP}}}Header/{{{MD}}}SessionHeader"), prefixes

    def _md_session(self, header: ET.Element | None, fault: str | None) -> None:
        import time

        token = (header.findtext(f"{{{MD}}}sessionId") or "").strip() if header is not None else ""
        with self.lock:
            issued = self.tokens.get(token)
            if fault in ("expired", "401"):
                self.tokens.pop(token, None)
                issued = None
            expired = issued is None or (self.session_seconds is not None and time.time() - issued > self.session_seconds)
        if expired:
            raise SoapFault("sf:INVALID_SESSION_ID", "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: "
                                                     "Illegal Session. Session not found, missing session hash")

    # -- readMetadata --------------------------------------------------------------------------
    def _read_metadata(self, operation: ET.Element) -> str:
        _known_children(operation, {"type", "fullNames"}, "readMetadata")
        kind = (operation.findtext(f"{{{MD}}}type") or "").strip()
        names = [(e.text or "").strip() for e in operation.findall(f"{{{MD}}}fullNames")]
        _check_type(kind)
        if len(names) > _LIMIT:
            raise SoapFault("sf:LIMIT_EXCEEDED", f"LIMIT_EXCEEDED: Too many fullNames: {len(names)} > {_LIMIT}")
        records = "".join(_record_xml(name, self.value_set(name)) for name in names if name in VALUE_SETS)
        return f"<readMetadataResponse><result>{records}</result></readMetadataResponse>"

    # -- updateMetadata ------------------------------------------------------------------------
    def _update_metadata(self, operation: ET.Element, prefixes: dict[str, str]) -> str:
        _known_children(operation, {"metadata"}, "updateMetadata")
        items = operation.findall(f"{{{MD}}}metadata")
        if len(items) > _LIMIT:
            raise SoapFault("sf:LIMIT_EXCEEDED", f"LIMIT_EXCEEDED: Too many metadata: {len(items)} > {_LIMIT}")
        parsed = [_parse(item, prefixes) for item in items]  # a type error faults the whole call
        results = []
        for fields in parsed:
            name = str(fields.get("fullName") or "")
            errors = self._save_value_set(name, fields)
            results.append(_save_result(name, errors))
        return f"<updateMetadataResponse>{''.join(results)}</updateMetadataResponse>"

    def _save_value_set(self, name: str, fields: dict[str, Any]) -> list[tuple[str, str]]:
        """Save one value set; the errors that stop it (``(statusCode, message)``)."""
        if name not in VALUE_SETS:
            return [("INVALID_CROSS_REFERENCE_KEY", f"In field: fullName - no StandardValueSet named {name} found")]
        values: list[dict[str, Any]] = fields.get("standardValue") or []
        names = [str(v.get("fullName") or "") for v in values]
        errors: list[tuple[str, str]] = []
        if not values or "" in names:
            errors.append(("FIELD_INTEGRITY_EXCEPTION", "Every value needs a fullName"))
        dupes = sorted({n for n in names if n and names.count(n) > 1})
        if dupes:
            errors.append(("DUPLICATE_DEVELOPER_NAME", f"The API name {dupes[0]} is already in use"))
        defaults = [v for v in values if v.get("default")]
        if len(defaults) > 1 or (not defaults and name != "OpportunityStage"):  # a Lead or Case gets a default
            errors.append(("FIELD_INTEGRITY_EXCEPTION", f"{name} needs exactly one default value"))
        allowed = _SET_FLAGS[name]
        for value in values:
            stray = sorted(set(value) & {"closed", "won", "converted", "probability", "forecastCategory"} - allowed)
            if stray:
                errors.append(("FIELD_INTEGRITY_EXCEPTION", f"{value.get('fullName')}: {', '.join(stray)} does not "
                                                            f"apply to {name}"))
            if value.get("won") and not value.get("closed"):
                errors.append(("FIELD_INTEGRITY_EXCEPTION", f"{value.get('fullName')}: a won stage must be closed"))
            if name == "OpportunityStage" and ("probability" not in value or "forecastCategory" not in value):
                errors.append(("REQUIRED_FIELD_MISSING", f"{value.get('fullName')}: a stage needs its probability "
                                                         "and forecastCategory"))
        if name == "LeadStatus" and not any(v.get("converted") for v in values):
            errors.append(("FIELD_INTEGRITY_EXCEPTION", "LeadStatus needs at least one converted value"))
        if errors:
            return errors
        sobject, field = VALUE_SETS[name]
        with self.lock:
            spec = self.schema[sobject][field]
            spec.picklist[:] = names
            spec.default = str(defaults[0]["fullName"]) if defaults else spec.default
            spec.labels = {str(v["fullName"]): str(v.get("label") or v["fullName"]) for v in values}
            self.value_attributes[name] = {str(v["fullName"]): {k: v[k] for k in allowed if k in v} for v in values}
        return []


def _check_type(kind: str) -> None:
    types, _ = wsdl_types()
    if kind not in types or "fullName" not in types[kind]:
        raise SoapFault("sf:INVALID_TYPE", f"INVALID_TYPE: Unknown type name '{kind}' specified")
    if kind != "StandardValueSet":
        raise SoapFault("sf:INVALID_TYPE", f"INVALID_TYPE: this org serves StandardValueSet only, not {kind}")


def _known_children(node: ET.Element, allowed: set[str], where: str) -> None:
    for child in node:
        if not child.tag.startswith(f"{{{MD}}}") or child.tag.split("}", 1)[1] not in allowed:
            raise SoapFault("soapenv:Client", f"Element {child.tag} invalid at this location in type {where}")


def _parse(item: ET.Element, prefixes: dict[str, str]) -> dict[str, Any]:
    """A ``metadata`` element as a StandardValueSet's fields, checked against the WSDL types."""
    declared = item.get(f"{{{XSI}}}type") or ""
    prefix, _, local = declared.rpartition(":")
    namespace = prefixes.get(prefix)
    if not local or namespace != MD:
        raise SoapFault("soapenv:Client", f"The metadata element needs an xsi:type in {MD} (got {declared!r})")
    _check_type(local)
    return _typed(item, local)


def _typed(node: ET.Element, kind: str) -> dict[str, Any]:
    types, enums = wsdl_types()
    spec = types[kind]
    out: dict[str, Any] = {}
    for child in node:
        name = child.tag.split("}", 1)[1] if child.tag.startswith(f"{{{MD}}}") else child.tag
        if name not in spec:
            raise SoapFault("soapenv:Client", f"Element {child.tag} invalid at this location in type {kind}")
        type_name, repeated = spec[name]
        local = type_name.split(":")[-1]
        if local in types:
            value: Any = _typed(child, local)
        else:
            value = _simple((child.text or "").strip(), type_name, enums.get(local))
        if repeated:
            out.setdefault(name, []).append(value)
        elif name in out:
            raise SoapFault("soapenv:Client", f"Element {child.tag} is repeated in type {kind}")
        else:
            out[name] = value
    return out


def _simple(text: str, type_name: str, enum: list[str] | None) -> Any:
    if type_name == "xsd:boolean":
        if text not in ("true", "false", "1", "0"):
            raise SoapFault("soapenv:Client", f"'{text}' is not a valid value for the type xsd:boolean")
        return text in ("true", "1")
    if type_name == "xsd:int":
        try:
            return int(text)
        except ValueError:
            raise SoapFault("soapenv:Client", f"'{text}' is not a valid value for the type xsd:int") from None
    if enum and text not in enum:
        raise SoapFault("soapenv:Client", f"'{text}' is not a valid value for the type {type_name}")
    return text


def _record_xml(name: str, values: list[dict[str, Any]]) -> str:
    """A StandardValueSet as a ``records`` element, each value's elements in the WSDL's order."""
    types, _ = wsdl_types()
    order = list(types["StandardValue"])
    entries = []
    for value in values:
        inner = "".join(f"<{k}>{_text(value[k])}</{k}>" for k in order if k in value)
        entries.append(f"<standardValue>{inner}</standardValue>")
    return (f'<records xsi:type="StandardValueSet"><fullName>{escape(name)}</fullName><sorted>false</sorted>'
            f"{''.join(entries)}</records>")


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else escape(str(value))


def _save_result(name: str, errors: list[tuple[str, str]]) -> str:
    found = "".join(f"<errors><message>{escape(m)}</message><statusCode>{c}</statusCode></errors>" for c, m in errors)
    return (f"<result>{found}<fullName>{escape(name)}</fullName><success>{'false' if errors else 'true'}</success>"
            "</result>")


def _fault(exc: SoapFault) -> str:
    code = exc.code.split(":", 1)[1]
    detail = "" if exc.code.startswith("soapenv:") else (
        f'<detail><sf:UnexpectedErrorFault xmlns:sf="{MD}" xsi:type="sf:UnexpectedErrorFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{escape(exc.message.split(': ', 1)[-1])}"
        "</sf:exceptionMessage></sf:UnexpectedErrorFault></detail>")
    return (f'<soapenv:Fault xmlns:sf="{MD}"><faultcode>{exc.code}</faultcode>'
            f"<faultstring>{escape(exc.message)}</faultstring>{detail}</soapenv:Fault>")
