"""What a patient writes reaches every CRM's note escaped where the note is HTML, and reads as written.

A Telegram patient goes through the health-tourism intake and leaves a note with markup and an
ampersand; the note each CRM emulator holds is read back as an agent would see it: HubSpot's
``hs_note_body`` and Pipedrive's ``content`` are HTML, Salesforce's Note ``Body`` is plain text.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import requests

from tests.e2e.conftest import Stack

CRMS = ["hubspot", "salesforce", "pipedrive"]
WRITTEN = "<script>alert(1)</script> Tom & Jerry"


@pytest.fixture(params=CRMS)
def crm_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def shown(html: str) -> str:
    """An HTML note's text as a CRM shows it (markup and comments are not text)."""
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return "".join(reader.parts)


def test_a_patients_markup_is_escaped_in_html_notes_and_reads_as_written(stack: Stack) -> None:
    crm = stack.crm
    click = requests.get(f"{stack.relay_url}/c/aesthetic-ru-tg", allow_redirects=False, timeout=5)
    user = stack.telegram.user(555003, "Мария Иванова", language_code="ru")
    assert user.start(click.headers["Location"].rsplit("start=", 1)[1]) == 200
    stack.work()
    for kind, value in [("press", "dental"), ("text", "Москва, Россия"), ("text", "10-17 марта"),
                        ("text", "maria@example.ru"), ("press", "ru"), ("press", "yes"), ("press", "__skip__"),
                        ("text", WRITTEN)]:
        assert (user.send_text(value) if kind == "text" else user.press(value)) == 200
        stack.work()
    (note,) = crm.notes()
    if crm.name == "salesforce":  # a classic Note's Body is plain text: the characters as written, no entities
        text = note
        assert WRITTEN in text and "&amp;" not in text and "&lt;" not in text
    else:
        assert "<script>" not in note and "&lt;script&gt;alert(1)&lt;/script&gt; Tom &amp; Jerry" in note
        text = shown(note)
        assert WRITTEN in text
    assert re.search(r"Travel dates: 10–17 March 20\d\d \(10-17 марта\)", text), text
    assert "Consent: yes" in text and "Contact language: Русский" in text
    for internal in ("{'start'", "True", "travel_dates", "_label"):
        assert internal not in text, internal
