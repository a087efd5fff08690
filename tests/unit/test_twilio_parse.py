"""Twilio webhooks → canonical messages and statuses; the signature against Twilio's published example."""

from __future__ import annotations

import pytest

from connector.channels import twilio_errors
from connector.channels.plugin import UnreachableError
from connector.channels.twilio import parse, public_url, signature, verify_signature
from core.errors import AuthError, FatalError, RetryableError, SkippableError, WebhookRejectedError

# Twilio's worked example ("Webhooks security"): this URL and these parameters under auth token 12345
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
DOC_TOKEN = "12345"
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="

ACCOUNT = "whatsapp:+14155238886"
PATIENT = "whatsapp:+905321112233"


def _form(**extra: str) -> dict[str, str]:
    return {"MessageSid": "SM" + "a" * 32, "SmsSid": "SM" + "a" * 32, "AccountSid": "AC" + "b" * 32,
            "From": PATIENT, "To": ACCOUNT, "Body": "", "NumMedia": "0", "SmsStatus": "received",
            "ProfileName": "Ayşe Yılmaz", "WaId": "905321112233", "ApiVersion": "2010-04-01", **extra}


def test_twilios_published_example_signs_as_documented() -> None:
    assert signature(DOC_URL, DOC_PARAMS, DOC_TOKEN) == DOC_SIGNATURE
    verify_signature(DOC_URL, DOC_PARAMS, DOC_SIGNATURE, DOC_TOKEN)
    verify_signature(DOC_URL, list(reversed(DOC_PARAMS.items())), DOC_SIGNATURE, DOC_TOKEN)  # order is irrelevant


@pytest.mark.parametrize(("url", "params", "token"), [
    (DOC_URL, {**DOC_PARAMS, "Digits": "1235"}, DOC_TOKEN),           # a tampered value
    (DOC_URL, {**DOC_PARAMS, "Extra": ""}, DOC_TOKEN),                # a parameter added
    ("https://mycompany.com/myapp.php?foo=1&bar=3", DOC_PARAMS, DOC_TOKEN),  # another query
    ("https://evil.example/myapp.php?foo=1&bar=2", DOC_PARAMS, DOC_TOKEN),  # another host
    (DOC_URL, DOC_PARAMS, "54321"),                                   # another account's token
])
def test_anything_else_is_refused(url: str, params: dict[str, str], token: str) -> None:
    with pytest.raises(WebhookRejectedError) as refused:
        verify_signature(url, params, DOC_SIGNATURE, token)
    assert refused.value.status == 403


def test_a_missing_signature_is_401() -> None:
    with pytest.raises(WebhookRejectedError) as refused:
        verify_signature(DOC_URL, DOC_PARAMS, None, DOC_TOKEN)
    assert refused.value.status == 401


def test_the_default_port_may_be_named_or_not() -> None:
    signed = signature("https://mycompany.com:443/myapp.php?foo=1&bar=2", DOC_PARAMS, DOC_TOKEN)
    verify_signature(DOC_URL, DOC_PARAMS, signed, DOC_TOKEN)
    verify_signature("https://mycompany.com:443/myapp.php?foo=1&bar=2", DOC_PARAMS, DOC_SIGNATURE, DOC_TOKEN)


def test_the_url_is_the_configured_public_one() -> None:
    assert public_url("https://relay.example.com/", "/webhooks/twilio", "t=abc") == \
        "https://relay.example.com/webhooks/twilio?t=abc"
    assert public_url("https://relay.example.com", "/webhooks/twilio") == "https://relay.example.com/webhooks/twilio"


def test_text() -> None:
    parsed = parse(_form(Body="Merhaba", MessageType="text"))
    [message] = parsed.messages
    assert (message.kind, message.text, message.channel) == ("text", "Merhaba", "twilio")
    assert (message.account, message.sender_id, message.sender_phone) == (ACCOUNT, PATIENT, "+905321112233")
    assert message.profile.name == "Ayşe Yılmaz" and message.conversation_key == f"twilio:{ACCOUNT}:{PATIENT}"


