"""`chat2crm demo`: starts on embedded defaults, plays a conversation through the demo page's API, shows it
in the CRM half (with HubSpot, the patient's thread in the agents' inbox, and an agent's reply on the phone),
and leaves no process behind after Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.test_docs_commands import _free_port

pytestmark = pytest.mark.weight(100)  # seconds, about: see pytest_collection_modifyitems

#: per CRM: the first stage of the shipped mapping, and a path the relay's writes go to
EXPECTED = {"hubspot": ("New", "/crm/v3/objects/deals"),
            "pipedrive": ("New enquiry", "/v1/leads"), "salesforce": ("New", "/composite")}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"


def _wait_for_banner(proc: subprocess.Popen[str], output: list[str]) -> None:
    """Read the demo's output into ``output`` until it says it is running (or ends)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        output.append(line)
        if "chat2crm is running" in line or not line:
            break


def _play_a_conversation(base: str, crm: str) -> None:
    """Play the health intake through the page's API up to a handoff; check the chat and the CRM halves."""
    stage, write_path = EXPECTED[crm]
    patient = "905329990001"
    exchange = ["Merhaba, hafta içi bir görüşme ayarlamak istiyorum"]
    # The demo's default flow is the health intake; play it through the page's API with buttons.
    requests.post(f"{base}/demo/api/send", json={"channel": "whatsapp", "patient": patient, "text": exchange[0]},
                  timeout=10)
    deadline = time.monotonic() + 30
    messages: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        messages = requests.get(f"{base}/demo/api/chat?channel=whatsapp&patient={patient}", timeout=5).json()[
            "messages"]
        if any(m["direction"] == "out" for m in messages):
            break
        time.sleep(0.3)
    assert messages[0]["direction"] == "in" and messages[0]["text"] == exchange[0]
    assert any(m["direction"] == "out" for m in messages)
    requests.post(f"{base}/demo/api/send", json={"channel": "whatsapp", "patient": patient, "text": "temsilci"},
                  timeout=10)
    deadline = time.monotonic() + 30
    view: dict[str, Any] = {"records": []}
    while time.monotonic() < deadline and not (view["records"] and view["tasks"]):
        view = requests.get(f"{base}/demo/api/crm", timeout=5).json()
        time.sleep(0.3)
    assert len(view["contacts"]) == 1 and len(view["records"]) == 1 and len(view["tasks"]) == 1
    assert view["crm"] == crm and view["records"][0]["stage"] == stage
    assert view["notes"] and any(c["path"].endswith(write_path) for c in view["calls"])  # type: ignore[index]
    config = requests.get(f"{base}/demo/api/config", timeout=5).json()
    assert config["inbox"] is True  # every shipped CRM has the agents' inbox in the demo
    assert config["inbox_kind"] == ("panel" if crm == "pipedrive" else "threads")
    if crm == "hubspot":
        _an_agent_answers(base, patient, exchange[0])
    elif crm == "pipedrive":  # the relay's panel, in the emulator's person view
        assert requests.get(f"{base}/demo/api/inbox", timeout=5).status_code == 404
        panel = requests.get(f"{base}/demo/api/inbox/panel", params={"patient": patient}, timeout=5).json()
        assert panel["patient"] == patient and f"/_emulator/ui/person/{panel['person']}?user=" in panel["url"]


def _an_agent_answers(base: str, patient: str, first: str) -> None:
    """The handed-over patient's thread is in the inbox with the history; an agent's reply reaches the phone under
    the agent's name, delivered."""
    deadline = time.monotonic() + 30
    thread: dict[str, Any] | None = None
    while time.monotonic() < deadline and not (thread and any("temsilci" in m["text"] for m in thread["messages"])):
        listed = requests.get(f"{base}/demo/api/inbox", timeout=5).json()["threads"]
        mine = next((t for t in listed if t["patient"] == patient), None)
        if mine:
            thread = requests.get(f"{base}/demo/api/inbox?thread={mine['id']}", timeout=5).json()["thread"]
        time.sleep(0.3)
    assert thread is not None and thread["status"] == "OPEN" and thread["channel"] == "whatsapp", thread
    texts = [m["text"] for m in thread["messages"]]
    assert texts[0] == first and "temsilci" in texts and thread["messages"][0]["who"] == "patient", texts
    assert any(m["who"] == "bot" for m in thread["messages"])
    answer = requests.post(f"{base}/demo/api/inbox/threads/{thread['id']}/reply", json={"text": "Merhaba, ben Deniz."},
                           timeout=10)
    assert answer.status_code == 201, answer.text
    deadline = time.monotonic() + 30
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline and shown.get("status") != "delivered":
        messages = requests.get(f"{base}/demo/api/chat?channel=whatsapp&patient={patient}", timeout=5).json()["messages"]
        shown = next((m for m in messages if m["text"] == "Merhaba, ben Deniz."), {})
        time.sleep(0.3)
    assert shown.get("agent") == "Deniz Koordinatör" and shown.get("status") == "delivered", shown


@pytest.mark.parametrize("crm", sorted(EXPECTED))
def test_demo_runs_the_whole_product_and_stops_cleanly(crm: str) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "demo", "--port", str(port), "--crm", crm], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_banner(proc, output)
        assert any(f"open {base}/demo" in line for line in output), "".join(output)
        inbox = [line.split("inbox", 1)[1].strip() for line in output if line.startswith("    inbox ")]
        if crm == "hubspot":  # the app installed, its channel registered and connected, the closed threads' webhook
            assert inbox[0].startswith("Installed: chat2crm is connected to hubspot account"), inbox
            for words in ("custom channel", "channel account", "webhook"):
                assert any(words in line for line in inbox), inbox
            assert not any("chat2crm_" in line or "MISSING" in line for line in inbox), inbox  # no field lines
        elif crm == "salesforce":  # the package checked; the listener runs beside the web app and the worker
            assert "inbox: ok Chat2CRM_Message__c and its 13 fields" in inbox, inbox
            assert any(line.startswith("    listener ") for line in output), "".join(output)
            assert not any("MISSING" in line for line in inbox), inbox
        else:  # the app installed by OAuth, then its set-up (what the admin does in the Developer Hub)
            assert inbox[0].startswith("Installed: chat2crm is connected to pipedrive account"), inbox
            assert not any("MISSING" in line for line in inbox), inbox
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert "chat2crm demo" in requests.get(f"{base}/demo", timeout=5).text
        _play_a_conversation(base, crm)
    finally:
        stopped_cleanly(proc, output)


def stopped_cleanly(proc: subprocess.Popen[str], output: list[str]) -> str:
    """Ctrl-C the demo, then check that it said it left nothing running and that no process it started lives
    on. Returns everything it printed."""
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    output.append(rest)
    text = "".join(output)
    assert proc.returncode == 0, text
    assert "nothing left running" in text
    assert "Traceback" not in text, text
    pids = [int(p) for p in re.findall(r"pid (\d+)", text)]
    assert len(pids) >= 3  # redis, web, worker
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and [pid for pid in pids if _alive(pid)]:
        time.sleep(0.2)
    assert [pid for pid in pids if _alive(pid)] == []
    return text
