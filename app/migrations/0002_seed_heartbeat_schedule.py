"""Seed the "heartbeat" periodic task: app.tasks.record_heartbeat every 60 seconds.

A data migration rather than CELERY_BEAT_SCHEDULE, because beat's DatabaseScheduler reads
its schedule from django_celery_beat's tables: this way the task exists on a fresh database
after `migrate`, shows up in the admin, and can be paused or re-timed there.
get_or_create makes re-running safe; an edit made in the admin is never overwritten.
"""

from django.db import migrations
from django.utils import timezone

HEARTBEAT_TASK_NAME = "heartbeat"
HEARTBEAT_TASK = "app.tasks.record_heartbeat"
HEARTBEAT_EVERY_SECONDS = 60


def _tell_beat_schedule_changed(apps):
    # django_celery_beat bumps this row from signals on its real models; the historical
    # models used in migrations send none. A beat already running would otherwise keep
    # its old schedule until restarted.
    periodic_tasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    periodic_tasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def create_heartbeat_task(apps, schema_editor):
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = interval_schedule.objects.get_or_create(
        every=HEARTBEAT_EVERY_SECONDS, period="seconds"
    )
    _, created = periodic_task.objects.get_or_create(
        name=HEARTBEAT_TASK_NAME,
        defaults={"task": HEARTBEAT_TASK, "interval": every_minute},
    )
    if created:
        _tell_beat_schedule_changed(apps)


def delete_heartbeat_task(apps, schema_editor):
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    periodic_task.objects.filter(name=HEARTBEAT_TASK_NAME).delete()
    # The interval may be shared with a task someone added in the admin: only an unused
    # one goes.
    interval_schedule.objects.filter(
        every=HEARTBEAT_EVERY_SECONDS, period="seconds", periodictask__isnull=True
    ).delete()
    _tell_beat_schedule_changed(apps)


class Migration(migrations.Migration):
    # Tuples: Django copies them into lists, and RUF012 flags mutable class attributes.
    dependencies = (
        ("app", "0001_initial"),
        # django_celery_beat's latest migration, so its tables are in their final shape.
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    )

    operations = (migrations.RunPython(create_heartbeat_task, delete_heartbeat_task),)
