"""The Twilio channel against the Twilio emulator over real HTTP: every kind sent through the official library,
errors mapped, signed status callbacks and patients' webhooks read back through the relay's own check and
parser, files fetched through Twilio's redirect, and the emulator refusing what Twilio would refuse."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import requests
from flask import Flask, request

from connector.channels import base as channel_base
from connector.channels.base import ParsedWebhook
from connector.channels.plugin import UnreachableError
from connector.channels.twilio import WEBHOOK_PATH, TwilioClient, TwilioSettings, parse, public_url, verify_signature
from core.errors import AuthError, FatalError, RetryableError, SkippableError, WebhookRejectedError
from core.models import Attachment, Conversation, Option, Reply, utcnow
from emulators.server import ServedApp
from emulators.twilio import TwilioEmulator

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-test-token"
WA_SENDER, SMS_SENDER = "whatsapp:+14155238886", "+14155238886"
CONTENT = "HX" + "fedcba9876543210" * 2


@dataclass
class Relay:
    """Where the relay's Twilio webhook stands: each request checked (signature over the public URL) and parsed."""

    public_base: str = ""
    parsed: list[ParsedWebhook] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        app = Flask("relay")

        @app.post(WEBHOOK_PATH)
        def hook() -> tuple[str, int]:
            form = list(request.form.items(multi=True))
            url = public_url(self.public_base, request.path, request.query_string.decode())
            try:
                verify_signature(url, form, request.headers.get("X-Twilio-Signature"), TOKEN)
                parsed = parse(request.form.to_dict(), dict(request.headers), request.args.to_dict())
            except WebhookRejectedError as exc:
                with self.lock:
                    self.refused.append(exc.status)
                return "", exc.status
            with self.lock:
                self.parsed.append(parsed)
            return "", 200

        self.served = ServedApp(app)


@pytest.fixture
def relay() -> Iterator[Relay]:
    relay = Relay()
    with relay.served:
        relay.public_base = relay.served.url
        yield relay


@pytest.fixture
def emulator(relay: Relay) -> Iterator[tuple[TwilioEmulator, str]]:
    emulator = TwilioEmulator(ACCOUNT_SID, TOKEN, relay_url=relay.public_base + WEBHOOK_PATH, contents={CONTENT},
                              not_on_whatsapp={"+905329999999"}, timeout_seconds=0.5)
    with ServedApp(emulator.app) as served:
        emulator.url = served.url
        yield emulator, served.url
    emulator.callbacks.close()


@pytest.fixture
def client(emulator: tuple[TwilioEmulator, str], relay: Relay) -> TwilioClient:
    return TwilioClient(TwilioSettings(_env_file=None, twilio_account_sid=ACCOUNT_SID, twilio_auth_token=TOKEN,
                                       twilio_api_base=emulator[1], twilio_public_base_url=relay.public_base))


def _conversation(sender: str = "whatsapp:+905321112233", account: str = WA_SENDER, *,
                  hours_ago: float = 0.1) -> Conversation:
    return Conversation(key=f"twilio:{account}:{sender}", channel="twilio", account=account, sender_id=sender,
                        last_inbound_at=utcnow() - timedelta(hours=hours_ago), language="tr")


def _statuses(relay: Relay) -> list[tuple[str, str, str | None]]:
    return [(s.message_id, s.status, s.tracking) for p in relay.parsed for s in p.statuses]


def test_text_and_numbered_options_with_signed_status_callbacks(client: TwilioClient, emulator: Any,
                                                                relay: Relay) -> None:
    twilio, _ = emulator
    assert twilio.patient("+905321112233").send_text("Merhaba") == 200  # the 24-hour window opens
    options = [Option(id="hair", title="Saç ekimi"), Option(id="dental", title="Diş")]
    ids = client.send(_conversation(), [Reply(text="Merhaba!"), Reply(text="Hangi tedavi?", options=options)],
                      tracking="entry-7")
    sent = twilio.messages_to("whatsapp:+905321112233")
    assert [m.sid for m in sent] == ids and all(i.startswith("SM") and len(i) == 34 for i in ids)
    assert sent[0].get("Body") == "Merhaba!" and sent[0].sender == WA_SENDER
    assert sent[1].get("Body") == "Hangi tedavi?\n\n1. Saç ekimi\n2. Diş"
    assert sent[0].get("StatusCallback") == f"{relay.public_base}{WEBHOOK_PATH}?t=entry-7"
    twilio.wait_for_webhooks()
    assert set(_statuses(relay)) == {(i, s, "entry-7") for i in ids for s in ("sent", "delivered")}
    assert twilio.read_all("whatsapp:+905321112233") == 2
    twilio.wait_for_webhooks()
    assert {(i, "read", "entry-7") for i in ids} <= set(_statuses(relay))
    assert not relay.refused and not twilio.violations


