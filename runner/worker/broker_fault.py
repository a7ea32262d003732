"""A worker that cannot work because of Redis says why in one line and exits to be retried.

Redis full (``maxmemory`` with ``noeviction``, as free plans are), out of connections
(``maxclients``), refusing the password after a rotation, or gone: Celery's worker logs
``Unrecoverable error`` with its traceback and exits with status 1, which supervisord counts
as a failed start when it comes soon after one; three stopped the service, the web with it.
Here the worker's ``stop`` is wrapped: when it is called for an unrecoverable error that
comes from the broker or Redis (the exception classes the app's own kombu transport lists,
and redis-py's), the worker says what Redis did in one line and exits with
``EXIT_BROKER_UNAVAILABLE``, which the runner answers with a growing pause and a new start
(``runner.supervise.exits``), never a stop of the service.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from runner.errors import EXIT_BROKER_UNAVAILABLE

logger = logging.getLogger("runner.worker")
EX_FAILURE = 1  # celery.platforms.EX_FAILURE: what Celery exits with on an unrecoverable error
MAX_DETAIL = 200  # characters of the library's message kept in the line


def broker_errors(app) -> tuple[type[BaseException], ...]:
    """The exception classes that mean "the broker failed", asked of the app's transport."""
    found: list[type[BaseException]] = []
    with contextlib.suppress(Exception):
        connection = app.connection_for_write()
        try:
            found += [*connection.connection_errors, *connection.channel_errors]
        finally:
            connection.release()
    with contextlib.suppress(ImportError):
        from kombu.exceptions import OperationalError

        found.append(OperationalError)
    with contextlib.suppress(ImportError):
        from redis.exceptions import RedisError

        found.append(RedisError)
    # kombu's Redis transport also lists OSError and KeyError, which a project's own code
    # raises for its own reasons: only the libraries' classes say "the broker".
    return tuple(c for c in found if c.__module__ != "builtins")


def describe(error: BaseException) -> str:
    """What Redis did, in words, with the fix where there is one."""
    text = str(error)
    name = type(error).__name__
    lowered = text.lower()
    if name == "OutOfMemoryError" or "maxmemory" in lowered or lowered.startswith("oom"):
        return (
            "Redis is full (its maxmemory reached and nothing may be evicted): free space, "
            "expire results sooner (CELERY_RESULT_EXPIRES) or take a larger plan"
        )
    if "max number of clients" in lowered:
        return (
            "Redis has no connection left (its maxclients reached): lower "
            "REDIS_MAX_CONNECTIONS or close other clients"
        )
    if name == "AuthenticationError" or any(
        word in lowered for word in ("wrongpass", "noauth", "invalid password", "invalid username")
    ):
        return "Redis refused the password: check the password in REDIS_URL"
    return f"{name}: {text[:MAX_DETAIL]}"


def install_on(worker) -> None:
    """Wrap ``worker.stop`` (a Celery WorkController) so that a broker failure exits with
    EXIT_BROKER_UNAVAILABLE. Celery calls ``stop(exitcode=EX_FAILURE)`` inside the ``except``
    that caught the unrecoverable error, so the error is the one being handled there."""
    errors = broker_errors(worker.app)
    original = worker.stop

    def stop(*args, **kwargs):
        error = sys.exc_info()[1]
        if kwargs.get("exitcode") == EX_FAILURE and errors and isinstance(error, errors):
            logger.error(
                "worker: cannot work with the broker: %s; it exits to be started again after "
                "a pause (the web keeps serving)",
                describe(error),
            )
            kwargs["exitcode"] = EXIT_BROKER_UNAVAILABLE
        return original(*args, **kwargs)

    worker.stop = stop
