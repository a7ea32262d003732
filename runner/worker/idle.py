"""An idle worker that costs Redis little and still stops at once.

Two patches of kombu's Redis transport, in the worker's main process only:
- kombu 5.7 sweeps its binding tables (``_kombu.binding_deadlines``) every minute, three
  commands each time, although a table lives an hour at least: here every 10 minutes.
- the stop does not wait for the pending BRPOP, as follows.

The runner's worker sets kombu's BRPOP timeout to a minute (``worker_transport_options``):
an idle worker then asks Redis for work once a minute, where kombu's default is every
second, which metered plans bill. Only the runner's own worker (gossip, mingle and
heartbeat off, one channel): a stock ``celery worker`` with them on took up to a minute to
take a task with that timeout, so it is not in the settings ``runner_settings()`` gives.
kombu (5.4 and later) reads the pending BRPOP's answer when it closes the channel -- a task
Redis already popped for it must not be lost -- so a plain shutdown would wait up to that
minute. Here,
just before kombu closes a channel that has a BRPOP pending, a second connection asks Redis
to end that BRPOP as if it had timed out (``CLIENT UNBLOCK``, Redis 5+): Redis answers it at
once with nothing, or, if it had already popped a task, that answer is already on its way
and kombu reads it as before. No task is lost either way.

The pending BRPOP is found by its connection's name (``client_name``, set through kombu's
transport options by ``worker_transport_options``, unique to this process) in ``CLIENT
LIST``. Where Redis refuses those
commands (some managed plans rename or forbid them), the worker waits for the BRPOP as
kombu would: the stop takes up to the timeout longer, nothing is lost.

Installed by ``runner.worker.entry`` in the worker's main process. Imports kombu only then.
"""

from __future__ import annotations

import logging
import os
import re
import socket

# kombu sweeps overdue binding tables this often (its own default: 60 s). A table is
# overdue only an hour or more after its consumer stopped, so 10 minutes changes little.
BINDING_SWEEP_SECONDS = 600
# An idle worker asks Redis for work this often (kombu uses the polling interval as BRPOP's
# timeout): once a minute instead of 60 times. A task is still delivered the moment it is
# queued, since BRPOP returns at once.
BROKER_POLLING_SECONDS = 60
# One Redis command of the unblocking connection never waits longer than this.
UNBLOCK_TIMEOUT_SECONDS = 2.0
# Redis refuses spaces in a client name; anything unusual becomes "-".
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")

logger = logging.getLogger(__name__)


def client_name(pid: int | None = None) -> str:
    """The Redis client name of this process's kombu connections: runner:<host>:<pid>."""
    host = _NAME_UNSAFE.sub("-", socket.gethostname())[:64]
    return f"runner:{host}:{os.getpid() if pid is None else pid}"


def worker_transport_options(app) -> None:
    """The runner's worker's own kombu options, where the project set none of its own: the
    minute-long BRPOP, and a client name by which ``unblock`` finds its pending BRPOP."""
    options = dict(app.conf.broker_transport_options or {})
    options.setdefault("polling_interval", BROKER_POLLING_SECONDS)
    options.setdefault("client_name", client_name())
    app.conf.broker_transport_options = options


def side_client(channel, purpose: str):
    """A redis-py client with the channel's own parameters (TLS included), outside kombu's
    pools, so that it never waits behind a blocked connection; close it after use."""
    import redis

    params = dict(channel._connparams(asynchronous=False))
    params["socket_timeout"] = UNBLOCK_TIMEOUT_SECONDS
    params["socket_connect_timeout"] = UNBLOCK_TIMEOUT_SECONDS
    name = getattr(channel, "client_name", None) or "runner"
    params["client_name"] = f"{name}:{purpose}"
    return redis.Redis(connection_pool=redis.ConnectionPool(**params))


def unblock(channel) -> int:
    """End the BRPOPs this channel's connections are blocked in; how many were ended.

    Errors are logged at debug level and count as none ended: kombu then waits as usual.
    """
    import redis

    name = getattr(channel, "client_name", None)
    if not name:
        return 0
    client = None
    try:
        client = side_client(channel, "unblock")
        ended = 0
        for entry in client.client_list():
            # "b": blocked now ("cmd" is only the last command the client sent).
            if entry.get("name") == name and "b" in entry.get("flags", ""):
                ended += int(client.client_unblock(entry["id"]))
        return ended
    except (redis.RedisError, OSError, KeyError, TypeError, AttributeError) as error:
        logger.debug("could not end the pending BRPOP before closing: %r", error)
        return 0
    finally:
        if client is not None:
            client.connection_pool.disconnect()


def install() -> None:
    """Sweep bindings less often; make kombu's channel end its pending BRPOP as it closes."""
    try:
        from kombu.transport import redis as transport
    except ImportError:  # redis-py absent: no Redis broker, nothing to do
        return
    if hasattr(transport, "BINDING_SWEEP_INTERVAL"):  # kombu >= 5.7 reads it at each pass
        transport.BINDING_SWEEP_INTERVAL = max(
            transport.BINDING_SWEEP_INTERVAL, BINDING_SWEEP_SECONDS
        )
    channel_class = transport.Channel
    if getattr(channel_class.close, "_runner_unblocks", False):
        return
    close = channel_class.close

    def close_without_waiting(self):
        if getattr(self, "_in_poll", None) and not self._closing:
            unblock(self)
        return close(self)

    close_without_waiting._runner_unblocks = True
    channel_class.close = close_without_waiting
