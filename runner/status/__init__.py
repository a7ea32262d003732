"""Facts about a running service, gathered once and rendered twice.

``gather`` collects them into one ``Status`` (supervisord's XML-RPC, memory, Redis, beat's
schedule); ``text`` renders it for ``python -m runner status``; the page and its JSON are
rendered by ``runner.web.status_view``.

May import: ``runner.config``, ``runner.supervise`` (run state, memory sampling, the
project's discovery), redis-py, supervisor's XML-RPC client; Django and Celery only inside
functions, when a page asks.
"""