def test_sms_text_has_the_number_as_sender() -> None:
    [message] = parse(_form(From="+905321112233", To="+14155238886", Body="Hi")).messages
    assert message.sender_id == "+905321112233" and message.sender_phone == "+905321112233"


def test_quick_reply_button_and_list_row_are_choices() -> None:
    [button] = parse(_form(Body="Evet", ButtonText="Evet", ButtonPayload="yes", MessageType="button")).messages
    assert (button.kind, button.choice_id, button.choice_title, button.raw_type) == ("choice", "yes", "Evet", "button")
    [row] = parse(_form(Body="Diş", ListId="dental", ListTitle="Diş", MessageType="interactive")).messages
    assert (row.kind, row.choice_id, row.choice_title, row.raw_type) == ("choice", "dental", "Diş", "list")


def test_location() -> None:
    [message] = parse(_form(Latitude="41.0082", Longitude="28.9784", Label="Klinik", Address="Fatih",
                            MessageType="location")).messages
    assert message.kind == "location" and message.location is not None
    assert (message.location.latitude, message.location.longitude, message.location.name,
            message.location.address) == (41.0082, 28.9784, "Klinik", "Fatih")


def test_media_every_file_with_its_type() -> None:
    url0 = "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM1/Media/ME1"
    [message] = parse(_form(Body="röntgen", NumMedia="2", MediaUrl0=url0, MediaContentType0="image/jpeg",
                            MediaUrl1=url0 + "x", MediaContentType1="application/pdf", MessageType="image")).messages
    assert message.kind == "media" and message.text == "röntgen"
    assert [(m.kind, m.media_id, m.mime_type) for m in message.media] == [
        ("image", url0, "image/jpeg"), ("document", url0 + "x", "application/pdf")]
    assert message.media[0].caption == "röntgen" and message.media[1].caption is None


def test_ad_referral_and_reply_context() -> None:
    [message] = parse(_form(Body="Fiyat?", ReferralSourceUrl="https://fb.me/ad", ReferralSourceId="120210000000001",
                            ReferralSourceType="ad", ReferralHeadline="Hair transplant", ReferralCtwaClid="ARAkxyz",
                            OriginalRepliedMessageSid="SM" + "c" * 32)).messages
    assert message.referral is not None and message.referral.ctwa_clid == "ARAkxyz"
    assert message.referral.source_id == "120210000000001" and message.referral.headline == "Hair transplant"
    assert message.reply_to == "SM" + "c" * 32


def test_an_empty_message_of_an_unknown_kind_is_unsupported() -> None:
    [message] = parse(_form(MessageType="sticker_pack")).messages
    assert message.kind == "unsupported" and message.raw_type == "sticker_pack"


def test_sms_stop_and_start_are_opt_out_and_in() -> None:
    stop = parse(_form(From="+905321112233", To="+14155238886", Body="STOP", OptOutType="STOP"))
    assert stop.opt_outs == [("+14155238886", "+905321112233")] and not stop.messages
    start = parse(_form(From="+905321112233", To="+14155238886", Body="START", OptOutType="START"))
    assert start.opt_ins == [("+14155238886", "+905321112233")] and not start.messages


@pytest.mark.parametrize(("given", "expected"), [
    ("sent", "sent"), ("delivered", "delivered"), ("read", "read"), ("failed", "failed"),
    ("undelivered", "failed"), ("queued", "queued")])
def test_status_callbacks(given: str, expected: str) -> None:
    form = {"MessageSid": "SM" + "d" * 32, "MessageStatus": given, "To": PATIENT, "From": ACCOUNT,
            "AccountSid": "AC" + "b" * 32}
    if given in ("failed", "undelivered"):
        form["ErrorCode"] = "63016"
    parsed = parse(form, {}, {"t": "entry-1"})
    [status] = parsed.statuses
    assert (status.channel, status.message_id, status.status, status.recipient, status.tracking) == (
        "twilio", "SM" + "d" * 32, expected, PATIENT, "entry-1")
    if given in ("failed", "undelivered"):
        assert status.errors[0]["code"] == 63016 and "24-hour" in status.errors[0]["title"]
    assert not parsed.messages


