"""rq's command channel in a job process: commands arrive, and its connection stays its own; and a worker
warming up leaves alone the connections other threads of its process are using.

rq gives a worker's listening connection back to the shared pool when the worker stops, while its listening
thread may still be reading it; the thread then reconnects that connection and reads the answer meant for the
next thread that takes it from the pool (a webhook's append under the test relay hung this way).
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

from rq.command import send_shutdown_command

from connector import queues
from connector.runtime import Runtime
from connector.worker import warm_up


def _worker(runtime: Runtime) -> queues.RelayWorker:
    return queues.RelayWorker([runtime.queue(name) for name in queues.ORDER], connection=runtime.redis,
                              drain=lambda key: None)


def test_the_command_channel_s_connection_never_goes_back_to_the_shared_pool(runtime: Runtime) -> None:
    worker = _worker(runtime)
    worker.subscribe()
    assert worker.pubsub is not None
    listening = worker.pubsub.connection
    worker.unsubscribe()
    pool = runtime.redis.connection_pool
    taken = [pool.get_connection() for _ in range(3)]  # the pool hands out the last given back first
    try:
        assert all(connection is not listening for connection in taken)
    finally:
        for connection in taken:
            pool.release(connection)
    assert runtime.redis.ping()


def test_rq_s_commands_still_reach_the_job_process(runtime: Runtime) -> None:
    received = threading.Event()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        received.set()  # rq's shutdown command interrupts its own process

    previous = signal.signal(signal.SIGINT, interrupted)
    worker = _worker(runtime)
    try:
        worker.subscribe()
        deadline = time.monotonic() + 10
        # the channel is listened to once its thread runs: send until the command is taken
        while not received.is_set() and time.monotonic() < deadline:
            send_shutdown_command(runtime.redis, worker.name)
            received.wait(0.2)
        assert received.is_set()
    finally:
        worker.unsubscribe()
        signal.signal(signal.SIGINT, previous)


def test_warming_up_leaves_alone_a_connection_another_thread_is_using(runtime: Runtime) -> None:
    # a burst run in a process that also serves webhooks (the tests' in-process relay): warming up closed
    # every connection of the pool, one a request thread was waiting on among them
    pool = runtime.redis.connection_pool
    using = pool.get_connection()
    try:
        using.send_command("BLPOP", "warm-up:probe", 5)  # another thread's command, waiting on its answer
        warm_up(runtime)
        runtime.redis.rpush("warm-up:probe", "answer")
        assert using.read_response() == [b"warm-up:probe", b"answer"]
    finally:
        pool.release(using)