def test_content_template_inside_and_outside_the_window(client: TwilioClient, emulator: Any) -> None:
    twilio, _ = emulator
    reply = Reply(text="-", template=CONTENT, template_params=["Ayşe", "#1042"])
    [sid] = client.send(_conversation(hours_ago=30), [reply])
    [message] = twilio.messages_to("whatsapp:+905321112233")
    assert message.sid == sid and message.get("ContentSid") == CONTENT and message.get("Body") is None
    assert message.get("ContentVariables") == '{"1": "Ayşe", "2": "#1042"}'
    with pytest.raises(SkippableError):
        client.send(_conversation(hours_ago=30), [Reply(text="free text")])
    assert len(twilio.messages_to("whatsapp:+905321112233")) == 1  # nothing went out


def test_media_one_file_per_whatsapp_message_and_grouped_by_sms(client: TwilioClient, emulator: Any) -> None:
    twilio, _ = emulator
    files = [Attachment(url=f"https://crm.example.com/f/{i}.pdf", mime_type="application/pdf") for i in range(3)]
    client.send(_conversation(), [Reply(text="Belgeler", attachments=files)])
    wa = twilio.messages_to("whatsapp:+905321112233")
    assert [m.all("MediaUrl") for m in wa] == [[f.url] for f in files]
    assert [m.get("Body") for m in wa] == ["Belgeler", None, None] and wa[0].sid.startswith("MM")
    client.send(_conversation("+905321112233", SMS_SENDER), [Reply(text="Belgeler", attachments=files)])
    [sms] = twilio.messages_to("+905321112233")
    assert sms.all("MediaUrl") == [f.url for f in files] and sms.sender == SMS_SENDER
    too_big = Attachment(url="https://crm.example.com/big.mp4", size=17 * 1024 * 1024)
    with pytest.raises(FatalError):
        client.send(_conversation(), [Reply(text="a"), Reply(text="video", attachments=[too_big])])
    assert len(twilio.messages_to("whatsapp:+905321112233")) == 3  # refused before anything was sent


