"""The Salesforce request contract (pure checks), its SOQL subset, and the adapter's pure helpers."""

from __future__ import annotations

import pytest

from adapters.salesforce import SalesforceAdapter
from adapters.salesforce.content import _merge_tags, _plain
from adapters.salesforce.soql import _pick, _quote, _select
from core.errors import AuthError, FatalError, RetryableError
from emulators.salesforce import contract, sf_id
from tests.conftest import make_settings


@pytest.mark.parametrize(("path", "route"), [
    ("/limits", "limits"), ("/query/", "query"), ("/composite", "composite"), ("/composite/sobjects", "collections"),
    ("/sobjects/Lead", "basic"), ("/sobjects/Lead/describe", "describe"), ("/sobjects/Lead/00Q000000000001", "row"),
    ("/sobjects/Lead/Key__c/whatsapp:1", "by_external_id"), ("/tooling/sobjects/CustomField", "tooling_create")])
def test_routes(path: str, route: str) -> None:
    matched = contract.match_route(path, {"Lead"})
    assert matched is not None and matched[0] == route


def test_routes_follow_the_postman_skeletons() -> None:
    templates = contract.skeleton_urls()
    assert len(templates) == len(contract.SKELETONS)
    for route, url in templates.items():
        rest = url.split("/services/data/v{{version}}", 1)[1].rstrip("/")
        rest = rest.replace("<SOBJECT_API_NAME>", "Lead").replace("<FIELD_NAME>", "Key__c")
        rest = rest.replace("<FIELD_VALUE>", "x").replace("<RECORD_ID>", "00Q000000000001").split("?")[0]
        matched = contract.match_route(rest, {"Lead"})
        assert matched is not None and matched[0] == route, (route, url)


@pytest.mark.parametrize(("version", "ok"), [("v62.0", True), ("v31.0", True), ("62.0", False), ("v62", False),
                                             ("v20.0", False), ("v99.0", False)])
def test_versions(version: str, ok: bool) -> None:
    assert (contract.version_problem(version) is None) is ok


