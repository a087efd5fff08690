"""The pure pieces that keep hostile input out: log lines, client addresses, landing pages, gunicorn's settings."""

from __future__ import annotations

import io
import json
import logging

import pytest

from connector.attribution.links import client_address, landing_page
from connector.logs import JsonFormatter, RedactingFilter, TextFormatter, access_line, escape_controls, redact


@pytest.mark.parametrize(("line", "expected"), [
    ("GET /t/eyJyIjoiMTA0MiJ9.Z1xYcQ.sig-_ 200 0.001s", "GET /t/[token] 200 0.001s"),
    ("GET /t/abc?x=1 403", "GET /t/[token]?x=1 403"),
    ("see https://relay.example/t/eyJy.Zz in the note", "see https://relay.example/t/[token] in the note"),
    ("GET /webhooks/whatsapp?hub.verify_token=s3cret&hub.challenge=1 200",
     "GET /webhooks/whatsapp?hub.verify_token=[token]&hub.challenge=1 200"),
    ("GET /x?token=abc&access_token=EAAb;id_token=z 200", "GET /x?token=[token]&access_token=[token];id_token=[token] 200"),
    ("GET /c/a\r\n12:00:01 INFO forged 200", "GET /c/a\\r\\n12:00:01 INFO forged 200"),
    ("GET /c/a\x00b\x1b[31m\x7f\x85\u2028 404", "GET /c/a\\x00b\\x1b[31m\\x7f\\x85\\u2028 404"),
])
def test_an_access_line_holds_no_token_and_no_control_character(line: str, expected: str) -> None:
    assert access_line(line) == expected


def test_escaping_leaves_ordinary_text_alone() -> None:
    assert escape_controls("POST /webhooks/telegram 200 0.003s — Здравствуйте") == (
        "POST /webhooks/telegram 200 0.003s — Здравствуйте")
    assert redact("/tmp/x and /etc/t/ are paths") == "/tmp/x and /etc/t/ are paths"  # "/t/" alone is no token


def _formatted(formatter: logging.Formatter, message: str, **extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("chat2crm.test-hostile")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning(message, extra=extra)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_the_relays_own_lines_stay_one_line_and_hold_no_token() -> None:
    text = _formatted(TextFormatter(), "refused /t/eyJy.Zz\r\nFAKE 12:00 ERROR x", path="/c/x\n/t/abc")
    assert text.count("\n") == 1 and "eyJy" not in text and "abc" not in text
    assert "refused /t/[token]\\r\\nFAKE" in text and "path=/c/x\\n/t/[token]" in text
    line = _formatted(JsonFormatter(), "refused /t/eyJy.Zz\r\nFAKE", path="/t/abc")
    assert line.count("\n") == 1
    record = json.loads(line)
    assert record["msg"] == "refused /t/[token]\r\nFAKE" and record["path"] == "/t/[token]"


@pytest.mark.parametrize(("peer", "forwarded", "allow", "client"), [
    ("127.0.0.1", None, "127.0.0.1,::1", "127.0.0.1"),
    ("127.0.0.1", "203.0.113.7", "127.0.0.1,::1", "203.0.113.7"),
    # a trusted proxy appends what it saw: what the client wrote on the left is not read
    ("127.0.0.1", "6.6.6.6, 203.0.113.7", "127.0.0.1", "203.0.113.7"),
    # two trusted proxies in a row (a CDN in front of the local proxy)
    ("127.0.0.1", "203.0.113.7, 10.1.2.3", "127.0.0.1,10.0.0.0/8", "203.0.113.7"),
    ("127.0.0.1", "10.1.2.3, 10.1.2.4", "127.0.0.1,10.0.0.0/8", "10.1.2.3"),
    # a peer that is not trusted: its header is its own invention
    ("198.51.100.9", "203.0.113.7", "127.0.0.1,::1", "198.51.100.9"),
    # anything but an address where a trusted proxy would have written one: the peer
    ("127.0.0.1", "203.0.113.7, not-an-address", "127.0.0.1", "127.0.0.1"),
    ("127.0.0.1", "", "127.0.0.1", "127.0.0.1"),
    # "*": any peer is a proxy, no hop is: the last address recorded is the client's
    ("198.51.100.9", "6.6.6.6, 203.0.113.7", "*", "203.0.113.7"),
    ("::1", "2001:db8::7", "127.0.0.1,::1", "2001:db8::7"),
])
def test_the_client_address_is_believed_only_through_trusted_proxies(peer: str, forwarded: str | None, allow: str,
                                                                       client: str) -> None:
    assert client_address(peer, forwarded, allow) == client


@pytest.mark.parametrize(("value", "kept"), [
    ("https://clinic.example/hair?utm_source=ig#top", True),
    ("http://clinic.example:8080/", True),
    ("https://clinic.example/%C3%A9", True),
    ("javascript:alert(1)", False),
    ("ftp://clinic.example/", False),
    ("https://clinic.example/\n", False),
    ("https://clinic.example/\t", False),
    ("https://clinic.example/é", False),
    ("https://clinic.example/<script>", False),
    ("https://user@clinic.example/", False),
    ("https:///path", False),
    ("https://clinic.example:x/", False),
    ("https://clinic.example/" + "a" * 480, False),
    ("", False),
    (None, False),
])
def test_a_landing_page_is_a_plain_http_url_or_nothing(value: str | None, kept: bool) -> None:
    assert landing_page(value) == (value if kept else None)


def test_chat2crm_serve_runs_gunicorn_with_the_relays_settings() -> None:
    from connector import gunicorn_conf
    from connector.cli import gunicorn_command

    command = gunicorn_command("connector.wsgi:app", 8000, 2)
    assert command[command.index("--config") + 1] == "python:connector.gunicorn_conf"
    assert command[command.index("--worker-class") + 1] == "gthread"
    assert gunicorn_conf.logger_class == "connector.gunicorn_conf.SafeLogger"
    assert gunicorn_conf.limit_request_fields == 50 and gunicorn_conf.timeout == 30
