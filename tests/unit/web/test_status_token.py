"""Who may see the status page: the token as a header or in the URL, pasted raw or encoded.

In an interpreter of its own: Django is configured there (auth installed), not in the test
process, where other tests configure it their way.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.runner import REPO_ROOT

TOKEN = "a+b/c=Zk9+Qx1Rm2Tn3Vp4"  # base64's "+", "/" and "=", as Render generates
CASES = [
    # (query string, Authorization header, configured token, allowed)
    ("token=a%2Bb%2Fc%3DZk9%2BQx1Rm2Tn3Vp4", None, TOKEN, True),  # URL-encoded
    ("token=a+b/c=Zk9+Qx1Rm2Tn3Vp4", None, TOKEN, True),  # pasted raw: "+" became a space
    ("", f"Bearer {TOKEN}", TOKEN, True),
    ("token=a+b/c=Zk9+Qx1Rm2Tn3Vp5", None, TOKEN, False),
    ("token=", None, TOKEN, False),
    ("", None, TOKEN, False),
    ("token=", None, None, False),  # no RUNNER_STATUS_TOKEN: nothing opens the page
]
CHECK = """
import json, sys
import django
from django.conf import settings
settings.configure(
    ALLOWED_HOSTS=["testserver"],
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
)
django.setup()
from django.test import RequestFactory
from runner.web.status_view import allowed
results = []
for query, header, token, _expected in json.loads(sys.argv[1]):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    results.append(allowed(RequestFactory().get("/status/?" + query, **extra), token))
print(json.dumps(results))
"""


def test_the_token_opens_the_page_however_it_was_pasted():
    """A raw paste of a token with "+" works (a query string turns "+" into a space), the
    encoded form and the Authorization header too; a wrong, empty or unset one does not."""
    done = subprocess.run(
        [sys.executable, "-c", CHECK, json.dumps(CASES)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout) == [expected for *_case, expected in CASES]
