"""The demo Django project: a web app, a Celery worker and Celery beat sharing one codebase.

The Celery app is imported here so that it is configured whenever Django starts, and so that
``@shared_task`` functions bind to it (the standard Celery + Django layout).
"""

from .celery import app as celery_app

__all__ = ("celery_app",)