def test_a_malformed_form_is_skipped_and_logged_without_values(caplog: pytest.LogCaptureFixture) -> None:
    parsed = parse(_form(Body="secret\x00words", NumMedia="two"))
    assert parsed.skipped == 1 and not parsed.messages
    assert "secret" not in caplog.text


def test_a_form_that_is_no_twilio_webhook_is_400() -> None:
    with pytest.raises(WebhookRejectedError) as refused:
        parse({"Body": "hello"})
    assert refused.value.status == 400


@pytest.mark.parametrize(("status", "code", "kind"), [
    (400, 63016, SkippableError), (400, 21610, UnreachableError), (400, 21211, UnreachableError),
    (400, 63003, UnreachableError), (429, 20429, RetryableError), (500, 20500, RetryableError),
    (401, 20003, AuthError), (400, 21617, FatalError), (400, 99999, FatalError), (503, None, RetryableError)])
def test_error_table(status: int, code: int | None, kind: type[Exception]) -> None:
    error = twilio_errors.exception(status, code, "The 'To' number +905321112233 is not valid")
    assert type(error) is kind
    assert "+905321112233" not in error.message  # a patient's number never reaches the error's message


def test_every_code_has_a_readable_reason() -> None:
    assert all(len(entry.reason) > 10 for entry in twilio_errors.TABLE.values())
    assert twilio_errors.reason("63016", "x").startswith("outside WhatsApp's 24-hour window")
    assert twilio_errors.reason("12", "Twilio's words") == "Twilio's words"


def test_twilios_description_is_kept_unchanged_with_its_licence() -> None:
    import hashlib
    import re

    from emulators.specs import spec_path, vendor_specs_dir

    sources = (vendor_specs_dir() / "SOURCES.md").read_text(encoding="utf-8")
    [digest] = re.findall(r"^\| `twilio/twilio_api_v2010\.json` \|.*\| ([0-9a-f]{16}) \|$", sources, re.M)
    assert hashlib.sha256(spec_path("twilio/twilio_api_v2010.json").read_bytes()).hexdigest()[:16] == digest
    assert "Twilio" in (vendor_specs_dir() / "twilio" / "LICENSE").read_text(encoding="utf-8")
    assert "`twilio/LICENSE`" in sources


def test_the_plugin_verifies_over_the_public_url_and_maps_errors() -> None:
    from urllib.parse import urlencode

    from connector.channels.plugin import ChannelContext, Outcome, WebhookRequest
    from connector.channels.twilio import TwilioSettings
    from connector.channels.twilio_plugin import TwilioPlugin
    from tests.conftest import make_settings

    plugin = TwilioPlugin()
    settings = TwilioSettings(_env_file=None, twilio_auth_token=DOC_TOKEN,  # type: ignore[call-arg]
                              twilio_public_base_url="https://mycompany.com")
    verify = plugin.verifier(ChannelContext(settings=settings, core=make_settings("unix:///x")))
    assert verify is not None
    raw = urlencode(DOC_PARAMS).encode()
    # the relay was reached as http://10.0.0.5 behind a proxy: the configured public base decides
    request = WebhookRequest("POST", "/myapp.php", {"x-twilio-signature": DOC_SIGNATURE}, {}, raw,
                             "http://10.0.0.5/myapp.php?foo=1&bar=2")
    verify(request)
    with pytest.raises(WebhookRejectedError):
        verify(WebhookRequest("POST", "/myapp.php", {"x-twilio-signature": DOC_SIGNATURE}, {}, raw + b"1",
                              request.url))
    assert plugin.errors.rule(63016, 400).outcome is Outcome.WINDOW
    assert plugin.errors.rule(21610, 400).outcome is Outcome.UNREACHABLE
    assert plugin.errors.rule(20003, 401).outcome is Outcome.AUTH
    assert plugin.parse(_form(Body="Merhaba"), ChannelContext(settings=settings, core=make_settings("unix:///x"))
                        ).messages[0].text == "Merhaba"
