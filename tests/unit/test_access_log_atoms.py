"""gunicorn's access line as ``chat2crm serve`` writes it: the relay's logger builds only the atoms its line
uses, and the line comes out as gunicorn's own atoms would have made it."""

from __future__ import annotations

import datetime
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
    ("GET", "/t/abc", "403 FORBIDDEN", datetime.timedelta(seconds=2, microseconds=5)),
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
