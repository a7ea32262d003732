"""The pure configuration path: environment -> Settings -> Project -> Plan -> supervisord.conf.

Read top-down: ``environment`` (strict parsing) and ``redis`` (URLs and TLS) feed
``settings``; ``project`` names the settings module and Celery app; ``budget``,
``memory_plan`` and ``connections`` do the memory and Redis arithmetic; ``plan`` decides
which programs run and how; ``supervisord_conf`` writes the text. ``disk`` turns disk
faults into sentences for the launcher and the local broker.

May import: the standard library and ``runner.errors`` only. Nothing of Django, Celery,
kombu, redis-py, Gunicorn or supervisor at module level (tests/unit/test_layout.py), so
every function here is tested with plain values and no server.
"""
