"""What runs inside the Celery worker (and beat): the entry point and its hooks.

``entry`` is ``python -m runner.worker.entry``: Celery's command line with a bounded warm
shutdown; ``hooks`` names the pool children and retires one gracefully when the watchdog
asks; ``beat_leader`` is the scheduler that sends from one instance only; ``local_store``
is the local default's broker transport and result backend (loaded by every process that
sends or reads tasks, the web included, through ``runner.web.django_settings``); ``idle``
keeps an idle worker's Redis commands few without slowing its stop; ``redis_restart`` says
when Redis came back without its data.

May import: ``runner.config``, ``runner.errors``, Celery, kombu, redis-py.
"""
