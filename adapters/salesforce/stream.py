"""Agents' replies from Salesforce as a stream: a Pub/Sub API subscription to the Change Data Capture channel
of the chat2crm message object (:class:`ChangeStream`, read by ``chat2crm listen salesforce``).

One subscription is one ``Subscribe`` call, a bidirectional gRPC stream over TLS to the Pub/Sub endpoint
(``SALESFORCE_PUBSUB_ENDPOINT``), authenticated by the call metadata ``accesstoken``, ``instanceurl`` and
``tenantid`` (the org id) of the adapter's session. It starts after a stored replay id (``CUSTOM``), or at
the tip (``LATEST``), or at the oldest event Salesforce keeps (``EARLIEST``); it asks for
:data:`NUM_REQUESTED` events and asks for as many again as each batch is taken (flow control: Salesforce
never sends more than was asked for). Each event's Avro schema is read once by its id (``GetSchema``)
and kept. Each ``FetchResponse`` becomes one :class:`~adapters.inbox.StreamBatch`: its events read as
the relay's inbox events (:mod:`adapters.salesforce.changes`; a reply whose event does not hold it is read
over REST first, with its files), and its position (the last event's replay id, or the keep-alive's
latest replay id).

Errors are Salesforce's gRPC statuses with an ``error-code`` trailer: a replay id Salesforce no longer
has (``…replayid.corrupted``, older than the 72 hours it keeps events) is :class:`StreamPositionLost`;
an expired session is retried with a new one; unavailability and internal errors are retryable; a
topic that does not exist (the package is not deployed) or a subscription refused is fatal.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from adapters.inbox import InboxStream, StreamBatch, StreamPositionLost
from adapters.salesforce.changes import ReadRecord, Schemas, actions
from adapters.salesforce.messages import OBJECT, TOPIC
from adapters.salesforce.session import SalesforceSession
from core import metrics
from core.errors import FatalError, RetryableError
from core.inbox import AgentReply, InboxEvent

log = logging.getLogger("chat2crm.salesforce.stream")

#: how many events a subscription asks for (the most Salesforce allows outstanding)
NUM_REQUESTED = 100
PREFIX = "sfdc.platform.eventbus.grpc."
#: how long the relay waits when the org's daily event delivery allocation is spent
LIMIT_BACKOFF_SECONDS = 900.0

#: reads the records of replies whose change events did not hold them: record id → reply (None: not one)
Complete = Callable[[list[ReadRecord]], dict[str, AgentReply | None]]


class ChangeStream(InboxStream):
    """The message object's change events, as the relay's inbox events.

    Args:
        session: the adapter's session (its token and instance URL authenticate the calls).
        endpoint: the Pub/Sub API, ``host:port``.
        complete: reads replies whose events did not hold them (the inbox's REST reads).
        topic: the channel (the message object's change events).
        num_requested: how many events to ask for at a time.
        timeout: seconds a GetTopic or GetSchema call may take.
    """

    def __init__(self, session: SalesforceSession, *, endpoint: str, complete: Complete, topic: str = TOPIC,
                 num_requested: int = NUM_REQUESTED, timeout: float = 20.0) -> None:
        if not 1 <= num_requested <= NUM_REQUESTED:
            raise ValueError(f"num_requested must be 1-{NUM_REQUESTED}, got {num_requested!r}")
        self.session = session
        self.endpoint = endpoint
        self.complete = complete
        self.topic = topic
        self.num_requested = num_requested
        self.timeout = timeout
        self.schemas = Schemas()
        #: gRPC calls made (GetTopic, GetSchema, Subscribe), for tests and benchmarks
        self.calls = 0
        self._relogin = False
        self._closed = threading.Event()
        self._current: Any = None

    # -- the connection --------------------------------------------------------------------------
    def _channel(self) -> Any:
        import grpc

        # the CA bundle the HTTPS calls trust (requests reads REQUESTS_CA_BUNDLE), else gRPC's own roots
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
        roots = None
        if bundle:
            with open(bundle, "rb") as handle:
                roots = handle.read()
        return grpc.secure_channel(self.endpoint, grpc.ssl_channel_credentials(root_certificates=roots))

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata Salesforce authenticates a call with (a new session after one was refused)."""
        login = self.session.login(fresh=True) if self._relogin else (self.session.current or self.session.login())
        self._relogin = False
        org, _ = self.session.identity()
        # the token starts with the org's 15-character id: the fallback when the identity URL was not seen
        tenant = org or login.token.partition("!")[0]
        return (("accesstoken", login.token), ("instanceurl", login.instance_url), ("tenantid", tenant))

    def _rpc(self, operation: str, send: Callable[[], Any]) -> Any:
        """One unary call, counted and measured; its failure as the relay's error."""
        import grpc

        self.calls += 1
        outcome = "ok"
        try:
            return send()
        except grpc.RpcError as exc:
            outcome = str(exc.code().name) if hasattr(exc, "code") else "error"
            raise self._error(exc) from None
        finally:
            self._count(operation, outcome)

    def _count(self, operation: str, outcome: str, amount: float = 1) -> None:
        if self.session.redis is not None:
            metrics.incr(self.session.redis, "crm_calls", amount, adapter="salesforce", operation=operation,
                         outcome=outcome)

    def topic_info(self) -> Any:
        """The channel as ``GetTopic`` describes it (its schema id; whether the user may subscribe).

        Raises:
            As :meth:`batches`, but never StreamPositionLost.
        """
        from adapters.salesforce.pubsub import pubsub_api_pb2 as pb
        from adapters.salesforce.pubsub import pubsub_api_pb2_grpc as pb_grpc

        channel = self._channel()
        try:
            stub = pb_grpc.PubSubStub(channel)
            return self._rpc("pubsub_topic", lambda: stub.GetTopic(pb.TopicRequest(topic_name=self.topic),
                                                                   metadata=self._metadata(), timeout=self.timeout))
        finally:
            channel.close()

    def _schema(self, stub: Any, schema_id: str) -> None:
        from adapters.salesforce.pubsub import pubsub_api_pb2 as pb

        if schema_id in self.schemas:
            return
        info = self._rpc("pubsub_schema", lambda: stub.GetSchema(pb.SchemaRequest(schema_id=schema_id),
                                                                 metadata=self._metadata(), timeout=self.timeout))
        try:
            self.schemas.add(schema_id, info.schema_json)
        except ValueError as exc:
            raise FatalError(f"salesforce: the change event schema cannot be read: {exc}") from None

    # -- the subscription ------------------------------------------------------------------------
    def batches(self, position: bytes | None, *, earliest: bool = False) -> Iterator[StreamBatch]:
        import grpc

        from adapters.salesforce.pubsub import pubsub_api_pb2 as pb
        from adapters.salesforce.pubsub import pubsub_api_pb2_grpc as pb_grpc

        self._closed.clear()
        preset = pb.ReplayPreset.CUSTOM if position else pb.ReplayPreset.EARLIEST if earliest else pb.ReplayPreset.LATEST
        requests: queue.Queue[Any] = queue.Queue()
        requests.put(pb.FetchRequest(topic_name=self.topic, replay_preset=preset, replay_id=position or b"",
                                     num_requested=self.num_requested))
        channel = self._channel()
        stub = pb_grpc.PubSubStub(channel)
        self.calls += 1
        outcome = "ok"
        try:
            call = stub.Subscribe(_requests(requests), metadata=self._metadata())
            self._current = call
            for response in call:
                batch = self._batch(stub, response)
                yield batch
                if response.events:  # taken: ask for as many again
                    requests.put(pb.FetchRequest(topic_name=self.topic, num_requested=len(response.events)))
        except grpc.RpcError as exc:
            outcome = exc.code().name if hasattr(exc, "code") else "error"
            if self._closed.is_set():
                return
            raise self._error(exc) from None
        finally:
            requests.put(None)
            self._current = None
            channel.close()
            self._count("pubsub_subscribe", outcome)

    def _batch(self, stub: Any, response: Any) -> StreamBatch:
        """A FetchResponse as the relay's inbox events, in the stream's order."""
        found: list[InboxEvent | ReadRecord] = []
        for consumer in response.events:
            self._schema(stub, consumer.event.schema_id)
            try:
                change = self.schemas.read(consumer.event.schema_id, consumer.event.payload)
            except ValueError as exc:
                # an event the relay cannot read is skipped, not retried forever; its replay id is logged
                log.error("change event skipped: it does not decode",
                          extra={"replay_id": consumer.replay_id.hex(), "reason": str(exc)})
                continue
            if change.entity == OBJECT:
                found += actions(change)
            elif change.change_type == "GAP_OVERFLOW":
                log.warning("change events overflowed: replies written in that transaction are not seen",
                            extra={"entity": change.entity})
        reads = [a for a in found if isinstance(a, ReadRecord)]
        read = self.complete(reads) if reads else {}
        events: list[InboxEvent] = []
        for item in found:
            if isinstance(item, ReadRecord):
                reply = read.get(item.record_id)
                if reply is not None:
                    events.append(reply)
            else:
                events.append(item)
        if response.events:
            self._count("pubsub_events", "delivered", len(response.events))
        position = response.events[-1].replay_id if response.events else response.latest_replay_id
        return StreamBatch(events=events, position=bytes(position), received=len(response.events))

    def close(self) -> None:
        self._closed.set()
        call = self._current
        if call is not None:
            call.cancel()

    # -- errors ----------------------------------------------------------------------------------
    def _error(self, exc: Any) -> Exception:
        """A failed call as the relay's error (see the module)."""
        import grpc

        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        trailers = {str(k): str(v) for k, v in (exc.trailing_metadata() or ())} if hasattr(
            exc, "trailing_metadata") else {}
        error = trailers.get("error-code", "").removeprefix(PREFIX)
        said = (exc.details() if hasattr(exc, "details") else "") or code.name
        details = {"grpc_status": code.name, "error_code": error or None}
        if error.startswith("subscription.fetch.replayid"):
            return StreamPositionLost(f"salesforce: the stored replay id is no longer valid ({error})")
        if code == grpc.StatusCode.UNAUTHENTICATED:
            self._relogin = True  # an expired or revoked session: the next call logs in again
            return RetryableError(f"salesforce: the Pub/Sub API refused the session ({error or code.name}); "
                                  "logging in again", details=details)
        if error == "subscription.limit.exceeded":
            return RetryableError("salesforce: the org's daily event delivery allocation is spent; the events wait "
                                  "in the event bus (72 hours)", retry_after=LIMIT_BACKOFF_SECONDS, details=details)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.ABORTED,
                    grpc.StatusCode.CANCELLED):
            return RetryableError(f"salesforce: the Pub/Sub API failed ({code.name}: {said[:200]})", details=details)
        if error == "topic.not.found" or code == grpc.StatusCode.NOT_FOUND:
            return FatalError(f"salesforce: the change event channel {self.topic} does not exist: deploy the chat2crm "
                              "package (crm/salesforce), which selects the message object for change events",
                              details=details)
        if code == grpc.StatusCode.PERMISSION_DENIED or error.startswith("subscription.topic"):
            return FatalError(f"salesforce: the integration user may not subscribe to {self.topic}: assign it the "
                              "permission set Chat2CRM_Integration", setting="SALESFORCE_USERNAME", details=details)
        return FatalError(f"salesforce: the Pub/Sub API refused the subscription ({code.name} "
                          f"{error or ''}: {said[:200]})", details=details)


def _requests(requests: queue.Queue[Any]) -> Iterator[Any]:
    """The client's side of the bidirectional stream: FetchRequests as they are queued (None ends it)."""
    while (request := requests.get()) is not None:
        yield request

