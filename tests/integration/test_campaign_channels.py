"""Campaign links to every configured channel, on real Redis and the real app, and their round trip.

Each channel's link (wa.me, t.me, m.me, ig.me, LINE's oaMessage) carries the click code the way the channel
gives it back; the emulators' patients send what the channel would send after the click (to a receiver standing
where the relay stands), the channel's own parser reads it, and the attribution finds the campaign and its
language on the conversation.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import redis

from connector.attribution import attribute
from connector.attribution.campaigns import Campaign
from connector.attribution.clicks import load_click
from connector.attribution.targets import link_problems
from connector.channels import plugin as plugins
from connector.runtime import Runtime, set_current_runtime
from core.models import Conversation, InboundMessage
from tests.conftest import make_settings
from tests.integration.channel_servers import Receiver
from tests.paths import SHIPPED_CONFIG

#: runs the website script on a stand-in page under node, and prints the page's links
HARNESS = Path(__file__).resolve().parents[1] / "data" / "site_script" / "harness.js"

EVERY = "whatsapp,telegram,messenger,instagram,line"
LINKS = {"META_MESSAGING_PAGE_USERNAME": "clinic.page", "META_MESSAGING_INSTAGRAM_USERNAME": "clinic_ig",
         "LINE_BASIC_ID": "@clinic"}


@pytest.fixture
def every_channel(redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The relay serving every channel, each with the setting its link needs."""
    for name, value in LINKS.items():
        monkeypatch.setenv(name, value)
    runtime = Runtime(make_settings(redis_url, chat2crm_channels=EVERY), redis_client=redis_client)
    runtime.campaigns.campaigns.append(Campaign(slug="dental-ig", name="Dental — Instagram", channel="instagram",
                                                flow="health_tourism_intake", language="de",
                                                known={"treatment": "dental"}))
    set_current_runtime(runtime)
    try:
        yield runtime
    finally:
        set_current_runtime(None)


@pytest.fixture
def relay(every_channel: Runtime) -> Any:
    from connector.app import create_app

    return create_app({"TESTING": True}, runtime=every_channel).test_client()


def follow(relay: Any, slug: str, query: str = "") -> str:
    response = relay.get(f"/c/{slug}?{query}")
    assert response.status_code == 302, response.data[:200]
    return str(response.headers["Location"])


def code_in(location: str) -> str:
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    if "ref" in query:
        return query["ref"][0]
    if "start" in query:
        return query["start"][0]
    if parts.netloc == "line.me":
        return unquote(parts.query).removeprefix("/start ")
    return unquote(query["text"][0]).split("ref: ")[1].rstrip(")")


def test_each_channel_gets_its_own_link_carrying_the_code(relay: Any, every_channel: Runtime) -> None:
    expected = {"whatsapp": "https://wa.me/905320000000?text=", "telegram": "https://t.me/chat2crm_demo_bot?start=",
                "messenger": "https://m.me/clinic.page?ref=", "instagram": "https://ig.me/m/clinic_ig?ref=",
                "line": "https://line.me/R/oaMessage/%40clinic/?/start%20"}
    for channel, start in expected.items():
        location = follow(relay, "hair-tr", f"channel={channel}&utm_content=story")
        assert location.startswith(start), (channel, location)
        click = load_click(every_channel.redis, code_in(location))
        assert click is not None and click["campaign"] == "hair-tr" and click["channel"] == channel
    assert follow(relay, "dental-ig").startswith("https://ig.me/m/clinic_ig?ref=")  # the campaign's own channel


