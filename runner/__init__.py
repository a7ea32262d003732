"""Run a Django project's web, Celery worker and Celery beat as one supervised service."""
