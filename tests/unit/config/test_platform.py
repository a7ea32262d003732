"""The stop grace follows the platform's stop window, and the plan says which and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.plan import make_plan
from runner.config.platform import stop_window
from runner.config.project import Project
from runner.config.settings import load_settings

CWD = Path("/srv/project")
PROJECT = Project("app.settings", "manage.py", "app", "top package of app.settings")


@pytest.mark.parametrize(
    ("environ", "platform", "grace"),
    [
        ({}, None, 8),  # docker stop's 10 s: a container, a laptop
        ({"RENDER": "true"}, "Render", 25),
        ({"DYNO": "web.1"}, "Heroku", 25),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "Kubernetes", 25),
        ({"K_SERVICE": "site"}, "Cloud Run", 8),
        ({"FLY_APP_NAME": "site"}, "Fly.io", 4),
        ({"INVOCATION_ID": "abc"}, None, 8),  # systemd is not guessed: desktop shells have it
        ({"RENDER": ""}, None, 8),
    ],
)
def test_the_platform_gives_the_default_grace(environ, platform, grace):
    """Each recognised platform's stop window, minus a margin for supervisord's own exit."""
    window = stop_window(environ)
    assert (window.platform, window.grace_seconds) == (platform, grace)
    settings = load_settings(environ, CWD)
    assert settings.shutdown_grace == grace
    assert all(p.stop_wait_seconds == grace for p in make_plan(settings, PROJECT).programs)


def test_the_plan_says_the_grace_and_why():
    """`plan` names the grace, what the tasks get of it, and the platform that chose it."""
    plan = make_plan(load_settings({"RENDER": "true"}, CWD), PROJECT)
    assert plan.stop == (
        "grace 25 s after SIGTERM or SIGINT: running tasks get 20 s, then go back to the queue "
        "(Render kills 30 s after its stop signal (RENDER is set); SHUTDOWN_GRACE_SECONDS "
        "changes it)"
    )
    given = make_plan(load_settings({"SHUTDOWN_GRACE_SECONDS": "60"}, CWD), PROJECT)
    assert given.stop.startswith("grace 60 s") and given.stop.endswith("(SHUTDOWN_GRACE_SECONDS)")


def test_a_grace_past_the_platforms_window_is_noted():
    """SHUTDOWN_GRACE_SECONDS at or over the platform's window: the plan warns of the SIGKILL."""
    plan = make_plan(
        load_settings({"K_SERVICE": "x", "SHUTDOWN_GRACE_SECONDS": "30"}, CWD), PROJECT
    )
    assert any("Cloud Run's 10 s stop window" in note for note in plan.notes)
    fits = make_plan(load_settings({"K_SERVICE": "x", "SHUTDOWN_GRACE_SECONDS": "9"}, CWD), PROJECT)
    assert not any("stop window" in note for note in fits.notes)
