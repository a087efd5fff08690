"""The emulated org's Pub/Sub API: a real gRPC server (the proto Salesforce publishes, over TLS with the
emulator's test certificate authority) serving the org's change event channels
(:mod:`emulators.salesforce.changes`).

- Every call is authenticated as Salesforce does, by the call metadata ``accesstoken`` (one of the org's
  sessions, refused once expired or revoked), ``instanceurl`` (an https URL) and ``tenantid`` (the org id,
  15 or 18 characters); a refusal is ``UNAUTHENTICATED`` with the error code in the trailers.
- ``GetTopic`` and ``GetSchema`` answer for the channels the org has (``NOT_FOUND`` otherwise).
- ``Subscribe`` is the bidirectional stream: the first ``FetchRequest`` names the topic and where to start
  (``LATEST``, ``EARLIEST``, or ``CUSTOM`` after a replay id: one the org never issued, or one older than the
  retention period, is refused with ``INVALID_ARGUMENT`` and
  ``sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted``); events are sent only as they are
  requested (``num_requested``, at most 100 outstanding), in ``FetchResponse`` batches that say how many
  are still pending; with nothing to send, an empty batch carrying the latest replay id every
  ``keepalive_seconds`` (Salesforce: within 270 seconds); with nothing requested for ``idle_seconds`` (60),
  the stream ends.
- Faults (:meth:`PubSubService.fail_next`): ``unavailable`` (the next call fails ``UNAVAILABLE``),
  ``internal``, ``auth`` (``UNAUTHENTICATED``: the session is no longer valid), ``limit`` (the org's
  daily event delivery allocation is spent), and ``drop`` (the next stream with events to send, an open one
  or the next one, sends ``after_events`` of them, then fails ``UNAVAILABLE``, the rest of its batch
  undelivered).

Errors carry the trailers ``error-code`` (Salesforce's ``sfdc.platform.eventbus.grpc.…``) and ``rpc-id``, and
the message ends with ``rpcId: <id>``, as the Pub/Sub API's do.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from emulators.salesforce.changes import ChangeEvent, Channel, replay_bytes, replay_number
from emulators.salesforce.common import ORG_ID
from emulators.salesforce.pubsub import pubsub_api_pb2 as pb
from emulators.salesforce.pubsub import pubsub_api_pb2_grpc as pb_grpc
from emulators.salesforce.tls import LocalTLS

PREFIX = "sfdc.platform.eventbus.grpc."
#: the most events a subscription may have requested and not yet received
MAX_REQUESTED = 100
FAULTS = ("unavailable", "internal", "auth", "limit", "drop")


@dataclass
class _Stream:
    """One Subscribe call's state, shared by the thread reading its requests and the one answering them."""

    topic: str
    pending: int
    last_request: float
    error: tuple[grpc.StatusCode, str, str] | None = None
    done: bool = False