def test_body_checks() -> None:
    _, fields = contract.standard_objects()["Lead"]
    codes = lambda body, **kw: [p.error_code for p in contract.body_problems("Lead", fields, body, **kw)]  # noqa: E731
    assert codes({"LastName": "x", "Company": "y"}, creating=True) == []
    assert codes({"LastName": "x"}, creating=True) == ["REQUIRED_FIELD_MISSING"]
    assert codes({"LastName": "x"}, creating=False) == []
    assert codes({"Nope": 1}, creating=False) == ["INVALID_FIELD"]
    assert codes({"Status": "Hot"}, creating=False) == ["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]
    assert codes({"LastName": "x" * 81}, creating=False) == ["STRING_TOO_LONG"]
    assert codes({"Email": "not-an-address"}, creating=False) == ["INVALID_EMAIL_ADDRESS"]
    assert codes({"IsConverted": True}, creating=False) == ["INVALID_FIELD_FOR_INSERT_UPDATE"]
    assert codes({"OwnerId": "nope"}, creating=False) == ["MALFORMED_ID"]
    assert codes({"LastName": "x"}, creating=False, external_field="LastName") == ["INVALID_FIELD"]
    assert codes([], creating=True) == ["JSON_PARSER_ERROR"]


def test_composite_checks() -> None:
    ok = {"allOrNone": False, "compositeRequest": [
        {"method": "PATCH", "url": "/services/data/v62.0/sobjects/Lead/K__c/x", "referenceId": "lead", "body": {}},
        {"method": "POST", "url": "/services/data/v62.0/sobjects/Note", "referenceId": "note",
         "body": {"ParentId": "@{lead.id}"}}]}
    assert contract.composite_problems(ok) == []
    messages = [p.message for p in contract.composite_problems({"allOrNone": "false", "compositeRequest": [
        {"method": "GET", "url": "/services/data/v62.0/limits", "referenceId": "a b"},
        {"method": "GET", "url": "/limits", "referenceId": "b"},
        {"method": "POST", "url": "/services/data/v62.0/sobjects/Note", "referenceId": "b",
         "body": {"ParentId": "@{later.id}"}},
        {"url": "/services/data/v62.0/limits", "referenceId": "c", "extra": 1}]})]
    for expected in ("allOrNone must be a boolean", "must be alphanumeric", "url must start with",
                     "duplicate referenceId", "does not name an earlier subrequest", "method is required",
                     "unrecognized field"):
        assert any(expected in m for m in messages), (expected, messages)
    many = {"compositeRequest": [{"method": "GET", "url": "/services/data/v62.0/limits", "referenceId": f"r{i}"}
                                 for i in range(26)]}
    assert any("at most 25" in p.message for p in contract.composite_problems(many))


def test_soql_subset() -> None:
    query = contract.parse_soql("SELECT Id, Phone, (SELECT Id, Title FROM Notes WHERE Title = 'a\\'b'), "
                                "(SELECT Id, (SELECT Id FROM Tasks) FROM Cases WHERE Ref__c = '1') FROM Lead "
                                "WHERE Key__c = 'k' OR (Phone = '+90' AND Email != null) LIMIT 5")
    assert query.fields == ["Id", "Phone"] and query.sobject == "Lead" and query.limit == 5
    assert [s.sobject for s in query.subqueries] == ["Notes", "Cases"]
    assert query.subqueries[0].where == ("cmp", "Title", "=", "a'b")
    assert query.subqueries[1].subqueries[0].sobject == "Tasks"
    assert query.where[0] == "or"
    for bad in ("SELECT Id FROM Lead ORDER BY Name", "SELECT Id FROM Lead WHERE Name LIKE 'a%'", "SELECT FROM Lead",
                "SELECT Id FROM Lead WHERE", "DELETE FROM Lead", "SELECT Id FROM Lead LIMIT x", ""):
        with pytest.raises(contract.SoqlError):
            contract.parse_soql(bad)


def test_quoting_keeps_patient_text_a_literal() -> None:
    text = _select(["Id"], "Lead", f"LastName = {_quote(chr(39) + ' OR Name != null')}")
    query = contract.parse_soql(text)
    assert query.where == ("cmp", "LastName", "=", "' OR Name != null")
    assert _quote("a\\b") == "'a\\\\b'" and contract.soql_quote("o'k") == "'o\\'k'"


def test_salesforce_ids_carry_their_checksum() -> None:
    assert sf_id("00Q", 1) == "00Q000000000001EAA"
    assert len(sf_id("500", 123456)) == 18 and sf_id("500", 1).endswith("AAA")


def test_pick_prefers_the_key_then_unkeyed_phone_then_email() -> None:
    rows = [{"Id": "1", "K": "telegram:9", "Phone": "+90", "Email": "a@x.io"},
            {"Id": "2", "K": None, "Phone": None, "Email": "a@x.io"},
            {"Id": "3", "K": None, "Phone": "+90", "Email": None},
            {"Id": "4", "K": "whatsapp:1", "Phone": None, "Email": None}]
    assert _pick(rows, ("K", "WhatsApp:1"), "+90", "a@x.io")["Id"] == "4"  # type: ignore[index]
    assert _pick(rows[:3], ("K", "whatsapp:1"), "+90", "a@x.io")["Id"] == "3"  # type: ignore[index]
    assert _pick(rows[:2], ("K", "whatsapp:1"), "+90", "a@x.io")["Id"] == "2"  # type: ignore[index]
    assert _pick(rows[:1], ("K", "whatsapp:1"), "+90", "a@x.io") is None  # someone else's record


def test_tags_merge_and_notes_become_plain_text() -> None:
    assert _merge_tags("a;b", ["b", "c"]) == "a;b;c" and _merge_tags(None, ["x"]) == "x"
    assert _plain("<p><strong>#1</strong> · hi &amp; bye</p><ul><li>a: 1</li><li>b: 2</li></ul>") == \
        "#1 · hi & bye\n- a: 1\n- b: 2"


def _adapter(**options: object) -> SalesforceAdapter:
    settings = make_settings("unix:///unused", salesforce_client_id="c", salesforce_client_secret="s")
    return SalesforceAdapter.from_settings(settings, options=dict(options))


@pytest.mark.parametrize(("status", "body", "error", "field"), [
    (400, [{"errorCode": "INVALID_FIELD", "message": "No such column 'Foo__c' on sobject of type Lead",
            "fields": []}], FatalError, "Foo__c"),
    (400, [{"errorCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Company]",
            "fields": ["Company"]}], FatalError, "Company"),
    (400, [{"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Phone is required",
            "fields": ["Phone"]}], FatalError, "Phone"),
    (400, [{"errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "message": "bad value", "fields": ["Status"]}],
     FatalError, "Status"),
    (400, [{"errorCode": "MALFORMED_QUERY", "message": "unexpected token"}], FatalError, None),
    (404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], FatalError, None),
    (400, [{"errorCode": "DUPLICATES_DETECTED", "message": "Use one of these records?", "duplicateResult": {
        "duplicateRule": "Standard_Lead_Duplicate_Rule", "matchResults": []}}], FatalError,
     "Standard_Lead_Duplicate_Rule"),
    (403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}], RetryableError, None),
    (400, [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access"}], RetryableError, None),
    (503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "try later"}], RetryableError, None),
    (401, [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}], AuthError, None),
    (403, [{"errorCode": "INSUFFICIENT_ACCESS", "message": "no"}], AuthError, None),
])
def test_error_codes_map_into_the_error_tree(status: int, body: list[dict[str, object]], error: type[Exception],
                                             field: str | None) -> None:
    mapped = _adapter()._map(status, body, "test")
    assert type(mapped) is error
    if isinstance(mapped, RetryableError) and "LIMIT" in str(body):
        assert mapped.retry_after and mapped.retry_after > 0
    if isinstance(mapped, AuthError):
        assert mapped.setting
    elif isinstance(mapped, FatalError):
        assert mapped.field == field


