"""The Pipedrive app and inbox against the Pipedrive emulator over HTTP: the install by OAuth, tokens kept
encrypted and refreshed once for every worker, the adapter on the company's API domain with the app's token
(and on its API token without the app), patients' messages as notes written once, files stored and served
through signed links, what became of a reply, who may use the panel, and what each costs in API tokens."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from adapters.pipedrive.inbox import PipedriveInbox, reply_id
from adapters.pipedrive.keys import INSTALLS
from adapters.pipedrive.panel import PanelRefused, PanelUser
from core.errors import AuthError, RetryableError
from core.inbox import DeliveryReport, ThreadMessage, thread_id
from tests.integration._pipedrive_app_env import CALLBACK, PipedriveWorld, pipedrive_fixture  # noqa: F401 - the fixture

CONVERSATION = "whatsapp:106540352242922:905321112233"


def message(mid: str, text: str, person: str, **extra: Any) -> ThreadMessage:
    return ThreadMessage(id=mid, thread=thread_id(CONVERSATION), conversation=CONVERSATION, channel="whatsapp",
                         direction="incoming", text=text, at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
                         identity="whatsapp:905321112233", name="Ayşe Yılmaz", contact_id=person, **extra)


def paths(world: PipedriveWorld, since: int = 0) -> list[str]:
    return [f"{c['method']} {c['path']}" for c in world.emulator.calls[since:]]


def inbox_of(world: PipedriveWorld) -> PipedriveInbox:
    adapter = world.adapter()
    inbox = adapter.inbox()
    assert isinstance(inbox, PipedriveInbox)
    return inbox


# -- the install and the token -----------------------------------------------------------------
def test_the_install_keeps_the_tokens_encrypted_and_calls_go_to_the_company_with_its_token(
        pipedrive: PipedriveWorld) -> None:
    adapter = pipedrive.adapter()
    url = adapter.installer().authorize_url(state="st-1", redirect_uri=CALLBACK)  # type: ignore[union-attr]
    assert url.startswith(f"{pipedrive.url}/oauth/authorize?client_id={pipedrive.emulator.client_id}&")
    assert pipedrive.install(adapter) == "7001"
    sealed = pipedrive.redis.hget(INSTALLS.key("7001"), "tokens")
    assert sealed and b"7001:" not in sealed  # neither token readable in Redis
    assert pipedrive.redis.ttl(INSTALLS.key("7001")) == -1  # kept until replaced: the refresh token must last
    other = pipedrive.adapter()  # another worker, after a restart
    before = len(pipedrive.emulator.calls)
    assert other.check_credentials().ok
    call = pipedrive.emulator.calls[before]
    assert call["path"] == "/api/v1/users/me"  # the company's API domain, v1 under /api/v1
    assert len(pipedrive.emulator.access_tokens) == 1  # a fresh token is not refreshed


def test_a_token_about_to_expire_is_refreshed_once_for_every_worker(pipedrive: PipedriveWorld) -> None:
    pipedrive.install(pipedrive.adapter())
    workers = [pipedrive.adapter().app.oauth for _ in range(3)]
    for oauth in workers:
        assert oauth is not None
        oauth.clock = lambda: time.time() + 3400  # 200 s left: less than the 5-minute margin
    tokens = {o.access_token() for o in workers if o}
    assert len(tokens) == 1 and len(pipedrive.emulator.access_tokens) == 2  # one refresh for the three


def test_a_token_that_expired_under_us_is_refreshed_and_the_call_sent_again(pipedrive: PipedriveWorld) -> None:
    adapter = pipedrive.adapter()
    pipedrive.install(adapter)
    pipedrive.emulator.expire_access_tokens()  # the relay still thinks it has an hour
    start = len(pipedrive.emulator.calls)
    assert adapter.check_credentials().ok
    assert paths(pipedrive, start)[:3] == ["GET /api/v1/users/me", "POST /oauth/token", "GET /api/v1/users/me"]


def test_a_refresh_token_pipedrive_refuses_asks_for_a_reinstall(pipedrive: PipedriveWorld) -> None:
    adapter = pipedrive.adapter()
    pipedrive.install(adapter)
    pipedrive.emulator.revoke_refresh_tokens()
    pipedrive.emulator.expire_access_tokens()
    with pytest.raises(AuthError) as caught:
        adapter._call("me", "GET", "/v1/users/me")
    assert "refresh token" in caught.value.message and "/crm/pipedrive/install" in caught.value.message


def test_a_code_used_twice_and_a_wrong_client_secret_are_refused_naming_what_to_fix(pipedrive: PipedriveWorld) -> None:
    adapter = pipedrive.adapter()
    installer = adapter.installer()
    assert installer is not None
    code = pipedrive.consent(installer.authorize_url(state="st-1", redirect_uri=CALLBACK))
    installer.complete(code=code, redirect_uri=CALLBACK)
    with pytest.raises(AuthError) as used:
        installer.complete(code=code, redirect_uri=CALLBACK)
    assert "Invalid grant: authorization code is invalid" in used.value.message
    wrong = pipedrive.adapter()
    assert wrong.app.oauth is not None
    wrong.app.oauth.client_secret = "not-the-secret"
    code = pipedrive.consent(installer.authorize_url(state="st-1", redirect_uri=CALLBACK))
    with pytest.raises(AuthError) as refused:
        wrong.app.oauth.complete(code=code, redirect_uri=CALLBACK)
    assert refused.value.setting == "PIPEDRIVE_CLIENT_SECRET" and "Invalid client" in refused.value.message


def test_without_the_app_the_api_token_is_used_and_there_is_no_inbox(pipedrive: PipedriveWorld) -> None:
    adapter = pipedrive.adapter(app=False)
    assert adapter.inbox() is None and adapter.installer() is None
    assert adapter.check_credentials().ok
    assert pipedrive.emulator.calls[-2]["path"] == "/v1/users/me"


def test_the_app_configured_but_not_installed_says_where_to_install_it(pipedrive: PipedriveWorld) -> None:
    with pytest.raises(AuthError) as caught:
        pipedrive.adapter()._call("me", "GET", "/v1/users/me")
    assert "not installed" in caught.value.message and "/crm/pipedrive/install" in caught.value.message


# -- the conversation as notes -----------------------------------------------------------------
def test_each_patient_message_is_one_note_on_the_person_and_the_lead(pipedrive: PipedriveWorld) -> None:
    inbox = inbox_of(pipedrive)
    pipedrive.install(inbox.adapter)
    person = pipedrive.person()
    lead = pipedrive.call("POST", "/v1/leads", json={"title": "Lead R-1", "person_id": int(person)})["data"]["id"]
    inbox.adapter.cache.set("record", f"{lead}|digest", "lead", "R-1")  # as the lead's write left it
    start, spent = len(pipedrive.emulator.calls), pipedrive.emulator.tokens_used
    first = inbox.publish(message("wamid.1", "Fiyatlar <b>ne kadar</b>?", person, reference="R-1"))
    again = inbox.publish(message("wamid.1", "Fiyatlar <b>ne kadar</b>?", person, reference="R-1"))  # replayed
    assert first == again and paths(pipedrive, start) == ["POST /api/v1/notes"]
    assert pipedrive.emulator.tokens_used - spent == 10  # a patient's message costs one note
    (note,) = pipedrive.emulator.records("notes")
    assert note["lead_id"] == lead and note["person_id"] == int(person)
    assert "Fiyatlar &lt;b&gt;ne kadar&lt;/b&gt;?" in note["content"] and "WhatsApp" in note["content"]
    assert "905321112233" not in note["content"]  # the marker is opaque
    (shown,) = inbox.thread(person)
    assert shown["text"] == "Fiyatlar <b>ne kadar</b>?" and shown["note"] == first.crm_message_id


def test_a_note_whose_answer_was_lost_is_found_and_not_written_twice(pipedrive: PipedriveWorld) -> None:
    adapter = pipedrive.adapter(timeout_seconds=0.5)  # gives up before the emulator answers (1 s)
    inbox = adapter.inbox()
    assert isinstance(inbox, PipedriveInbox)
    pipedrive.install(adapter)
    person = pipedrive.person()
    pipedrive.emulator.fail_next(1, "timeout")  # the note is written, its answer never comes
    with pytest.raises(RetryableError):
        inbox.publish(message("wamid.2", "Merhaba", person))
    time.sleep(1.1)  # the emulator finishes the write it was holding
    published = inbox.publish(message("wamid.2", "Merhaba", person))
    assert pipedrive.emulator.count("notes") == 1 and published.crm_message_id == str(
        pipedrive.emulator.records("notes")[0]["id"])


def test_the_bots_history_is_shown_in_the_panel_but_not_written_again(pipedrive: PipedriveWorld) -> None:
    inbox = inbox_of(pipedrive)
    pipedrive.install(inbox.adapter)
    person = pipedrive.person()
    start = len(pipedrive.emulator.calls)
    inbox.publish(message("h-1", "Merhaba", person, history=True))
    inbox.publish(message("h-2", "Size nasıl yardımcı olabilirim?", person, history=True).model_copy(
        update={"direction": "outgoing"}))
    assert paths(pipedrive, start) == [] and pipedrive.emulator.count("notes") == 0
    assert [(m["text"], m["direction"], m["history"]) for m in inbox.thread(person)] == [
        ("Merhaba", "incoming", True), ("Size nasıl yardımcı olabilirim?", "outgoing", True)]


# -- files -------------------------------------------------------------------------------------
def test_files_are_stored_in_pipedrive_and_served_through_links_that_expire(pipedrive: PipedriveWorld) -> None:
    inbox = inbox_of(pipedrive)
    pipedrive.install(inbox.adapter)
    person = pipedrive.person()
    photo = inbox.upload("burun.jpg", "image/jpeg", b"\xff\xd8 a profile photo \xff\xd9")
    price = inbox.store_agent_file("fiyat.pdf", "application/pdf", b"%PDF-1.4 prices", person)
    stored = {f["file_name"]: f for f in pipedrive.emulator.records("files")}
    assert stored["fiyat.pdf"]["person_id"] == int(person) and stored["burun.jpg"]["person_id"] is None
    url = inbox.file_url(price)
    assert url.startswith("http://relay.example/crm/pipedrive/files/")
    assert inbox.guard is not None
    link = inbox.guard.open_file_link(url.rsplit("/", 1)[1])
    assert link is not None and link.file_id == price.crm_file_id and link.name == "fiyat.pdf"
    assert inbox.download(link.file_id).content == b"%PDF-1.4 prices"
    token = url.rsplit("/", 1)[1]
    # forged: one character of the signature changed (not its last, whose low bits base64 may ignore)
    forged = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    assert inbox.guard.open_file_link(forged) is None
    published = inbox.publish(message("wamid.3", "Profilden", person, attachments=[photo]))
    note = pipedrive.emulator.records("notes")[0]
    assert published.crm_message_id == str(note["id"]) and f"Pipedrive file {photo.crm_file_id}" in note["content"]
    with pytest.raises(Exception, match="not sent to patients"):
        inbox.store_agent_file("run.exe", "application/x-msdownload", b"MZ", person)


# -- what became of a reply --------------------------------------------------------------------
def test_a_replys_delivery_is_a_note_when_sent_or_failed_and_never_goes_backwards(pipedrive: PipedriveWorld) -> None:
    inbox = inbox_of(pipedrive)
    pipedrive.install(inbox.adapter)
    person = pipedrive.person()
    from core.inbox import AgentReply

    sent = AgentReply(crm_message_id=reply_id(person, "key-00000001"), text="Merhaba Ayşe Hanım", agent="Deniz")
    failed = AgentReply(crm_message_id=reply_id(person, "key-00000002"), text="Hâlâ ilgileniyor musunuz?")
    inbox.record_reply(person, CONVERSATION, sent)
    inbox.record_reply(person, CONVERSATION, failed)
    start, spent = len(pipedrive.emulator.calls), pipedrive.emulator.tokens_used
    inbox.report(DeliveryReport(crm_message_id=sent.crm_message_id, status="sent"))
    inbox.report(DeliveryReport(crm_message_id=sent.crm_message_id, status="read"))
    inbox.report(DeliveryReport(crm_message_id=sent.crm_message_id, status="delivered"))  # late: dropped
    inbox.report(DeliveryReport(crm_message_id=failed.crm_message_id, status="failed", code="131047",
                                reason="Re-engagement message"))
    inbox.report(DeliveryReport(crm_message_id=failed.crm_message_id, status="failed", reason="again"))  # replayed
    assert paths(pipedrive, start) == ["POST /api/v1/notes", "POST /api/v1/notes"]
    assert pipedrive.emulator.tokens_used - spent == 20
    notes = [n["content"] for n in pipedrive.emulator.records("notes")]
    assert "✅ sent" in notes[0] and "Merhaba Ayşe Hanım" in notes[0]
    assert "NOT sent: Re-engagement message (131047)" in notes[1]
    shown = {m["id"]: m for m in inbox.thread(person)}
    assert shown[sent.crm_message_id]["status"] == "read"
    assert shown[failed.crm_message_id]["status"] == "failed"
    assert shown[failed.crm_message_id]["reason"] == "Re-engagement message (131047)"


# -- who may use the panel ---------------------------------------------------------------------
def test_the_panel_is_for_users_pipedrive_lets_see_the_record(pipedrive: PipedriveWorld) -> None:
    inbox = inbox_of(pipedrive)
    pipedrive.install(inbox.adapter)
    guard = inbox.guard
    assert guard is not None
    agent = pipedrive.emulator.add_user("Ece Danışman")
    shared, private = pipedrive.person(), pipedrive.person("Hans Müller", visible_to=1)
    admin, other = PanelUser(1, 7001), PanelUser(agent, 7001)
    start, spent = len(pipedrive.emulator.calls), pipedrive.emulator.tokens_used
    assert guard.authorize(other, "person", shared) == shared
    assert guard.authorize(other, "person", shared) == shared  # answered from what Pipedrive said
    assert paths(pipedrive, start) == [f"GET /api/v1/persons/{shared}/permittedUsers"]
    assert pipedrive.emulator.tokens_used - spent == 10
    with pytest.raises(PanelRefused) as refused:
        guard.authorize(other, "person", private)
    assert refused.value.status == 403
    assert guard.authorize(admin, "person", private) == private
    deal = pipedrive.call("POST", "/api/v2/deals", json={"title": "Enquiry", "person_id": int(shared)})["data"]["id"]
    assert guard.authorize(admin, "deal", str(deal)) == shared  # the deal's panel shows its person
    with pytest.raises(PanelRefused) as missing:
        guard.authorize(admin, "person", "999999")
    assert missing.value.status == 404
    with pytest.raises(PanelRefused) as lead:
        guard.authorize(admin, "lead", "1")
    assert lead.value.status == 404


def test_the_host_page_loads_the_panel_with_pipedrives_query_and_a_signed_token(pipedrive: PipedriveWorld) -> None:
    import jwt

    from tests.integration._pipedrive_app_env import JWT_SECRET

    pipedrive.emulator.panel_url = "http://relay.example/crm/pipedrive/panel"
    person = pipedrive.person()
    page = requests.get(f"{pipedrive.url}/_emulator/ui/person/{person}?user=1", timeout=5)
    assert page.status_code == 200
    src = page.text.split('src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    from urllib.parse import parse_qs, urlparse

    query = {k: v[0] for k, v in parse_qs(urlparse(src).query).items()}
    assert src.startswith("http://relay.example/crm/pipedrive/panel?")
    assert query["resource"] == "person" and query["selectedIds"] == person and query["view"] == "details"
    assert query["userId"] == "1" and query["companyId"] == "7001" and query["id"]
    claims = jwt.decode(query["token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["userId"] == 1 and claims["companyId"] == 7001 and claims["exp"] - claims["iat"] == 300
    assert requests.get(f"{pipedrive.url}/_emulator/ui/lead/{person}", timeout=5).status_code == 404  # no panel


# -- the emulated OAuth server and API refuse what Pipedrive refuses --------------------------------
def test_the_token_endpoint_refuses_as_pipedrive_documents(pipedrive: PipedriveWorld) -> None:
    emulator = pipedrive.emulator
    token_url = f"{pipedrive.url}/oauth/token"
    basic = (emulator.client_id, emulator.client_secret)
    cases = [
        ({"json": {"grant_type": "refresh_token"}, "auth": basic},
         "invalid_request", "Invalid request: content must be application/x-www-form-urlencoded"),
        ({"data": {}, "auth": basic}, "invalid_request", "Missing parameter: grant_type"),
        ({"data": {"grant_type": "password"}, "auth": basic}, "unsupported_grant_type",
         "Unsupported grant type: grant_type is invalid"),
        ({"data": {"grant_type": "refresh_token", "refresh_token": "x"}}, "invalid_client",
         "Invalid client: cannot retrieve client credentials"),
        ({"data": {"grant_type": "refresh_token", "refresh_token": "x"}, "auth": (emulator.client_id, "nope")},
         "invalid_client", "Invalid client: client is invalid"),
        ({"data": {"grant_type": "refresh_token", "refresh_token": "x"}, "auth": basic}, "invalid_grant",
         "Invalid grant: refresh token is invalid"),
    ]
    for kwargs, error, said in cases:
        answer = requests.post(token_url, timeout=5, **kwargs)  # type: ignore[arg-type]
        assert answer.status_code == 400 and answer.json() == {"success": False, "message": said, "error": error}
    code = pipedrive.consent(f"{pipedrive.url}/oauth/authorize?client_id={emulator.client_id}&state=st-1&"
                             f"redirect_uri={CALLBACK}")
    pipedrive.clock.advance(301)  # codes live 5 minutes
    late = requests.post(token_url, data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK},
                         auth=basic, timeout=5)
    assert late.json()["message"] == "Invalid grant: authorization code has expired"
    wrong = requests.get(f"{pipedrive.url}/oauth/authorize", params={"client_id": emulator.client_id, "state": "s",
                                                                    "redirect_uri": "https://elsewhere.example/cb"},
                         allow_redirects=False, timeout=5)
    assert wrong.status_code == 400 and "redirect_uri is invalid" in wrong.text


def test_an_app_token_without_the_scope_an_operation_needs_is_refused(pipedrive: PipedriveWorld) -> None:
    pipedrive.emulator.app_scopes = ("base", "contacts:full")  # the app was given no leads scope
    adapter = pipedrive.adapter()
    pipedrive.install(adapter)
    assert adapter.check_credentials().ok  # persons and the user: within its scopes
    with pytest.raises(AuthError) as caught:
        adapter._call("lead_list", "GET", "/v1/leads", params={"limit": 1})
    assert caught.value.details["status"] == 403 and "Scope and URL mismatch" in caught.value.message
    pipedrive.clock.advance(3600)  # an hour later the access token has expired
    pipedrive.emulator.expire_access_tokens()
    assert adapter.check_credentials().ok  # refreshed on the 401