def test_errors_are_mapped(client: TwilioClient, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    twilio, _ = emulator
    twilio.fail_next(1, "429")
    with pytest.raises(RetryableError) as throttled:
        client.send(_conversation(), [Reply(text="a")])
    assert throttled.value.retry_after == 1.0 and throttled.value.details["code"] == 20429
    twilio.fail_next(3, "500")  # tried in place three times: Twilio surely did not act on a 500
    with pytest.raises(RetryableError):
        client.send(_conversation(), [Reply(text="a")])
    twilio.fail_next(1, "20003")
    with pytest.raises(AuthError) as auth:
        client.send(_conversation(), [Reply(text="a")])
    assert auth.value.setting == "TWILIO_AUTH_TOKEN"
    with monkeypatch.context() as short:  # a timeout fault answers in 0.5 s: wait less than that for it
        short.setattr(channel_base, "TIMEOUT", (2.0, 0.3))
        twilio.fail_next(1, "timeout")
        with pytest.raises(RetryableError):
            client.send(_conversation(), [Reply(text="a")])
    with pytest.raises(UnreachableError) as invalid:
        client.send(_conversation("whatsapp:+90532"), [Reply(text="a")])
    assert invalid.value.details["code"] == 21211
    client.send(_conversation(), [Reply(text="x" * 1600, options=[Option(id="a", title="A")])])
    body = twilio.messages_to("whatsapp:+905321112233")[-1].get("Body")
    assert len(body) == 1600 and body.endswith("…")  # cut to what Twilio takes (21617 beyond)


def test_unreachable_patients(client: TwilioClient, emulator: Any, relay: Relay) -> None:
    twilio, _ = emulator
    patient = twilio.patient("+905321112233", whatsapp=False)
    assert patient.stop() == 200
    assert relay.parsed[-1].opt_outs == [(SMS_SENDER, "+905321112233")]
    with pytest.raises(UnreachableError) as unsubscribed:
        client.send(_conversation("+905321112233", SMS_SENDER), [Reply(text="a")])
    assert unsubscribed.value.details["code"] == 21610
    [sid] = client.send(_conversation("whatsapp:+905329999999"), [Reply(text="a")])
    twilio.wait_for_webhooks()
    failed = [s for p in relay.parsed for s in p.statuses if s.message_id == sid and s.status == "failed"]
    assert failed and failed[0].errors[0]["code"] == 63003 and "not on WhatsApp" in failed[0].errors[0]["title"]


def test_patients_webhooks_are_signed_and_parsed(emulator: Any, relay: Relay) -> None:
    twilio, _ = emulator
    patient = twilio.patient("+905321112233", "Ayşe")
    assert patient.send_text("Merhaba", referral={"SourceId": "1202", "CtwaClid": "ARAk1"}) == 200
    assert patient.press_button("yes", "Evet") == 200
    assert patient.choose_from_list("dental", "Diş") == 200
    assert patient.share_location(41.0082, 28.9784, "Klinik") == 200
    assert patient.send_media(b"%PDF-1.4 report", "application/pdf", "rapor") == 200
    messages = [m for p in relay.parsed for m in p.messages]
    assert [m.kind for m in messages] == ["text", "choice", "choice", "location", "media"]
    assert messages[0].referral is not None and messages[0].referral.ctwa_clid == "ARAk1"
    assert messages[0].profile.name == "Ayşe" and {m.sender_id for m in messages} == {"whatsapp:+905321112233"}
    assert (messages[1].choice_id, messages[2].choice_id) == ("yes", "dental")
    assert messages[4].media[0].kind == "document" and messages[4].text == "rapor"
    assert not relay.refused


def test_a_forged_or_misrouted_webhook_is_refused(emulator: Any, relay: Relay) -> None:
    twilio, _ = emulator
    form = [("MessageSid", "SM" + "1" * 32), ("From", "whatsapp:+905321112233"), ("To", WA_SENDER), ("Body", "hi")]
    assert twilio.post_webhook(form, signature="") == 401
    assert twilio.post_webhook(form, signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ=") == 403
    # signed for another URL (a request replayed at this relay from elsewhere): the public URL decides
    assert twilio.post_webhook(form, url="https://elsewhere.example/webhooks/twilio") == 403
    assert relay.refused == [401, 403, 403] and not relay.parsed


def test_behind_a_proxy_the_public_url_is_checked(emulator: Any, relay: Relay) -> None:
    twilio, _ = emulator
    relay.public_base = "https://relay.clinic.example"  # what Twilio calls; the proxy forwards to 127.0.0.1
    twilio.webhook_url = "https://relay.clinic.example" + WEBHOOK_PATH
    assert twilio.patient("+905321112233").send_text("Merhaba") == 200
    twilio.webhook_url = ""  # signed over the URL the relay is reached at locally: not what Twilio called
    assert twilio.patient("+905321112233").send_text("Merhaba") == 403


def test_fetch_media_through_twilios_redirect(client: TwilioClient, emulator: Any, relay: Relay) -> None:
    twilio, _ = emulator
    twilio.patient("+905321112233").send_media(b"\xff\xd8jpeg-bytes", "image/jpeg")
    [message] = relay.parsed[-1].messages
    media_id = message.media[0].media_id
    downloaded = client.fetch_media(media_id, max_bytes=1000)
    assert downloaded.content == b"\xff\xd8jpeg-bytes" and downloaded.mime_type == "image/jpeg"
    with pytest.raises(FatalError):
        client.fetch_media(media_id, max_bytes=5)
    with pytest.raises(FatalError):
        client.fetch_media(media_id.replace("/Media/ME", "/Media/MEx"), max_bytes=1000)
    with pytest.raises(FatalError):  # the credentials go to Twilio's API only
        client.fetch_media("https://attacker.example/2010-04-01/x", max_bytes=1000)
    assert requests.get(media_id, timeout=5).status_code == 401  # the URL alone gives nothing


def test_the_emulator_refuses_what_twilio_would(emulator: Any) -> None:
    twilio, url = emulator
    endpoint = f"{url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    auth = (ACCOUNT_SID, TOKEN)

    def post(form: dict[str, Any], *, credentials: tuple[str, str] = auth) -> tuple[int, dict[str, Any]]:
        response = requests.post(endpoint, data=form, auth=credentials, timeout=5)
        return response.status_code, response.json()

    status, body = post({"To": "+905321112233", "From": SMS_SENDER, "Body": "a"}, credentials=(ACCOUNT_SID, "wrong"))
    assert (status, body["code"], body["more_info"]) == (401, 20003, "https://www.twilio.com/docs/errors/20003")
    assert post({"From": SMS_SENDER, "Body": "a"})[1]["code"] == 21211  # To is required by the description
    assert post({"To": "+905321112233", "Body": "a"})[1]["code"] == 21603
    assert post({"To": "+905321112233", "From": SMS_SENDER})[1]["code"] == 21619
    assert post({"To": "+905321112233", "From": SMS_SENDER, "Body": "x" * 1601})[1]["code"] == 21617
    assert post({"To": "whatsapp:+905321112233", "From": SMS_SENDER, "Body": "a"})[1]["code"] == 21910
    assert post({"To": "+905321112233", "From": SMS_SENDER, "ContentSid": "HX123"})[1]["code"] == 21655
    assert post({"To": "+905321112233", "From": SMS_SENDER, "ContentSid": CONTENT,
                 "ContentVariables": "[1]"})[1]["code"] == 21656
    assert post({"To": "+905321112233", "From": SMS_SENDER, "Body": "a", "StatusCallback": "not a url"})[0] == 400
    assert post({"To": "+905321112233", "From": SMS_SENDER, "Body": "a", "Colour": "red"})[0] == 400
    status, body = post({"To": "+905321112233", "From": SMS_SENDER, "Body": "a"})
    assert status == 201 and set(body) >= {"sid", "status", "account_sid", "date_created", "uri", "num_media"}
    assert body["status"] == "queued" and body["from"] == SMS_SENDER
    assert len(twilio.violations) == 4  # the ones the description itself refuses (To, ContentSid, URL, Colour)


def test_calls_are_quick(client: TwilioClient, emulator: Any) -> None:
    started = time.perf_counter()
    for _ in range(20):
        client.send(_conversation(), [Reply(text="a")])
    assert time.perf_counter() - started < 5
