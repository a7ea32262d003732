"""The status page: ``/status/`` (HTML) and ``/status.json`` (the same data as JSON).

One line in a project's ``urls.py`` adds both (no ``INSTALLED_APPS`` entry: the template is
rendered by a template engine of its own)::

    from django.urls import include, path

    urlpatterns = [
        ...,
        path("", include("runner.web.status_view")),
    ]

Never public: a request needs a logged-in **staff** user (Django's auth, e.g. through the
admin login) or the token in ``RUNNER_STATUS_TOKEN``, sent as ``Authorization: Bearer
<token>`` or ``?token=<token>``. Anyone else gets a redirect to the admin login (HTML) or
401 (JSON). ``/status/?format=json`` is the JSON too.

The data comes from ``runner.status.gather.gather``; this module only checks access and renders.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings as django_settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import Context, Engine
from django.urls import NoReverseMatch, path, reverse
from django.views.decorators.http import require_safe

from runner.config.plan import Plan
from runner.config.settings import Settings
from runner.status import gather as status_data
from runner.status import when

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "runner/status.html"
BEARER = "Bearer "
TOKEN_PARAMETER = "token"  # ?token=... in the page's URL
# Render's free instance has 512 MB: the bars are drawn against it when no share is planned.
REFERENCE_MB = 512
# Seconds between reloads of the HTML page (a meta refresh: no JavaScript).
REFRESH_SECONDS = 30
NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}

# Its own engine: the page works in any project, whatever its TEMPLATES setting.
_engine = Engine(dirs=[str(TEMPLATE_DIR)], autoescape=True)


def _given_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith(BEARER):
        return header[len(BEARER) :].strip()
    # Pasted raw into a URL, a base64 token's "+" (Render's generated value has one about
    # half the time) arrives as a space: a token has no space, so it was a "+".
    return request.GET.get(TOKEN_PARAMETER, "").replace(" ", "+")


def allowed(request: HttpRequest, token: str | None) -> bool:
    """A staff user, or the right token (compared in constant time)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    given = _given_token(request)
    return bool(token and given) and hmac.compare_digest(given.encode(), token.encode())


def _login_url() -> str:
    try:
        return reverse("admin:login")
    except NoReverseMatch:
        return django_settings.LOGIN_URL


def _tone(component: status_data.Component) -> str:
    if not component.planned:
        return "off"
    if component.state == "running":
        sign = component.sign_of_life
        return "warn" if sign is not None and sign.ok is False else "ok"
    return "warn" if component.state in ("starting", "stopping") else "bad"


def _rows(status: status_data.Status) -> list[dict]:
    """What each component row shows, precomputed so the template stays simple."""
    rows = []
    for component in status.components:
        memory = component.memory
        bar = None
        if memory is not None:
            limit = memory.share_mb or REFERENCE_MB
            bar = {
                "percent": min(100, round(100 * memory.pss_mb / limit)),
                "over": memory.share_mb is not None and memory.pss_mb > memory.share_mb,
                "limit": limit,
                "of_share": memory.share_mb is not None,
            }
        sign = component.sign_of_life
        rows.append(
            {
                "c": component,
                "tone": _tone(component),
                "since_ago": when.relative(component.since, status.checked_at),
                "bar": bar,
                "sign": sign,
                "sign_tone": "unknown" if sign is None or sign.ok is None else sign.ok,
            }
        )
    return rows


def render_html(status: status_data.Status) -> str:
    schedules = [
        {
            "s": schedule,
            "last_ago": when.relative(schedule.last_run_at, status.checked_at),
            "next_in": when.relative(schedule.next_due_at, status.checked_at),
            # Past its time, within OVERDUE_AFTER_SECONDS: beat is sending it now.
            "due_now": schedule.next_due_at is not None
            and schedule.next_due_at <= status.checked_at,
        }
        for schedule in status.schedules
    ]
    context = Context(
        {
            "status": status,
            "rows": _rows(status),
            "schedules": schedules,
            "redis": status.redis,
            "reference_mb": REFERENCE_MB,
            "refresh_seconds": REFRESH_SECONDS,
            "total_mb": round(
                sum(c.memory.pss_mb for c in status.components if c.memory is not None), 1
            ),
        }
    )
    return _engine.get_template(TEMPLATE_NAME).render(context)