class PubSubService(pb_grpc.PubSubServicer):
    """The Pub/Sub API of an emulated org.

    Args:
        org: the emulated org (its sessions, channels and lock).
        keepalive_seconds: how often a subscription with nothing to send gets an empty batch.
        idle_seconds: how long a subscription with nothing requested stays open.
        batch_size: the most events one FetchResponse carries.
    """

    def __init__(self, org: Any, *, keepalive_seconds: float = 270.0, idle_seconds: float = 60.0,
                 batch_size: int = 25) -> None:
        self.org = org
        self.keepalive_seconds = keepalive_seconds
        self.idle_seconds = idle_seconds
        self.batch_size = batch_size
        self.faults: deque[tuple[str, int]] = deque()
        #: every call received: (method, time)
        self.calls: list[tuple[str, float]] = []
        #: FetchRequests received, with their num_requested (flow control, for tests)
        self.requested: list[int] = []
        #: events delivered, by replay id, in order (a redelivery shows twice)
        self.delivered: list[int] = []
        #: open Subscribe streams
        self.open_streams = 0

    def fail_next(self, kind: str, *, after_events: int = 0) -> None:
        """Make the next call fail with ``kind`` (``drop``: the next stream with events to send, after
        ``after_events`` of them)."""
        if kind not in FAULTS:
            raise ValueError(f"kind must be one of {FAULTS}, got {kind!r}")
        with self.org.lock:
            self.faults.append((kind, after_events))

    # -- the checks every call goes through -----------------------------------------------------
    def _start(self, method: str, context: grpc.ServicerContext) -> None:
        with self.org.lock:
            self.calls.append((method, time.time()))
            fault = self.faults[0] if self.faults and self.faults[0][0] != "drop" else None
            if fault is not None:
                self.faults.popleft()
        if fault is not None:
            kind = fault[0]
            if kind == "unavailable":
                _abort(context, grpc.StatusCode.UNAVAILABLE, "service.unavailable", "The service is unavailable.")
            if kind == "internal":
                _abort(context, grpc.StatusCode.INTERNAL, "subscription.internal.error", "An internal error occurred.")
            if kind == "limit":
                _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "subscription.limit.exceeded",
                       "You have exceeded the event delivery limit for your org.")
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, "service.auth.error", "An authentication exception "
                   "occurred. Verify your credentials and try again.")
        self._authenticate(context)

    def _authenticate(self, context: grpc.ServicerContext) -> None:
        metadata = {key: value for key, value in context.invocation_metadata()}
        token, instance, tenant = (str(metadata.get(k) or "") for k in ("accesstoken", "instanceurl", "tenantid"))
        if not token.strip() or not instance.startswith("https://") or not tenant.strip():
            self.org.violations.append({"method": "GRPC", "path": "auth", "problem": "accesstoken, instanceurl (https) "
                                        "and tenantid metadata are required"})
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, "service.auth.headers.invalid",
                   "The auth header value is invalid or blank.")
        if tenant not in (ORG_ID, ORG_ID[:15]):
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, "service.auth.error",
                   "An authentication exception occurred. Verify your credentials and try again.")
        with self.org.lock:
            issued = self.org.tokens.get(token)
            expired = issued is None or (self.org.session_seconds is not None
                                         and time.time() - issued > self.org.session_seconds)
        if expired:
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, "service.auth.error",
                   "An authentication exception occurred. Verify your credentials and try again.")

    def _channel(self, topic: str, context: grpc.ServicerContext) -> Channel:
        if not topic:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "topic.validation.empty", "The topic name is blank.")
        with self.org.lock:
            channel: Channel | None = self.org.channels.get(topic)
        if channel is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, "topic.not.found", f"The topic {topic} does not exist.")
        return channel

    # -- the RPCs -------------------------------------------------------------------------------
    def GetTopic(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._start("GetTopic", context)
        channel = self._channel(request.topic_name, context)
        return pb.TopicInfo(topic_name=channel.name, tenant_guid=ORG_ID, can_publish=False, can_subscribe=True,
                            schema_id=channel.schema_id, rpc_id=str(uuid.uuid4()))

    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._start("GetSchema", context)
        if not request.schema_id:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "schema.validation.failed", "The schema ID is blank.")
        with self.org.lock:
            found = next((c for c in self.org.channels.values() if c.schema_id == request.schema_id), None)
        if found is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, "schema.meta.permission",
                   f"The schema {request.schema_id} does not exist or cannot be read.")
        return pb.SchemaInfo(schema_json=json.dumps(found.schema), schema_id=found.schema_id,
                             rpc_id=str(uuid.uuid4()))

    def Subscribe(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        self._start("Subscribe", context)
        first = next(request_iterator, None)
        if first is None:
            return
        channel = self._channel(first.topic_name, context)
        position = self._start_position(first, context)
        if first.num_requested <= 0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "subscription.fetch.requested.events.invalid",
                   "The number of requested events must be greater than zero.")
        stream = _Stream(topic=channel.name, pending=min(MAX_REQUESTED, first.num_requested), last_request=time.time())
        with self.org.lock:
            self.requested.append(first.num_requested)
            self.open_streams += 1
        reader = threading.Thread(target=self._read, args=(request_iterator, stream), daemon=True,
                                  name="pubsub-requests")
        reader.start()
        context.add_callback(lambda: self._finish(stream))
        try:
            yield from self._serve(channel, stream, position, context)
        finally:
            with self.org.lock:
                self.open_streams -= 1

    def _start_position(self, first: Any, context: grpc.ServicerContext) -> int:
        """The replay id after which a subscription starts."""
        with self.org.lock:
            self.org._purge()
            latest, purged = self.org.last_replay, self.org.purged_through
        if first.replay_preset == pb.ReplayPreset.EARLIEST:
            return int(purged)
        if first.replay_preset != pb.ReplayPreset.CUSTOM:
            return int(latest)
        if not first.replay_id:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "subscription.fetch.replayid.validation.failed",
                   "The Replay ID validation failed: CUSTOM needs a replay ID.")
        number = replay_number(first.replay_id)
        if number is None or number <= purged or number > latest:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "subscription.fetch.replayid.corrupted",
                   "The Replay ID validation failed.")
        return number

    def _read(self, requests: Iterator[Any], stream: _Stream) -> None:
        """Take the client's further FetchRequests (more events requested) as they come."""
        try:
            for request in requests:
                with self.org.lock:
                    self.requested.append(request.num_requested)
                    if request.topic_name and request.topic_name != stream.topic:
                        stream.error = (grpc.StatusCode.INVALID_ARGUMENT, "subscription.fetch.topic.mismatch",
                                        "The topic name differs from the first FetchRequest's.")
                    elif request.num_requested <= 0:
                        stream.error = (grpc.StatusCode.INVALID_ARGUMENT, "subscription.fetch.requested.events.invalid",
                                        "The number of requested events must be greater than zero.")
                    stream.pending = min(MAX_REQUESTED, stream.pending + max(0, request.num_requested))
                    stream.last_request = time.time()
                    self.org.published.notify_all()
        except grpc.RpcError:
            pass  # the call ended
        finally:
            self._finish(stream)

    def _finish(self, stream: _Stream) -> None:
        with self.org.lock:
            stream.done = True
            self.org.published.notify_all()

    def _serve(self, channel: Channel, stream: _Stream, position: int,
               context: grpc.ServicerContext) -> Iterator[Any]:
        last_sent = time.monotonic()
        while context.is_active():
            step, batch, pending = self._next_step(channel, stream, position, last_sent, context)
            if step == "end":
                return
            if step == "error" and stream.error is not None:
                _abort(context, *stream.error)
            if batch:
                position = batch[-1].replay
            elif step == "keepalive":
                with self.org.lock:  # caught up: the subscription's position is the tip of the event bus
                    if not any(e.replay > position for e in channel.events):
                        position = max(position, self.org.last_replay)
            last_sent = time.monotonic()
            yield pb.FetchResponse(events=[_consumer_event(e) for e in batch], latest_replay_id=replay_bytes(position),
                                   rpc_id=str(uuid.uuid4()), pending_num_requested=pending)
            if step == "drop":
                _abort(context, grpc.StatusCode.UNAVAILABLE, "service.unavailable", "The service is unavailable.")

    def _next_step(self, channel: Channel, stream: _Stream, position: int, last_sent: float,
                   context: grpc.ServicerContext) -> tuple[str, list[ChangeEvent], int]:
        """What the stream does next (``batch``, ``drop``, ``keepalive``, ``error`` or ``end``), waiting for
        events or requests until there is something to do; the events to send and what stays pending."""
        with self.org.lock:
            while context.is_active():
                if stream.error is not None:
                    return "error", [], stream.pending
                if stream.done and stream.pending == 0:
                    return "end", [], 0
                self.org._purge()
                ready = [e for e in channel.events if e.replay > position]
                if stream.pending > 0 and ready:
                    batch, step = ready[:min(stream.pending, self.batch_size)], "batch"
                    if self.faults and self.faults[0][0] == "drop":  # an open stream breaks mid-batch
                        batch, step = batch[:self.faults.popleft()[1]], "drop"
                    stream.pending -= len(batch)
                    self.delivered.extend(e.replay for e in batch)
                    return step, batch, stream.pending
                if stream.pending > 0 and time.monotonic() - last_sent >= self.keepalive_seconds:
                    return "keepalive", [], stream.pending
                if stream.pending == 0 and time.time() - stream.last_request >= self.idle_seconds:
                    return "end", [], 0  # nothing requested for too long: Salesforce closes the stream
                self.org.published.wait(timeout=0.05)
            return "end", [], 0


