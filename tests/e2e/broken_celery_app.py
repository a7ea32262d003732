"""A Celery app that imports (the runner's start-up check passes) but whose worker cannot start.

Its broker transport does not exist, so ``celery worker`` exits at once, every time: the
runner must stop with status 3, not crash-loop. (An app that cannot even be imported is
refused earlier, with exit status 2: see tests/e2e/test_byo_project.py.)
"""

from celery import Celery

app = Celery("broken", broker="broken-on-purpose://")
