"""One line when the broker's Redis came back without its data.

A Redis without persistence that restarts (a free plan's maintenance, a crash, a container
restarted) comes back empty: the tasks that waited in the queue and the results not yet
read are gone. The worker reconnects by itself and says only "Connection to broker lost"
and "Connected", so the loss went unsaid. Here a step of the worker's consumer, which Celery
starts again after every reconnection, asks Redis for its ``run_id`` (new at every Redis
start) and whether a marker key the worker set at its previous connection still exists. A
new run id with the marker gone means Redis restarted empty: one warning line. A new run id
with the marker there is a restart that kept its data (persistence, a managed failover):
nothing to say. Three commands per connection, none at idle.
"""

from __future__ import annotations

import contextlib
import logging

from celery import bootsteps

from runner.worker.idle import side_client

MARKER_KEY = "runner:broker-data-marker"
LOST_DATA = (
    "Redis restarted without its data (a new run id, and the worker's marker key is gone): "
    "tasks that were queued and results not yet read were lost; give Redis persistence "
    "(AOF) or a plan that keeps data to keep them across restarts"
)

logger = logging.getLogger("runner.worker.redis_restart")


class RedisDataWatch(bootsteps.StartStopStep):
    """Compares Redis's run id and the marker at each (re)connection of the consumer."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.run_id: str | None = None

    def start(self, parent) -> None:
        from kombu.transport.redis import Channel

        connection = getattr(parent, "connection", None)
        channel = getattr(connection, "default_channel", None) if connection else None
        if not isinstance(channel, Channel):
            return  # not Redis: nothing to watch
        client = None
        try:
            client = side_client(channel, "watch")
            run_id = client.info("server").get("run_id")
            marker_kept = bool(client.exists(MARKER_KEY))
            if not marker_kept:
                client.set(MARKER_KEY, "1")
        except Exception as error:  # a check that fails must not stop the consumer
            logger.debug("could not read Redis's run id: %r", error)
            return
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.connection_pool.disconnect()
        if self.run_id is not None and run_id != self.run_id and not marker_kept:
            logger.warning(LOST_DATA)
        self.run_id = run_id


def add_to(app) -> None:
    """Add the watch to ``app``'s consumer (before the worker builds its consumer)."""
    if RedisDataWatch not in app.steps["consumer"]:
        app.steps["consumer"].add(RedisDataWatch)