class SharedStatus:
    """One gathering shared by the requests of a few seconds, in this web process.

    Concurrent requests (two open tabs, each reloading every 30 s; a script polling the
    JSON) get the last status while one gathering is in progress, instead of each starting
    its own: a stalled Redis holds at most one of the web's threads, for the sources' bound
    (``runner.status.gather.SOURCE_BOUND_SECONDS``), and Redis sees one ping per
    SHARED_SECONDS however many ask.
    """

    SHARED_SECONDS = status_data.SHARED_SECONDS

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gathered_at = float("-inf")
        self._status: status_data.Status | None = None

    def _fresh(self) -> bool:
        return time.monotonic() - self._gathered_at <= self.SHARED_SECONDS

    def get(self, gather: Callable[[], status_data.Status]) -> status_data.Status:
        if self._status is not None and self._fresh():
            return self._status
        # While another request gathers, the last status is the answer: a second thread
        # of the web must stay free for everyone else. Only the very first request waits.
        if not self._lock.acquire(blocking=self._status is None):
            return self._status
        try:
            if self._status is None or not self._fresh():
                self._status = gather()
                self._gathered_at = time.monotonic()
            return self._status
        finally:
            self._lock.release()


_shared = SharedStatus()


def current_status(runner_settings: Settings, plan: Plan) -> status_data.Status:
    """The status of the service this web process belongs to, shared for a few seconds."""
    return _shared.get(lambda: _gather(runner_settings, plan))


def _gather(runner_settings: Settings, plan: Plan) -> status_data.Status:
    """Gather the status of the service this web process belongs to."""
    try:
        app = status_data.celery_app_of(plan)
    except Exception:  # no Celery app to ask: the page still shows the rest
        app = None
    return status_data.gather(
        plan,
        runner_settings.redis,
        status_data.Sources(
            supervisor_url=status_data.find_supervisor(os.environ, runner_settings.data_dir),
            celery_app=app,
            django_ready=True,
            data_dir=runner_settings.data_dir,
        ),
    )


def _without_token(request: HttpRequest) -> str:
    """The page's path and query for the login's ``next``, without a ``token`` in it: a
    refused token must not travel on into the login page's URL (and its logs)."""
    query = request.GET.copy()
    query.pop(TOKEN_PARAMETER, None)
    return request.path + (f"?{query.urlencode()}" if query else "")


def _respond(request: HttpRequest, as_json: bool) -> HttpResponse:
    # Under the runner, supervisord handed every program the environment the runner checked.
    runner_settings, plan = status_data.load_plan(os.environ, Path.cwd())
    if not allowed(request, runner_settings.status_token):
        if as_json:
            response = JsonResponse(
                {"error": "log in as a staff user or send the RUNNER_STATUS_TOKEN token"},
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="runner status"'
        else:
            response = redirect_to_login(_without_token(request), _login_url())
        for header, value in NO_STORE.items():
            response[header] = value
        return response
    status = current_status(runner_settings, plan)
    if as_json:
        response = JsonResponse(status.to_json(), json_dumps_params={"indent": 2})
    else:
        response = HttpResponse(render_html(status))
    for header, value in NO_STORE.items():
        response[header] = value
    return response


@require_safe
def status_page(request: HttpRequest) -> HttpResponse:
    """The HTML page, or the JSON with ``?format=json``."""
    return _respond(request, as_json=request.GET.get("format") == "json")


@require_safe
def status_json(request: HttpRequest) -> HttpResponse:
    """The JSON."""
    return _respond(request, as_json=True)


urlpatterns = [
    path("status/", status_page, name="runner-status"),
    path("status.json", status_json, name="runner-status-json"),
]
