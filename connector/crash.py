"""A test seam: kill the worker at a named step, to prove that a crash anywhere loses and doubles nothing.

``tests/e2e/test_crash_points.py`` starts a worker with ``CHAT2CRM_TEST_CRASH_AT`` set to one of
:data:`POINTS`; when the work reaches that step, the process running the job dies by SIGKILL, as in an
out-of-memory kill or a power cut. Unset (always, outside that test), :func:`crash_point` only
reads one environment variable.
"""

from __future__ import annotations

import os
import signal

ENVIRONMENT_VARIABLE = "CHAT2CRM_TEST_CRASH_AT"

#: the steps of handling a message that completes a lead, in order
POINTS = (
    "conversation-locked",  # the conversation's lock is taken
    "state-loaded",  # its state is read
    "turn-decided",  # the bot engine has answered (a reference is reserved), nothing committed
    "turn-committed",  # state, lead, replies and CRM work are committed in one transaction
    "reply-sending",  # a reply is marked as being sent, not yet sent
    "reply-sent",  # the channel took the reply, the relay has not recorded it (the at-least-once window)
    "reply-marked",  # the reply is recorded as sent and left the outbox
    "lead-writing",  # the lead's CRM lock is taken, nothing written
    "lead-written",  # the CRM holds the lead, the relay has not recorded it
    "lead-synced",  # the lead is recorded as in the CRM
)
#: the steps of the conversation after the bot (``tests/integration/test_agent_replies.py`` kills a job there)
INBOX_POINTS = (
    "agent-sending",  # an agent's reply is marked as being sent, not yet sent
    "agent-sent",  # the channel took an agent's reply, the relay has not recorded it
    "thread-published",  # the CRM holds a published thread message, the relay has not recorded it
)


def crash_point(name: str) -> None:
    """Die here if the test asked for it: SIGKILL this process (jobs run in the job process itself).

    Raises:
        ValueError: ``name`` is not one of :data:`POINTS` or :data:`INBOX_POINTS` (a typo would make a test
            pass vacuously).
    """
    if name not in POINTS and name not in INBOX_POINTS:
        raise ValueError(f"name must be one of {POINTS + INBOX_POINTS}, got {name!r}")
    if os.environ.get(ENVIRONMENT_VARIABLE) != name:
        return
    os.kill(os.getpid(), signal.SIGKILL)