def test_a_channel_not_offered_is_never_the_target(relay: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINE_BASIC_ID")
    assert follow(relay, "hair-tr", "channel=line").startswith("https://wa.me/")  # no basic id: not offered
    assert follow(relay, "hair-tr", "channel=https://evil.example").startswith("https://wa.me/")
    listed = relay.get("/c/dental-ig/channels")
    assert listed.headers["Access-Control-Allow-Origin"] == "*"
    assert [c["channel"] for c in listed.get_json()["channels"]] == ["instagram", "whatsapp", "telegram",
                                                                      "messenger"]
    assert listed.get_json()["channels"][0]["href"] == "/c/dental-ig?channel=instagram"
    assert relay.get("/c/nope/channels").status_code == 404


def test_check_names_the_missing_setting_of_a_campaign_channel(every_channel: Runtime,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    registry, config = every_channel.campaigns, every_channel.config
    assert link_problems(every_channel.settings, config, registry, SHIPPED_CONFIG) == []
    monkeypatch.delenv("META_MESSAGING_INSTAGRAM_USERNAME")
    problems = link_problems(every_channel.settings, config, registry, SHIPPED_CONFIG)
    assert [p.path for p in problems] == ["META_MESSAGING_INSTAGRAM_USERNAME"] and "dental-ig" in problems[0].message
    only_whatsapp = make_settings(every_channel.settings.redis_url, chat2crm_channels="whatsapp")
    problems = link_problems(only_whatsapp, config, registry, SHIPPED_CONFIG)
    assert {p.path for p in problems} == {"campaigns.3.channel", f"campaigns.{len(registry.campaigns) - 1}.channel"}


def _conversation(message: InboundMessage) -> Conversation:
    return Conversation(key=message.conversation_key, channel=message.channel, account=message.account,
                        sender_id=message.sender_id)


def _parsed(runtime: Runtime, name: str, body: Any) -> InboundMessage:
    plugin = plugins.load(name)
    parsed = plugin.parse(plugin.envelope(body), plugins.context(plugin, runtime.settings))
    assert len(parsed.messages) == 1
    return parsed.messages[0]


def _attributed(runtime: Runtime, message: InboundMessage, campaign: str, language: str) -> Conversation:
    conversation = _conversation(message)
    attribute(runtime, conversation, message)
    assert conversation.first_touch is not None and conversation.first_touch.campaign == campaign
    assert conversation.last_touch is not None and conversation.last_touch.click_ref
    assert (conversation.language, conversation.language_source) == (language, "campaign")
    return conversation


def test_messenger_and_instagram_refs_come_back_as_the_campaign(relay: Any, every_channel: Runtime) -> None:
    from emulators.meta_messaging import MetaMessagingEmulator

    with Receiver() as receiver:
        meta = MetaMessagingEmulator(page_access_token="page-token", app_secret="s3cret", relay_url=receiver.url)
        new_thread = meta.patient("6123456789012345")  # a new thread: Get Started, with the link's ref
        new_thread.get_started(ref=code_in(follow(relay, "dental-de", "channel=messenger")))
        came_back = meta.patient("17841400000000001", "instagram")  # a thread already open: messaging_referral
        came_back.follow_link(code_in(follow(relay, "dental-ig")))
        first, second = (w.body for w in receiver.received)
    conversation = _attributed(every_channel, _parsed(every_channel, "messenger", first), "dental-de", "de")
    assert conversation.flow == "health_tourism_intake" and conversation.known == {"treatment": "dental"}
    message = _parsed(every_channel, "instagram", second)
    assert message.channel == "instagram" and message.kind == "start"
    _attributed(every_channel, message, "dental-ig", "de")


def test_a_ref_riding_on_a_message_comes_back_as_the_campaign(relay: Any, every_channel: Runtime) -> None:
    """A Click-to-Messenger ad's ``ref`` arrives on the person's first message (``message.referral``), not on a
    start: the click it names is the touch, the ad's own fields beside it; without a ref the ad alone is kept."""
    from emulators.meta_messaging import MetaMessagingEmulator

    with Receiver() as receiver:
        meta = MetaMessagingEmulator(page_access_token="page-token", app_secret="s3cret", relay_url=receiver.url)
        clicked = meta.patient("6123456789012399")
        clicked.send_text("Hallo, ich interessiere mich für Implantate",
                          ad={"ad_id": "120210000000001", "ref": code_in(follow(relay, "dental-de", "channel=messenger"))})
        plain = meta.patient("6123456789012398")
        plain.send_text("Hello", ad={"ad_id": "120210000000002"})
        first, second = (w.body for w in receiver.received)
    message = _parsed(every_channel, "messenger", first)
    assert message.kind == "text" and message.start_payload
    conversation = _attributed(every_channel, message, "dental-de", "de")
    assert conversation.flow == "health_tourism_intake"
    no_ref = _conversation(_parsed(every_channel, "messenger", second))
    attribute(every_channel, no_ref, _parsed(every_channel, "messenger", second))
    assert no_ref.last_touch is not None and no_ref.last_touch.ad_source_id == "120210000000002"
    assert not no_ref.last_touch.click_ref


def test_line_start_text_comes_back_as_the_campaign(relay: Any, every_channel: Runtime) -> None:
    from emulators.line import LineEmulator

    location = follow(relay, "aesthetic-ru-tg", "channel=line")
    typed = unquote(urlsplit(location).query)  # what LINE types in the chat for the patient
    line = LineEmulator("line-secret", "line-token")
    user = line.user("Aiko")
    message = _parsed(every_channel, "line", line.body(user.text(typed)))
    assert message.kind == "start" and message.start_payload == code_in(location)
    conversation = _attributed(every_channel, message, "aesthetic-ru-tg", "ru")
    assert conversation.first_touch is not None and conversation.first_touch.start_payload == message.start_payload


def test_twilio_whatsapp_prefilled_text_comes_back_and_keeps_both_touches(
        redis_url: str, redis_client: redis.Redis) -> None:
    from emulators.twilio import TwilioEmulator

    runtime = Runtime(make_settings(redis_url, chat2crm_channels="twilio"), redis_client=redis_client)
    from connector.app import create_app

    relay = create_app({"TESTING": True}, runtime=runtime).test_client()
    set_current_runtime(runtime)
    try:
        with Receiver() as receiver:
            twilio = TwilioEmulator("AC" + "0" * 32, "twilio-token", relay_url=receiver.url)
            patient = twilio.patient("+905321112233")
            for slug in ("hair-tr", "dental-de"):
                location = follow(relay, slug, "channel=telegram")  # not served here: WhatsApp instead
                assert location.startswith("https://wa.me/905320000000?text=")
                patient.send_text(unquote(parse_qs(urlsplit(location).query)["text"][0]))
            first, second = (dict(parse_qs(w.raw.decode())) for w in receiver.received)
        messages = [_parsed(runtime, "twilio", {k: v[0] for k, v in form.items()}) for form in (first, second)]
        conversation = _conversation(messages[0])
        cleaned = attribute(runtime, conversation, messages[0])
        assert cleaned.text == "Merhaba! Bilgi almak istiyorum."  # the code is taken out before the bot reads it
        attribute(runtime, conversation, messages[1])
        assert conversation.first_touch is not None and conversation.last_touch is not None
        assert (conversation.first_touch.campaign, conversation.last_touch.campaign) == ("hair-tr", "dental-de")
        assert (conversation.language, conversation.language_source) == ("tr", "campaign")
    finally:
        set_current_runtime(None)


@pytest.mark.skipif(shutil.which("node") is None, reason="the website script runs under node")
def test_the_website_script_sends_each_chat_button_through_its_channel_and_offers_every_chat(
        every_channel: Runtime) -> None:
    from connector.app import create_app
    from emulators.server import ServedApp

    served = ServedApp(create_app({"TESTING": True}, runtime=every_channel)).start()
    try:
        script = Path(__file__).resolve().parents[2] / "connector" / "static" / "chat2crm-links.js"
        run = subprocess.run(["node", str(HARNESS), str(script), served.url], capture_output=True, text=True,
                             timeout=20, check=True)
    finally:
        served.stop()
    page = json.loads(run.stdout)
    whatsapp, instagram, line, other = (urlsplit(href) for href in page["links"])
    assert (whatsapp.path, parse_qs(whatsapp.query)["channel"], parse_qs(whatsapp.query)["utm_lang"]) == (
        "/c/hair-tr", ["whatsapp"], ["de"])
    assert parse_qs(instagram.query)["channel"] == ["instagram"] and parse_qs(line.query)["channel"] == ["line"]
    assert other.netloc == "example.org"  # not a chat: left alone
    assert [(o["label"], o["cls"]) for o in page["offered"]] == [
        ("Instagram", "chat2crm-channel chat2crm-instagram"), ("WhatsApp", "chat2crm-channel chat2crm-whatsapp"),
        ("Telegram", "chat2crm-channel chat2crm-telegram"), ("Messenger", "chat2crm-channel chat2crm-messenger"),
        ("LINE", "chat2crm-channel chat2crm-line")]
    offered = urlsplit(page["offered"][0]["href"])
    assert offered.path == "/c/dental-ig" and parse_qs(offered.query)["utm_source"] == ["newsletter"]
