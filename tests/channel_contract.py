"""The channels' shared contract: every channel plug-in must pass the same behaviour, against its emulator.

A test module subclasses :class:`ChannelContract` and provides the fixture ``env`` (a :class:`ChannelEnv`:
the plug-in, the relay's app on real Redis, and its emulator over real HTTP). The contract checks the
plug-in's webhook (known-answer proofs, a forged or missing proof refused, a redelivery dropped, every
message kind the channel has understood), its client (options degrade as the channel's capabilities say:
buttons, a list, or numbered text) and its error table (the emulator's faults land in the error tree).
Webhook bodies are the emulator's own, captured byte for byte (:class:`Capture`), so the relay is tested
with what the vendor sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from connector import received
from connector.channels.base import ATTEMPTS, ChannelClient
from connector.channels.plugin import ChannelPlugin, ErrorTable, Outcome, UnreachableError, options_style
from connector.inbox import DUE, ready_count
from connector.inbox import messages as inbox_messages
from connector.runtime import Runtime
from core.errors import AuthError, FatalError, RetryableError, SkippableError
from core.models import Conversation, Option, Reply
from tests.intake import kept, read
from tests.integration.channel_servers import Receiver, Webhook


@dataclass
class Capture:
    """Webhooks an emulator sent to a receiver standing where the relay stands, taken one at a time."""

    receiver: Receiver

    def one(self, action: Callable[[], Any]) -> Webhook:
        """The webhook ``action`` made the emulator send."""
        before = len(self.receiver.received)
        action()
        assert len(self.receiver.received) == before + 1, "the action sent no webhook (or more than one)"
        return self.receiver.received[-1]


@dataclass
class ChannelEnv:
    """What the contract needs from one channel."""

    plugin: ChannelPlugin
    runtime: Runtime
    #: the relay's app, as Flask's test client
    relay: Any
    capture: Capture
    #: actions that make the emulator send one webhook each, by the message kind the relay must read from it
    kinds: dict[str, Callable[[], Any]]
    #: (raw body, proof header value) the relay must accept with its configured secret, computed apart
    known_answers: list[tuple[bytes, str]]
    #: the plug-in's client pointed at the emulator, and a conversation it can send to
    client: ChannelClient
    conversation: Conversation
    #: how each message the emulator received since the test began showed options: text, buttons, list, numbered
    styles: Callable[[], list[str]]
    #: make the next call fail: a kind the emulator knows
    fail_next: Callable[[int, str], None]
    #: fault kind → the error-tree exception the client raises for it
    faults: dict[str, type[Exception]] = field(default_factory=dict)
    #: make the conversation's patient unreachable on the channel (they blocked the business), where it can
    make_unreachable: Callable[[], Any] | None = None


def queued(runtime: Runtime) -> int:
    """Messages waiting in every conversation's inbox."""
    return len(waiting(runtime))


def waiting(runtime: Runtime) -> list[Any]:
    """Every message waiting, inbox by inbox (a channel's intake, ``@<channel>``, holds bodies not read yet)."""
    return [m for k in runtime.redis.zrange(DUE.key(), 0, -1) if not received.is_intake(k.decode())
            for m in inbox_messages(runtime, k.decode())]


