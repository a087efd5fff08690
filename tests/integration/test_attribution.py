"""Attribution paths on real Redis and the real app: click links, codes in first messages, ads, start payloads."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from connector.attribution import attribute
from connector.attribution.clicks import load_click
from connector.attribution.language import detect_language
from connector.runtime import Runtime
from core.models import AdReferral, Conversation, InboundMessage, SenderProfile, utcnow

ACCOUNT = "106540352242922"


def _conv(sender: str = "905321112233", channel: str = "whatsapp") -> Conversation:
    return Conversation(key=f"{channel}:{ACCOUNT}:{sender}", channel=channel, account=ACCOUNT,  # type: ignore[arg-type]
                        sender_id=sender)


def _msg(text: str | None = None, **extra: Any) -> InboundMessage:
    fields: dict[str, Any] = {"channel": "whatsapp", "account": ACCOUNT, "sender_id": "905321112233",
                              "message_id": "wamid.1", "timestamp": utcnow(), "kind": "text", "text": text}
    fields.update(extra)
    return InboundMessage(**fields)


def _click(client: Any, slug: str, query: str = "") -> tuple[str, str]:
    response = client.get(f"/c/{slug}?{query}")
    assert response.status_code == 302
    location = response.headers["Location"]
    if "t.me" in location:
        return location, parse_qs(urlparse(location).query)["start"][0]
    text = unquote(parse_qs(urlparse(location).query)["text"][0])
    return location, text


def test_click_redirects_to_whatsapp_with_a_code_and_stores_the_click(client: Any, runtime: Runtime) -> None:
    location, text = _click(client, "hair-tr", "utm_source=ig&utm_content=reel-3&fbclid=IwAR0abc&utm_lang=tr")
    assert location.startswith("https://wa.me/905320000000?text=")
    assert text.startswith("Merhaba! Bilgi almak istiyorum. (ref: ")
    code = text.split("ref: ")[1].rstrip(")")
    click = load_click(runtime.redis, code)
    assert click is not None and click["campaign"] == "hair-tr" and click["fbclid"] == "IwAR0abc"
    assert click["utm"]["utm_source"] == "ig" and click["utm"]["utm_medium"] == "paid_social"
    ttl = runtime.redis.ttl(f"c2c:click:{code}")
    assert 29 * 86400 < ttl <= 30 * 86400


def test_first_message_with_code_links_the_click_language_flow_and_known_answers(client: Any, runtime: Runtime) -> None:
    _, text = _click(client, "dental-de", "utm_content=carousel")
    conv = _conv()
    cleaned = attribute(runtime, conv, _msg(text))
    assert cleaned.text == "Hallo! Ich hätte gern Informationen."
    assert conv.first_touch is not None and conv.first_touch.campaign == "dental-de"
    assert conv.first_touch.utm_content == "carousel" and conv.first_touch.click_ref
    assert (conv.language, conv.language_source) == ("de", "campaign")
    assert conv.flow == "health_tourism_intake" and conv.known == {"treatment": "dental"}


def test_edited_prefilled_text_still_finds_the_code(client: Any, runtime: Runtime) -> None:
    _, text = _click(client, "hair-tr", "utm_lang=en")
    code = text.split("ref: ")[1].rstrip(")")
    conv = _conv()
    cleaned = attribute(runtime, conv, _msg(f"hi, how much is a hair transplant? {code.lower()}"))
    assert cleaned.text == "hi, how much is a hair transplant?"
    assert conv.last_touch is not None and conv.last_touch.click_ref == code
    assert (conv.language, conv.language_source) == ("en", "utm_lang")


def test_click_to_whatsapp_ad_maps_to_its_campaign(runtime: Runtime) -> None:
    referral = AdReferral(source_id="120210000000101", source_type="ad", source_url="https://fb.me/x",
                          headline="زراعة الشعر", ctwa_clid="ARAkLkA8rmlF")
    conv = _conv("971501234567")
    attribute(runtime, conv, _msg("مرحبا", sender_id="971501234567", referral=referral))
    touch = conv.first_touch
    assert touch is not None and touch.campaign == "hair-ar-ctwa" and touch.ctwa_clid == "ARAkLkA8rmlF"
    assert touch.utm_medium == "ctwa" and touch.ad_headline == "زراعة الشعر"
    assert (conv.language, conv.language_source) == ("ar", "ad")


def test_telegram_start_payload_carries_the_code(client: Any, runtime: Runtime) -> None:
    location, code = _click(client, "aesthetic-ru-tg")
    assert location == f"https://t.me/chat2crm_demo_bot?start={code}" and len(code) <= 64
    conv = _conv("555001", "telegram")
    attribute(runtime, conv, _msg(f"/start {code}", channel="telegram", sender_id="555001", kind="start",
                                  start_payload=code))
    assert conv.first_touch is not None and conv.first_touch.campaign == "aesthetic-ru-tg"
    assert conv.first_touch.start_payload == code and conv.language == "ru"


def test_first_and_last_touch_are_both_kept(client: Any, runtime: Runtime) -> None:
    conv = _conv()
    attribute(runtime, conv, _msg(_click(client, "hair-tr")[1]))
    attribute(runtime, conv, _msg(_click(client, "dental-de")[1], message_id="wamid.2"))
    assert conv.first_touch is not None and conv.last_touch is not None
    assert (conv.first_touch.campaign, conv.last_touch.campaign) == ("hair-tr", "dental-de")


def test_no_attribution_detects_the_language(runtime: Runtime) -> None:
    conv = _conv()
    attribute(runtime, conv, _msg("Здравствуйте, сколько стоит имплант зуба?"))
    assert (conv.language, conv.language_source) == ("ru", "detected") and conv.first_touch is None


def test_unclear_text_falls_back_to_the_channel_hint_then_to_asking(runtime: Runtime) -> None:
    telegram = _conv("555002", "telegram")
    attribute(runtime, telegram, _msg("ok", channel="telegram", sender_id="555002",
                                      profile=SenderProfile(language_code="de")))
    assert (telegram.language, telegram.language_source) == ("de", "channel_hint")
    by_phone = _conv("905321112233")
    attribute(runtime, by_phone, _msg("👍", sender_phone="+905321112233"))
    assert (by_phone.language, by_phone.language_source) == ("tr", "channel_hint")
    unknown = _conv("15551234567")
    attribute(runtime, unknown, _msg("?", sender_phone="+33612345678"))
    assert unknown.language is None  # the bot asks with buttons


def test_unknown_campaign_is_a_clear_404(client: Any) -> None:
    response = client.get("/c/<script>alert(1)</script>")
    assert response.status_code == 404 and b"<script>" not in response.data
    assert b"This link is not active" in client.get("/c/nope").data


@pytest.mark.parametrize("query", ["utm_source=<script>x</script>", "utm_lang=english", "fbclid=a b;c",
                                   "utm_term=" + "x" * 300])
def test_malformed_parameters_are_dropped(client: Any, runtime: Runtime, query: str) -> None:
    _, text = _click(client, "hair-tr", query)
    click = load_click(runtime.redis, text.split("ref: ")[1].rstrip(")"))
    assert click is not None
    stored = str(click)
    assert "<script>" not in stored and "english" not in stored and "a b;c" not in stored and "x" * 300 not in stored


def test_site_script_is_served(client: Any) -> None:
    response = client.get("/c.js")
    assert response.status_code == 200 and b"wa.me" in response.data
    assert response.headers["Content-Type"].startswith("application/javascript")


@pytest.mark.parametrize(("text", "expected"), [
    ("Merhaba, hafta içi bir görüşme ayarlamak istiyorum", "tr"), ("Hi, price for hair transplant?", "en"),
    ("Hallo, was kostet eine Zahnbehandlung?", "de"), ("مرحبا، كم سعر زراعة الشعر؟", "ar"),
    ("Здравствуйте, хочу узнать цену", "ru")])
def test_detection_on_short_first_messages(text: str, expected: str) -> None:
    language, confidence = detect_language(text, ["tr", "en", "de", "ar", "ru"])
    assert language == expected and confidence > 0.5
