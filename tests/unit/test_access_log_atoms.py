"""gunicorn's access line as ``chat2crm serve`` writes it: the relay's logger builds only the atoms its line
uses, and the line comes out as gunicorn's own atoms would have made it, with what a client chose (the
method, the path) redacted and on one line, and the status and seconds as they are."""

from __future__ import annotations

import datetime
import logging
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from connector.gunicorn_conf import SafeLogger
from connector.logs import ACCESS_LOG_FORMAT


def _logger(log_format: str) -> SafeLogger:
    cfg = Config()
    cfg.set("access_log_format", log_format)
    return SafeLogger(cfg)


@pytest.mark.parametrize(("method", "path", "status", "took"), [
    ("POST", "/webhooks/whatsapp", "200 OK", datetime.timedelta(microseconds=1234)),
    ("GET", "/favicon.ico", "403 FORBIDDEN", datetime.timedelta(seconds=2, microseconds=5)),
    ("GET", "/healthz", 200, datetime.timedelta(0)),
])
def test_the_relay_s_line_is_gunicorn_s_line(method: str, path: str, status: object,
                                             took: datetime.timedelta) -> None:
    logger = _logger(ACCESS_LOG_FORMAT)
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "RAW_URI": path, "SERVER_PROTOCOL": "HTTP/1.1",
               "QUERY_STRING": "", "REMOTE_ADDR": "10.0.0.1", "HTTP_USER_AGENT": "facebookexternalua"}
    resp = SimpleNamespace(status=status, sent=12, headers=[("Content-Type", "application/json")])
    req = SimpleNamespace(headers=[("HOST", "relay")])
    ours = logger.atoms(resp, req, environ, took)
    theirs = Logger.atoms(logger, resp, req, environ, took)
    assert set(ours) == {"m", "U", "s", "L"} and len(theirs) > 20
    wrap = logger.atoms_wrapper_class
    assert ACCESS_LOG_FORMAT % wrap(ours) == ACCESS_LOG_FORMAT % wrap(theirs)


def test_another_line_format_gets_every_atom() -> None:
    logger = _logger('%(h)s "%(r)s" %(s)s %({user-agent}i)s')
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "10.0.0.1", "HTTP_USER_AGENT": "probe"}
    resp = SimpleNamespace(status="200 OK", sent=2, headers=[])
    req = SimpleNamespace(headers=[("USER-AGENT", "probe")])
    atoms = logger.atoms(resp, req, environ, datetime.timedelta(0))
    assert logger.cfg.access_log_format % logger.atoms_wrapper_class(atoms) == '10.0.0.1 "GET / HTTP/1.1" 200 probe'


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _written(method: str, path: str, status: str, took: datetime.timedelta) -> str:
    """The access line the relay's logger writes for one request (through its filters, as gunicorn logs it)."""
    cfg = Config()
    cfg.set("access_log_format", ACCESS_LOG_FORMAT)
    cfg.set("accesslog", "-")
    logger = SafeLogger(cfg)
    lines = _Lines()
    logger.access_log.addHandler(lines)
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "RAW_URI": path, "SERVER_PROTOCOL": "HTTP/1.1",
               "QUERY_STRING": "", "REMOTE_ADDR": "10.0.0.1"}
    logger.access(SimpleNamespace(status=status, sent=2, headers=[]), SimpleNamespace(headers=[]), environ, took)
    (line,) = lines.lines
    return line


def test_a_webhook_s_line_keeps_its_status_and_seconds() -> None:
    line = _written("POST", "/webhooks/whatsapp", "200 OK", datetime.timedelta(microseconds=1234))
    assert line == "POST /webhooks/whatsapp 200 0.001234s"
    assert _written("GET", "/readyz", "503 SERVICE UNAVAILABLE",
                    datetime.timedelta(seconds=12, microseconds=345678)) == "GET /readyz 503 12.345678s"


@pytest.mark.parametrize(("path", "written"), [
    ("/t/4f9c2e1d7a", "/t/[token]"),  # a transcript link's token
    ("/+905321112233", "/[phone …33]"),  # a phone number in the path (masked with the status, before)
    ("/hans@muster.de", "/[email]"),
    ("/x\r\nPOST /fake 200 0.1s", "/x\\r\\nPOST /fake 200 0.1s"),  # an injected line stays on this one
])
def test_what_a_client_puts_in_the_path_is_still_redacted_and_on_one_line(path: str, written: str) -> None:
    assert _written("GET", path, "404 NOT FOUND", datetime.timedelta(microseconds=900)) == f"GET {written} 404 0.000900s"
