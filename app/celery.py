"""The Celery application used by the worker, by beat and by anything that sends tasks.

Every Celery setting lives in ``app.settings`` under the ``CELERY_`` prefix, so web,
worker and beat cannot disagree about the broker or the result backend.

Sending a task needs no ``django.setup()``: reading settings is enough, because the result
backend is Redis (chosen by the runner) rather than Django's database.
"""

import os

from celery import Celery

# setdefault, not assignment: a test or a deploy may point at other settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")

app = Celery("app")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Finds tasks.py in every installed app; lazy, so a client that only sends tasks does not
# load Django's app registry.
app.autodiscover_tasks()
