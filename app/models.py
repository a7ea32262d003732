"""The demo's one table: a row per heartbeat, written by the periodic task.

A recent row proves the whole chain works: beat scheduled the task, Redis carried it, the
worker ran it and wrote to the database the web app reads.
"""

from django.db import models


class Heartbeat(models.Model):
    """One run of ``app.tasks.record_heartbeat``."""

    # Indexed: the home page and the pruning both sort by it.
    ran_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Which machine ran the task: tells a local worker from the one on Render.
    hostname = models.CharField(max_length=255)
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ("-ran_at",)

    def __str__(self) -> str:
        return f"heartbeat from {self.hostname} at {self.ran_at:%Y-%m-%d %H:%M:%S}"