@pytest.mark.parametrize(("option", "header"), [("on", "TRUE"), (True, "TRUE"), ("off", "FALSE"), (False, "FALSE"),
                                                ("01Q000000000001AAA", "01Q000000000001AAA")])
def test_assignment_option(option: object, header: str) -> None:
    assert _adapter(assignment=option).assign_header == header


def test_bad_options_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="assignment"):
        _adapter(assignment="sometimes")
    with pytest.raises(ValueError, match="api_usage_share"):
        _adapter(api_usage_share=1.5)
    with pytest.raises(ValueError, match="api_version"):
        _adapter(api_version="62")
    with pytest.raises(ValueError, match="campaign_member"):
        _adapter(campaign_member="Chat2CRM_Campaign__c")
    with pytest.raises(ValueError, match="duplicate_alerts"):
        _adapter(duplicate_alerts="maybe")


def test_auth_mode_follows_the_settings(tmp_path: object) -> None:
    base = {"salesforce_client_id": "c"}
    assert SalesforceAdapter.from_settings(make_settings("unix:///x", salesforce_client_secret="s", **base)).auth_mode() == \
        "client_credentials"
    password = make_settings("unix:///x", salesforce_client_secret="s", salesforce_username="u",
                             salesforce_password="p", **base)
    assert SalesforceAdapter.from_settings(password).auth_mode() == "password"
    jwt = make_settings("unix:///x", salesforce_username="u", salesforce_private_key_file="/k.pem", **base)
    assert SalesforceAdapter.from_settings(jwt).auth_mode() == "jwt"
    with pytest.raises(AuthError) as info:
        SalesforceAdapter.from_settings(make_settings("unix:///x", salesforce_private_key_file="/k.pem", **base)).auth_mode()
    assert info.value.setting == "SALESFORCE_USERNAME" and "jwt" in info.value.message


def test_create_app_and_the_token_endpoint() -> None:
    from emulators.salesforce import create_app

    app = create_app({"client_id": "cid", "client_secret": "sec"})
    client = app.test_client()
    refused = client.post("/services/oauth2/token", data={"grant_type": "client_credentials", "client_id": "cid",
                                                          "client_secret": "wrong"})
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_client"
    granted = client.post("/services/oauth2/token", data={"grant_type": "client_credentials", "client_id": "cid",
                                                          "client_secret": "sec"}).get_json()
    assert granted["token_type"] == "Bearer" and granted["instance_url"]
    limits = client.get("/services/data/v62.0/limits", headers={"Authorization": f"Bearer {granted['access_token']}"})
    assert limits.status_code == 200 and limits.headers["Sforce-Limit-Info"] == "api-usage=1/100000"
    assert app.config["EMULATOR"].violations == []
