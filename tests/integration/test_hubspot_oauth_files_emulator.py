"""The HubSpot emulator's app install by OAuth and its file manager, over HTTP."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.integration._hubspot_emulator_env import (
    PRIVATE,
    REDIRECT,
    Env,
    authorize,
    channel,
    env_fixture,  # noqa: F401 - the fixture
    install,
    message,
    refused,
)

TOKEN = "/oauth/v1/token"


def _exchange(env: Env, **form: str) -> tuple[int, dict[str, Any]]:
    """POST the token endpoint (the app's client id and secret unless ``form`` changes them)."""
    answer = env.http.post(env.url + TOKEN, data={"client_id": env.hubspot.client_id,
                                                  "client_secret": env.hubspot.client_secret, **form}, timeout=10)
    return answer.status_code, dict(answer.json())


def test_the_consent_page_redirects_with_a_code_that_is_exchanged_once(env: Env) -> None:
    answer = authorize(env)
    assert answer.status_code == 302
    location = urlparse(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["state-1"]
    code = query["code"][0]
    status, tokens = _exchange(env, grant_type="authorization_code", redirect_uri=REDIRECT, code=code)
    assert status == 200 and tokens["token_type"] == "bearer" and tokens["expires_in"] == 1800
    assert tokens["hub_id"] == env.hubspot.portal_id and "conversations.custom_channels.write" in tokens["scopes"]
    status, used = _exchange(env, grant_type="authorization_code", redirect_uri=REDIRECT, code=code)
    assert (status, used["status"], used["error"], used["message"]) == (
        400, "BAD_AUTH_CODE", "invalid_grant", "missing or unknown auth code")
    info = env.http.get(f"{env.url}/oauth/v1/access-tokens/{tokens['access_token']}", timeout=10).json()
    assert (info["hub_id"], info["app_id"], info["user_id"], info["token_type"]) == (
        env.hubspot.portal_id, env.hubspot.app_id, 9001, "access")
    assert 0 < info["expires_in"] <= 1800 and set(info["scopes"]) == set(tokens["scopes"])


def test_token_errors_have_hubspots_bodies(env: Env) -> None:
    code = parse_qs(urlparse(authorize(env).headers["Location"]).query)["code"][0]
    cases = [({"client_secret": "wrong"}, "BAD_CLIENT_SECRET", "invalid_client"),
             ({"client_id": "wrong"}, "BAD_CLIENT_ID", "invalid_client"),
             ({"grant_type": "password"}, "BAD_GRANT_TYPE", "unsupported_grant_type"),
             ({"redirect_uri": "http://elsewhere/cb"}, "BAD_REDIRECT_URI", "invalid_grant"),
             ({"grant_type": "refresh_token", "refresh_token": "na1-unknown"}, "BAD_REFRESH_TOKEN", "invalid_grant")]
    for changed, hubspot_status, error in cases:
        status, body = _exchange(env, **{"grant_type": "authorization_code", "redirect_uri": REDIRECT, "code": code,
                                         **changed})
        assert (status, body["status"], body["error"], set(body)) == (
            400, hubspot_status, error, {"status", "error", "error_description", "message"}), body
    # none of those used the code up
    assert _exchange(env, grant_type="authorization_code", redirect_uri=REDIRECT, code=code)[0] == 200
    late = parse_qs(urlparse(authorize(env).headers["Location"]).query)["code"][0]
    env.clock.advance(301)
    status, body = _exchange(env, grant_type="authorization_code", redirect_uri=REDIRECT, code=late)
    assert (status, body["status"]) == (400, "BAD_AUTH_CODE")


def test_the_consent_page_refuses_a_wrong_client_redirect_or_scope_set(env: Env) -> None:
    assert authorize(env, client_id="someone-else").status_code == 400
    assert authorize(env, redirect_uri="ftp://x").status_code == 400
    missing = " ".join(s for s in env.hubspot.app_scopes if s != "files")
    assert "mismatch" in authorize(env, scope=missing).text
    assert authorize(env, optional_scope="automation").status_code == 400
    assert authorize(env, optional_scope="conversations.write").status_code == 302
    env.hubspot.redirect_uris = ("https://relay.example/cb",)
    assert authorize(env).status_code == 400


def test_access_tokens_expire_and_are_refreshed(env: Env) -> None:
    tokens = install(env)
    contacts = "/crm/v3/objects/contacts"
    body = {"properties": {"firstname": "A"}, "associations": []}
    assert env.call("POST", contacts, str(tokens["access_token"]), json=body).status_code == 201
    assert env.call("POST", contacts, PRIVATE, json=body).status_code == 201  # the private app token still works
    env.clock.advance(1801)
    expired = env.call("POST", contacts, str(tokens["access_token"]), json=body)
    assert refused(env, expired, 401, "EXPIRED_AUTHENTICATION")["message"].startswith("The OAuth token used")
    assert env.http.get(f"{env.url}/oauth/v1/access-tokens/{tokens['access_token']}", timeout=10).status_code == 404
    status, fresh = _exchange(env, grant_type="refresh_token", refresh_token=str(tokens["refresh_token"]))
    assert status == 200 and fresh["refresh_token"] == tokens["refresh_token"]
    assert fresh["access_token"] != tokens["access_token"]
    assert env.call("POST", contacts, str(fresh["access_token"]), json=body).status_code == 201
    env.http.post(f"{env.url}/_emulator/oauth/expire", timeout=10)
    refused(env, env.call("GET", "/conversations/v3/conversations/inboxes", str(fresh["access_token"])), 401,
            "EXPIRED_AUTHENTICATION")
    # disconnected: the refresh token is gone
    assert env.http.delete(f"{env.url}/oauth/v1/refresh-tokens/{tokens['refresh_token']}", timeout=10).status_code == 204
    assert _exchange(env, grant_type="refresh_token", refresh_token=str(tokens["refresh_token"]))[1]["status"] == (
        "BAD_REFRESH_TOKEN")


def test_files_are_uploaded_signed_and_downloaded(env: Env) -> None:
    token = str(install(env)["access_token"])
    upload = env.call("POST", "/files/v3/files", token, files={"file": ("scan.jpg", b"\xff\xd8jpeg", "image/jpeg")},
                      data={"fileName": "scan.jpg", "folderPath": "/chat2crm",
                            "options": '{"access": "PRIVATE", "overwrite": false, "duplicateValidationStrategy": '
                                       '"NONE"}'})
    assert upload.status_code == 201, upload.text
    file = upload.json()
    assert (file["name"], file["extension"], file["type"], file["size"], file["access"], file["path"]) == (
        "scan", "jpg", "IMG", 6, "PRIVATE", "/chat2crm/scan.jpg")
    assert env.http.get(file["url"], timeout=10).status_code == 404  # a private file's URL
    assert env.call("GET", f"/files/v3/files/{file['id']}", token).json()["id"] == file["id"]
    signed = env.call("GET", f"/files/v3/files/{file['id']}/signed-url", token, params={"expirationSeconds": 60}).json()
    assert (signed["name"], signed["extension"], signed["type"], signed["size"]) == ("scan", "jpg", "IMG", 6)
    fetched = env.http.get(signed["url"], timeout=10)
    assert fetched.content == b"\xff\xd8jpeg" and fetched.headers["Content-Type"] == "image/jpeg"
    env.clock.advance(61)
    assert env.http.get(signed["url"], timeout=10).status_code == 403
    assert env.call("GET", "/files/v3/files/1/signed-url", token).status_code == 404
    # the file is attached to a published message, with its name and URL
    channel_id, account = channel(env, token)
    sent = env.call("POST", f"/conversations/v3/custom-channels/{channel_id}/messages", token,
                    json=message(account, attachments=[{"type": "FILE", "fileId": file["id"]}])).json()
    assert [(a["fileId"], a["name"], a["fileUsageType"]) for a in sent["attachments"]] == [
        (file["id"], "scan.jpg", "IMAGE")]


def test_uploads_hubspot_would_refuse_are_refused(env: Env) -> None:
    token = str(install(env)["access_token"])
    jpeg = {"file": ("a.jpg", b"x", "image/jpeg")}
    forms = [{"folderPath": "/x"}, {"folderPath": "/x", "options": '{"access": "SECRET"}'},
             {"options": '{"access": "PRIVATE"}'},
             {"folderPath": "/x", "folderId": "1", "options": '{"access": "PRIVATE"}'},
             {"folderPath": "/x", "options": '{"access": "PRIVATE", "colour": "red"}'},
             {"folderPath": "/x", "options": '{"access": "PRIVATE"}', "tags": "a"}]
    for form in forms:
        refused(env, env.call("POST", "/files/v3/files", token, files=jpeg, data=form), 400, "VALIDATION_ERROR")
    no_file = env.call("POST", "/files/v3/files", token, data={"folderPath": "/x", "options": '{"access": "PRIVATE"}'})
    refused(env, no_file, 400, "VALIDATION_ERROR")
    assert env.call("POST", "/files/v3/files", "nope", files=jpeg, data=forms[2]).status_code == 401
    assert not env.hubspot.files
