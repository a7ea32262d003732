"""How long the tests wait for the things every test waits for, in one place.

Generous bounds on this machine's two shared cores, never synchronisation: a test polls
(``wait_for``) and goes on as soon as the thing has happened. A bound that is itself a
promise (a stop inside Render's 30 s) says so.
"""

START_TIMEOUT = 120.0
"""Launch to ready: a cold start migrates, then imports Django and Celery; two runners may
start at once on two shared cores."""

STOP_TIMEOUT = 30.0
"""SIGTERM to exit: the shutdown grace plus supervisord's own exit, the 30 s Render allows."""

TASK_TIMEOUT = 30.0
"""A task sent to a ready worker, to its result."""

CLIENT_TIMEOUT = TASK_TIMEOUT + 30.0
"""A client interpreter (``run_client``): its own imports, then a task's wait."""
