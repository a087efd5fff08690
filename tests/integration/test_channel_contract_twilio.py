"""Twilio passes the channels' contract: forms the Twilio emulator signs, through the relay's app on real Redis;
the plug-in's client against the emulator over real HTTP; Twilio's codes in the error tree through the one
table the plug-in and the client share; and a status callback's tracking (in its URL's query) reaching the
agent's reply it reports on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connector import agent
from connector.channels import plugin as plugins
from connector.channels.plugin import ChannelContext, UnreachableError
from connector.channels.twilio import WEBHOOK_PATH, TwilioSettings
from connector.channels.twilio_errors import ERRORS
from connector.runtime import Runtime
from core.errors import AuthError, RetryableError
from core.inbox import AgentReply
from core.models import Conversation, Reply, utcnow
from core.settings import Settings
from emulators.server import ServedApp
from emulators.twilio import TwilioEmulator
from tests.channel_contract import Capture, ChannelContract, ChannelEnv
from tests.conftest import TEST_SECRETS, make_settings
from tests.intake import read
from tests.integration.channel_servers import Receiver

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-contract-token-0123456789"
PUBLIC = "https://relay.clinic.example"  # what Twilio calls, and signs over
SMS_SENDER, PATIENT = "+14155238886", "+905321112233"
# printf '%s' "https://relay.clinic.example/webhooks/twilio" then each parameter sorted by name as name and value,
#   | openssl dgst -sha1 -hmac twilio-contract-token-0123456789 -binary | base64
VECTORS = [
    (b"AccountSid=" + ACCOUNT_SID.encode() + b"&Body=Merhaba&From=whatsapp%3A%2B905321112233"
     b"&MessageSid=SM00000000000000000000000000000001&To=whatsapp%3A%2B14155238886", "V028VU3ytTOWbTWZm8pVwBsvhxM="),
    (b"To=whatsapp%3A%2B14155238886&MessageSid=SM00000000000000000000000000000002&From=whatsapp%3A%2B905321112233"
     b"&Body=1&AccountSid=" + ACCOUNT_SID.encode(), "SQXiQzVN7sVhlGuTsWfo3O3xgC4="),  # any order: sorted when signed
]


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return make_settings(redis_url, chat2crm_channels="whatsapp,telegram,twilio")


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[TwilioEmulator]:
    emulator = TwilioEmulator(ACCOUNT_SID, TOKEN, webhook_url=PUBLIC + WEBHOOK_PATH, timeout_seconds=0.5)
    with ServedApp(emulator.app) as served:
        emulator.url = served.url
        for name, value in (("TWILIO_ACCOUNT_SID", ACCOUNT_SID), ("TWILIO_AUTH_TOKEN", TOKEN),
                            ("TWILIO_API_BASE", served.url), ("TWILIO_FROM", SMS_SENDER),
                            ("TWILIO_PUBLIC_BASE_URL", PUBLIC)):
            monkeypatch.setenv(name, value)
        yield emulator
    emulator.callbacks.close()
    assert not emulator.violations, f"requests Twilio's description refuses: {emulator.violations}"


def _style(body: str | None) -> str:
    return "numbered" if "\n1. " in (body or "") else "text"


class TestTwilio(ChannelContract):
    @pytest.fixture
    def env(self, runtime: Runtime, app: Any, emulator: TwilioEmulator) -> Iterator[ChannelEnv]:
        plugin = plugins.load("twilio")
        patient = emulator.patient(PATIENT, "Ayşe")
        sms = emulator.patient(PATIENT, whatsapp=False)
        # the contract's sends ask for no status callbacks (no public base): they would go to relay.clinic.example
        own = TwilioSettings(_env_file=None, twilio_account_sid=ACCOUNT_SID,  # type: ignore[call-arg]
                             twilio_auth_token=TOKEN, twilio_api_base=emulator.url)
        client = plugin.client(ChannelContext(settings=own, core=runtime.settings))
        start = len(emulator.sent)
        with Receiver() as receiver:
            emulator.relay_url = receiver.url  # posted here, signed over the public URL
            kinds = {"text": lambda: patient.send_text("Merhaba"),
                     "choice": lambda: patient.press_button("yes", "Evet"),
                     "location": lambda: patient.share_location(41.0082, 28.9784, "Klinik"),
                     "media": lambda: patient.send_media(b"%PDF-1.4 rapor", "application/pdf", "rapor")}
            yield ChannelEnv(
                plugin=plugin, runtime=runtime, relay=app.test_client(), capture=Capture(receiver), kinds=kinds,
                known_answers=VECTORS, client=client,
                conversation=Conversation(key=f"twilio:{SMS_SENDER}:{PATIENT}", channel="twilio", account=SMS_SENDER,
                                          sender_id=PATIENT, last_inbound_at=utcnow()),
                styles=lambda: [_style(m.get("Body")) for m in emulator.sent[start:]],
                fail_next=emulator.fail_next, faults={"429": RetryableError, "20003": AuthError},
                make_unreachable=sms.stop)


def test_the_client_and_the_plugin_share_one_error_table(runtime: Runtime, emulator: TwilioEmulator) -> None:
    plugin = plugins.load("twilio")
    assert plugin.errors is ERRORS
    client = plugin.client(plugins.context(plugin, runtime.settings))
    with pytest.raises(UnreachableError) as invalid:  # the table's 21211: the patient's number is not valid
        client.send(Conversation(key="twilio:x:y", channel="twilio", account=SMS_SENDER, sender_id="+90532"),
                    [Reply(text="a")])
    assert invalid.value.details["outcome"] == "unreachable" and ERRORS.rule(21211, 400).reason in str(invalid.value)


def test_a_status_callback_reaches_the_agents_reply_by_its_tracking(
        runtime: Runtime, app: Any, emulator: TwilioEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # the agent's reply, accepted as the CRM's webhook would have it accepted: its entry id is its tracking
    key = f"whatsapp:{TEST_SECRETS['whatsapp_phone_number_id']}:905321112233"
    assert agent.accept(runtime, AgentReply(crm_message_id="crm-msg-7", text="Merhaba"), key)
    tracking = agent.entry_id("crm-msg-7")
    with ServedApp(app) as relay:  # the relay, reached by Twilio's status callbacks over real HTTP
        monkeypatch.setenv("TWILIO_PUBLIC_BASE_URL", relay.url)
        plugin = plugins.load("twilio")
        client = plugin.client(plugins.context(plugin, runtime.settings))
        [sid] = client.send(Conversation(key=f"twilio:{SMS_SENDER}:{PATIENT}", channel="twilio", account=SMS_SENDER,
                                         sender_id=PATIENT), [Reply(text="Merhaba")], tracking=tracking)
        assert emulator.sent[-1].get("StatusCallback") == f"{relay.url}{WEBHOOK_PATH}?t={tracking}"
        emulator.wait_for_webhooks()
    assert read(runtime)["statuses"] == 2  # the tracking travelled with each body, from the query it came with
    reports = [(r.crm_message_id, r.status, r.channel_message_ids) for r in agent.reports(runtime)]
    assert reports == [("crm-msg-7", "sent", [sid]), ("crm-msg-7", "delivered", [sid])]
