"""The supervising process: from ``python -m runner start`` to supervisord's loop.

``launch`` does the side effects in order (``discover`` the project by import, the
``data_dir`` made private and locked, the ``redis_check``, ``migrations`` in this process
under the ``migrate_lock``, the config file, exec);
``supervisord`` is supervisord itself with the runner's voice: ``logrelay`` makes lines,
``words`` turns supervisord's messages into sentences, ``memory_guard`` samples
(``memory``) and acts on the ``watchdog``'s pure decisions, ``keepawake`` pings the public
URL, ``runstate`` leaves the files through which ``status`` finds the running service.

May import: ``runner.config``, ``runner.errors``, supervisor, redis-py, psutil. Never
Django or Celery at module level: supervisord's process stays small (``migrations`` sets
Django up inside a function, in the runner's process, which then execs supervisord).
"""
