"""A Celery app module that cannot be imported: the runner must stop, not crash-loop."""

raise ImportError("this module is broken on purpose (tests/e2e/broken_celery_app.py)")
