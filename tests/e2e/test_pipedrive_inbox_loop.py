"""The whole loop with Pipedrive's panel, over real HTTP: the relay, real Redis, rq workers, the WhatsApp
emulator (with its status webhooks) and the Pipedrive emulator with the relay's app installed by OAuth.

A patient talks to the bot and asks for a person; the lead and the bot's part reach Pipedrive; an agent
answers from the panel (text, then a file); the reply reaches the patient from the clinic's number and its
status comes back to the panel and as a note; the patient's answer lands in the thread (and as a note)
without a bot turn; a double-submitted or retried reply is sent once; a reply outside WhatsApp's 24-hour
window is refused with the reason in the panel and a note; the agent closes the conversation and the bot
answers the patient's next message. What each direction costs in Pipedrive's API tokens is measured.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import requests

from connector import conversations
from connector.conversations import CONVERSATION
from core.models import utcnow
from tests.e2e.pipedrive_app import PATIENT, PipedriveLoop, pipedrive_loop_fixture  # noqa: F401 - the fixture


def _texts(payloads: list[dict[str, Any]]) -> list[str]:
    out = []
    for payload in payloads:
        if payload["type"] == "text":
            out.append(payload["text"]["body"])
        elif payload["type"] == "interactive":
            out.append(payload["interactive"]["body"]["text"])
    return out


def test_an_agent_answers_from_the_panel_and_the_patient_answers_back_until_it_is_closed(
        pipedrive_loop: PipedriveLoop) -> None:
    loop = pipedrive_loop
    patient = loop.whatsapp.patient(PATIENT, "Ayşe Yılmaz")
    person = loop.handed_over(patient)
    shown = loop.thread(person)
    assert shown["conversation"]["channel"] == "whatsapp" and shown["conversation"]["window_open"]
    history = [m for m in shown["messages"] if m.get("history")]
    assert history[0]["direction"] == "incoming" and "burun estetiği" in history[0]["text"]
    assert any(m["direction"] == "outgoing" for m in history)  # the bot's answers
    assert loop.pipedrive.count("persons") == 1 and loop.pipedrive.count("leads") == 1
    before = len(loop.sent_to_patient())

    # the agent answers from the panel: the reply goes out from the clinic's number, once
    spent = loop.pipedrive.tokens_used
    key = "4b2f0a54-6a5e-4f43-9d38-1d2b8a0c7e11"
    answers = [loop.reply(person, key, "Merhaba Ayşe Hanım, ben Deniz. Size nasıl yardımcı olabilirim?")
               for _ in range(2)]  # a double submit
    assert [a.status_code for a in answers] == [202, 200]
    reply_id = answers[0].json()["id"]
    loop.until(lambda: len(loop.sent_to_patient()) > before, "the agent's reply reaches the patient")
    assert _texts(loop.sent_to_patient()[before:]) == ["Merhaba Ayşe Hanım, ben Deniz. Size nasıl yardımcı olabilirim?"]
    loop.until(lambda: loop.shown(person, reply_id)["status"] in ("sent", "delivered"), "the panel shows it sent")
    assert any("✅ sent" in n and "ben Deniz" in n for n in loop.notes())
    reply_cost = loop.pipedrive.tokens_used - spent
    patient.read_all()
    loop.until(lambda: loop.shown(person, reply_id)["status"] == "read", "the panel shows the reply read")
    assert loop.pipedrive.tokens_used - spent == reply_cost  # delivered and read cost nothing

    # the panel retries the same reply after a lost answer: nothing is sent twice
    assert loop.reply(person, key, "Merhaba Ayşe Hanım, ben Deniz. Size nasıl yardımcı olabilirim?").json()[
        "status"] == "duplicate"
    loop.work()
    assert len(loop.sent_to_patient()) == before + 1

    # the patient answers: the answer is in the panel and a note, and the bot says nothing
    spent = loop.pipedrive.tokens_used
    patient.send_text("Fiyat ve tarihler hakkında bilgi alabilir miyim?")
    loop.until(lambda: any("Fiyat ve tarihler" in m["text"] for m in loop.thread(person)["messages"]),
               "the patient's answer lands in the panel")
    assert any("Fiyat ve tarihler" in n for n in loop.notes())
    message_cost = loop.pipedrive.tokens_used - spent
    assert len(loop.sent_to_patient()) == before + 1

    # the agent sends a file from the panel: the patient gets it as a document, from the relay's short-lived link
    made = loop.reply(person, "0d1c6f5e-8f1b-4c1e-9a7e-6b5c4d3e2f10", "Fiyat listemiz ekte.",
                      files={"file": ("fiyat-listesi.pdf", b"%PDF-1.4 price list\n%%EOF\n", "application/pdf")})
    assert made.status_code == 202, made.text
    loop.until(lambda: any(p["type"] == "document" for p in loop.sent_to_patient()), "the file reaches the patient")
    document = next(p for p in loop.sent_to_patient() if p["type"] == "document")
    assert document["document"]["filename"] == "fiyat-listesi.pdf"
    assert document["document"]["caption"] == "Fiyat listemiz ekte."
    assert document["document"]["link"].startswith(f"{loop.relay_url}/crm/pipedrive/files/")
    assert requests.get(document["document"]["link"], timeout=5).content == b"%PDF-1.4 price list\n%%EOF\n"

    # the agent closes the conversation: the bot answers the patient's next message again
    assert loop.close(person).json() == {"released": True}
    count = len(loop.sent_to_patient())
    patient.send_text("Merhaba, yeni bir sorum var")
    loop.until(lambda: len(loop.sent_to_patient()) > count, "the bot answers after the conversation was closed")
    assert loop.pipedrive.count("persons") == 1
    assert all(m["text"] != "Merhaba, yeni bir sorum var" for m in loop.thread(person)["messages"])
    # what the directions cost in the company's API tokens (docs/agents.md gives these)
    assert message_cost == 10, message_cost  # one note
    assert reply_cost == 10, reply_cost  # one note once sent; the panel's access check is kept 5 minutes


def test_a_reply_outside_whatsapps_window_is_refused_with_the_reason_in_the_panel_and_a_note(
        pipedrive_loop: PipedriveLoop) -> None:
    loop = pipedrive_loop
    patient = loop.whatsapp.patient(PATIENT, "Hans Müller")
    person = loop.handed_over(patient)
    conversation = conversations.load(loop.runtime, loop.key)
    assert conversation is not None
    # the patient last wrote 25 hours ago, and no template is configured for their language
    conversation.last_inbound_at = utcnow() - timedelta(hours=25)
    loop.runtime.redis.set(CONVERSATION.key(loop.key), conversation.model_dump_json(), keepttl=True)
    assert loop.thread(person)["conversation"]["window_open"] is False  # the panel warns before sending
    before = len(loop.sent_to_patient())
    made = loop.reply(person, "9e8d7c6b-5a49-4838-a271-605f4e3d2c1b", "Hâlâ ilgileniyor musunuz?")
    assert made.status_code == 202
    reply_id = made.json()["id"]
    loop.until(lambda: loop.shown(person, reply_id)["status"] == "failed", "the panel shows the reply refused")
    assert "24 hours" in loop.shown(person, reply_id)["reason"]
    assert any("NOT sent" in n and "24 hours" in n for n in loop.notes())
    assert len(loop.sent_to_patient()) == before
