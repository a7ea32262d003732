"""Django's DEBUG error page, rendered for real by the demo project, shows no password.

A separate interpreter per case: the demo's settings read the environment once, at import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import quote

import pytest

from tests.support.runner import HOST_VARIABLES_REMOVED, REPO_ROOT

# Every character that breaks URL parsing, as a user may paste it.
PASSWORD = "Pa/ss#w?rd@x:y%Z9"
ENCODED = quote(PASSWORD, safe="")

RENDER_DEBUG_PAGE = """
import sys
import django
django.setup()
from django.conf import settings
from django.test import RequestFactory
from django.views.debug import ExceptionReporter
settings.MY_QUEUE = {"nested": [sys.argv[1]]}  # a project's own setting, unparsable URL
settings.DEBUG = True
try:
    raise RuntimeError("boom")
except RuntimeError:
    reporter = ExceptionReporter(RequestFactory().get("/boom"), *sys.exc_info())
    print(reporter.get_traceback_html() + reporter.get_traceback_text())
"""


def debug_page(redis_url: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in HOST_VARIABLES_REMOVED}
    env |= {"DJANGO_SETTINGS_MODULE": "app.settings", "REDIS_URL": redis_url}
    result = subprocess.run(
        [sys.executable, "-c", RENDER_DEBUG_PAGE, f"amqp://guest:{PASSWORD}@mq:5672//"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_the_debug_page_masks_every_url_password(scheme):
    page = debug_page(f"{scheme}://default:{ENCODED}@redis.example.com:6380")
    # Still useful: the settings and their hosts are there.
    assert "CELERY_BROKER_URL" in page and "redis.example.com" in page
    assert "MY_QUEUE" in page and "mq:5672" in page
    for fragment in (PASSWORD, ENCODED, "Pa/ss", "Pa%2Fss", "w?rd", "w%3Frd"):
        assert fragment not in page