def _consumer_event(event: ChangeEvent) -> Any:
    return pb.ConsumerEvent(event=pb.ProducerEvent(id=str(uuid.uuid5(uuid.NAMESPACE_OID, str(event.replay))),
                                                   schema_id=event.schema_id, payload=event.payload),
                            replay_id=replay_bytes(event.replay))


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, error: str, message: str) -> NoReturn:
    """End the call as the Pub/Sub API does: the status, and the error code and RPC id in the trailers."""
    rpc = str(uuid.uuid4())
    context.set_trailing_metadata((("error-code", PREFIX + error), ("rpc-id", rpc)))
    context.abort(code, f"{message} rpcId: {rpc}")
    raise AssertionError("unreachable")  # pragma: no cover - abort raises


class PubSubServer:
    """The Pub/Sub API of ``org`` served on 127.0.0.1 (TLS with ``tls``'s certificate; plain without it)
    until :meth:`stop`; ``address`` is ``127.0.0.1:<port>``.

    Args:
        org: the emulated org.
        tls: the emulator's certificate authority (as its HTTPS uses).
        kwargs: passed to :class:`PubSubService` (``keepalive_seconds``, ``idle_seconds``, ``batch_size``).
    """

    def __init__(self, org: Any, tls: LocalTLS | None = None, **kwargs: Any) -> None:
        self.service = PubSubService(org, **kwargs)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="pubsub"))
        pb_grpc.add_PubSubServicer_to_server(self.service, self._server)
        if tls is not None:
            credentials = grpc.ssl_server_credentials([(tls.server_key_pem, tls.server_chain_pem)])
            self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        else:
            self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> PubSubServer:
        """Start serving; returns self."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving (open streams are cancelled)."""
        self._server.stop(grace=0).wait(5)