class ChannelContract:
    """Subclass and provide the ``env`` fixture."""

    def post(self, env: ChannelEnv, hook: Webhook, proof: str | None = None) -> Any:
        """POST ``hook`` to the plug-in's webhook: with its own headers, or with the proof replaced
        (``proof`` given) or dropped (``proof=""``)."""
        name = env.plugin.proof_header.lower()
        headers = {k: v for k, v in hook.headers.items()
                   if k.lower() in (name, "content-type") and not (proof is not None and k.lower() == name)}
        if proof:
            headers[env.plugin.proof_header] = proof
        return env.relay.post(f"/webhooks/{env.plugin.name}", data=hook.raw, headers=headers)

    # -- the webhook ---------------------------------------------------------------------------
    def test_known_answer_proofs_are_accepted(self, env: ChannelEnv) -> None:
        for raw, proof in env.known_answers:
            response = self.post(env, Webhook(raw, {"Content-Type": "application/json"}), proof)
            assert response.status_code == 200, response.get_data(as_text=True)
            flipped = proof[:-1] + ("0" if proof[-1] != "0" else "1")
            assert self.post(env, Webhook(raw, {"Content-Type": "application/json"}), flipped).status_code == 403

    def test_a_forged_or_missing_proof_is_refused_and_nothing_queued(self, env: ChannelEnv) -> None:
        hook = env.capture.one(env.kinds["text"])
        assert self.post(env, hook, "forged-proof").status_code == 403
        assert self.post(env, hook, "").status_code == 401
        assert queued(env.runtime) == 0 and ready_count(env.runtime) == 0  # nor kept for reading

    def test_a_redelivered_message_is_queued_once(self, env: ChannelEnv) -> None:
        hook = env.capture.one(env.kinds["text"])
        first, again = self.post(env, hook), self.post(env, hook)
        assert kept(first) and (again.status_code, again.json) == (200, {"received": True, "duplicate": True})
        assert read(env.runtime)["queued"] == 1
        # the same message in a body read again (a job process killed after it queued it): queued once
        repeat = received.handle(env.runtime, received.frame(env.plugin.name, {}, hook.raw))
        assert (repeat["queued"], repeat["duplicates"]) == (0, 1)
        assert queued(env.runtime) == 1

    def test_every_message_kind_is_understood(self, env: ChannelEnv) -> None:
        assert {"text", "location", "media"} <= set(env.kinds), "a channel has at least text, location and files"
        for kind, action in env.kinds.items():
            before = {m.message_id for m in waiting(env.runtime)}
            response = self.post(env, env.capture.one(action))
            assert kept(response), (kind, response.json)
            assert read(env.runtime)["queued"] == 1, kind
            new = [m for m in waiting(env.runtime) if m.message_id not in before]
            assert [m.kind for m in new] == [kind]
            assert all(m.channel == env.plugin.network for m in new)

    def test_a_body_that_is_not_the_vendors_is_refused(self, env: ChannelEnv) -> None:
        hook = env.capture.one(env.kinds["text"])
        response = self.post(env, Webhook(b"{", hook.headers))
        # a proof over the body fails at the door; a proof that does not cover it (a secret token) lets the
        # body in, and reading it drops it
        assert response.status_code in (200, 403)
        assert read(env.runtime)["rejected"] == (1 if response.status_code == 200 else 0)
        assert queued(env.runtime) == 0

    # -- the client ----------------------------------------------------------------------------
    def test_options_degrade_as_the_channel_can_show_them(self, env: ChannelEnv) -> None:
        replies = [Reply(text="Plain"),
                   Reply(text="Two?", options=[Option(id="y", title="Yes"), Option(id="n", title="No")]),
                   Reply(text="Eight?", options=[Option(id=f"o{i}", title=f"Option {i}") for i in range(8)]),
                   Reply(text="Long titles?", options=[Option(id=f"l{i}", title=f"A rather long option title {i}")
                                                       for i in range(12)])]
        env.client.send(env.conversation, replies)
        expected = [options_style(reply, env.plugin.capabilities) for reply in replies]
        assert env.styles()[-len(replies):] == expected
        assert expected[-1] == "numbered" or env.plugin.capabilities.buttons >= 12

    @pytest.mark.parametrize("fault", ["429", "500"])
    def test_transient_faults_are_retried(self, env: ChannelEnv, fault: str) -> None:
        env.fail_next(ATTEMPTS, fault)  # a 500 is tried again in place: every try fails
        with pytest.raises(RetryableError):
            env.client.send(env.conversation, [Reply(text="hello")])

    def test_every_emulated_fault_lands_in_the_error_tree(self, env: ChannelEnv) -> None:
        for fault, error in env.faults.items():
            env.fail_next(1, fault)
            with pytest.raises(error):
                env.client.send(env.conversation, [Reply(text="hello")])

    def test_an_unreachable_patient_is_told_apart(self, env: ChannelEnv) -> None:
        if env.make_unreachable is None:
            pytest.skip("the channel tells of an unreachable patient only later (a failed status)")
        env.make_unreachable()
        with pytest.raises(UnreachableError) as info:
            env.client.send(env.conversation, [Reply(text="hello")])
        assert info.value.details["outcome"] == "unreachable"

    # -- the error table -----------------------------------------------------------------------
    def test_the_error_table_gives_each_outcome_its_error(self, env: ChannelEnv) -> None:
        table: ErrorTable = env.plugin.errors
        expected = {Outcome.RETRY: RetryableError, Outcome.GIVE_UP: FatalError, Outcome.UNREACHABLE: UnreachableError,
                    Outcome.AUTH: AuthError, Outcome.WINDOW: SkippableError}
        assert table.rules, "a channel names its vendor's error codes"
        for code, rule in table.rules.items():
            error = table.error(code, 400)
            assert type(error) is expected[rule.outcome], code
            assert rule.reason and rule.reason in str(error)
        assert isinstance(table.error("not-a-code", 503), RetryableError)
        assert isinstance(table.error("not-a-code", 401), AuthError)

    def test_the_plugin_is_registered(self, env: ChannelEnv) -> None:
        from connector.channels import plugin as plugins

        assert env.plugin.name in plugins.available()
        assert type(plugins.load(env.plugin.name)) is type(env.plugin)


def style_of_whatsapp(payload: dict[str, Any]) -> str:
    """How a Cloud API message body shows options."""
    if payload.get("type") == "interactive":
        return "buttons" if payload["interactive"]["type"] == "button" else "list"
    text = str(payload.get("text", {}).get("body", ""))
    return "numbered" if "\n1. " in text else "text"


def style_of_telegram(params: dict[str, Any]) -> str:
    """How a ``sendMessage`` call shows options."""
    markup = params.get("reply_markup")
    markup = json.loads(markup) if isinstance(markup, str) else markup
    if isinstance(markup, dict) and markup.get("inline_keyboard"):
        return "buttons"
    return "numbered" if "\n1. " in str(params.get("text", "")) else "text"
