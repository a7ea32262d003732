"""The status page as a person meets it: the real runner with Redis, a staff login or the
token, the page loaded in headless Chromium (a screenshot kept in tests/artifacts/), the
JSON, and ``python -m runner status`` from another process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from runner.status.gather import SHARED_SECONDS
from tests.support.browser import CHROMIUM, HEADLESS_FLAGS, LAYOUT, Browser, layout_problems
from tests.support.ports import free_port
from tests.support.processes import start_process, wait_for
from tests.support.runner import REPO_ROOT, manage, speed_up_heartbeat, start_runner, wait_http_ok
from tests.support.timeouts import START_TIMEOUT, STOP_TIMEOUT

pytestmark = pytest.mark.e2e

PERIODIC_TIMEOUT = 30
BROWSER_TIMEOUT = 60
CLI_TIMEOUT = 60
TOKEN = "status-token-for-tests-0123456789"
STAFF_USER = "staff"
STAFF_PASSWORD = "a-long-test-password-9481"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
# Debian's package; scripts/test installs it.


def prepare_database(env: dict[str, str]) -> None:
    """Migrate, a heartbeat every 2 s (so beat shows a recent run), and a staff user."""
    speed_up_heartbeat(env, 2)
    manage(
        {**env, "DJANGO_SUPERUSER_PASSWORD": STAFF_PASSWORD},
        "createsuperuser",
        "--noinput",
        "--username",
        STAFF_USER,
        "--email",
        "staff@example.com",
    )


def status_json(base: str) -> dict:
    response = requests.get(
        f"{base}/status.json", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def all_alive(base: str) -> dict | None:
    """The JSON once every component runs and the worker and beat showed a sign of life."""
    data = status_json(base)
    components = {c["name"]: c for c in data["components"]}
    ready = all(c["running"] for c in components.values()) and all(
        components[name]["sign_of_life"] and components[name]["sign_of_life"]["ok"]
        for name in ("worker", "beat")
    )
    return data if ready else None


def worker_after_restart(base: str, old_pid: int) -> bool:
    worker = status_json(base)["components"][1]
    return worker["running"] and worker["pid"] != old_pid and worker["restarts"] == 1


def run_chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium to the end and return what it printed."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    browser = start_process(
        [
            CHROMIUM,
            *HEADLESS_FLAGS,
            f"--user-data-dir={profile}",
            *args,
        ],
        # Its caches and settings go under the test's own directory.
        env={**os.environ, "HOME": str(tmp_path)},
        cwd=tmp_path,
        log_path=tmp_path / "chromium.log",
    )
    with browser:
        assert browser.wait(timeout=BROWSER_TIMEOUT) == 0, browser.output()[-3000:]
        return browser.output()


def runner_status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``python -m runner status`` from another process, same directory and environment."""
    return subprocess.run(
        [sys.executable, "-m", "runner", "status", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


# Skipped only outside CI: in CI (CI=true) a missing chromium must fail, not hide.
@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (bash scripts/test installs it)",
)
def test_status_page_shows_every_component_to_staff_and_token_holders_only(
    runner_env, tmp_path: Path, redis_plain
):
    """Without login or token: redirect (HTML) and 401 (JSON); with them the page shows web,
    worker and beat running with memory, the worker's ping, beat's last run and Redis; the
    terminal command prints the same and exits 0; a killed worker counts as one restart; once
    the service has stopped the command exits 1."""
    # A fixed budget, so the shares below do not depend on this machine's cgroup.
    runner_env |= {
        "REDIS_URL": redis_plain.url(),
        "RUNNER_STATUS_TOKEN": TOKEN,
        "MEMORY_BUDGET_MB": "512",
    }
    prepare_database(runner_env)
    base = f"http://127.0.0.1:{runner_env['PORT']}"
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"{base}/healthz", START_TIMEOUT, runner)

        # Never public: the page sends people to the admin login, the JSON says 401.
        page = requests.get(f"{base}/status/", allow_redirects=False, timeout=10)
        assert (page.status_code, page.headers["Location"]) == (
            302,
            "/admin/login/?next=/status/",
        )
        anonymous = requests.get(f"{base}/status.json", timeout=10)
        assert anonymous.status_code == 401
        wrong = requests.get(f"{base}/status.json?token=not-the-token", timeout=10)
        assert wrong.status_code == 401
        refused = requests.get(
            f"{base}/status/?token=not-the-token&x=1", allow_redirects=False, timeout=10
        )
        assert refused.headers["Location"] == "/admin/login/?next=/status/%3Fx%3D1"

        data = wait_for(
            lambda: all_alive(base),
            PERIODIC_TIMEOUT,
            message=lambda: f"not all alive: {status_json(base)}\n{runner.output()[-3000:]}",
        )
        assert [c["name"] for c in data["components"]] == ["web", "worker", "beat"]
        web, worker, beat = data["components"]
        # Shares are the plan's (runner.config.memory_plan) for the default 512 MB budget.
        # The shares `python -m runner plan` prints for the same environment (another PORT:
        # plan, like start, refuses one that is taken, and the shares do not depend on it).
        plan = subprocess.run(
            [sys.executable, "-m", "runner", "plan", "--json"],
            cwd=REPO_ROOT,
            env=runner_env | {"PORT": str(free_port())},
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        shares = json.loads(plan.stdout)["memory"]["shares_mb"]
        assert web["memory"]["pss_mb"] > 0 and web["memory"]["share_mb"] == shares["web"]
        assert worker["memory"]["share_mb"] == shares["worker"]
        # The plan at 512 MB: the threads pool, with beat as a thread: one process.
        assert worker["memory"]["processes"] == 1
        assert beat["program"] == "worker" and beat["memory"] is None
        assert (web["restarts"], worker["restarts"]) == (0, 0)
        assert data["redis"] | {"latency_ms": None} == {
            "configured": True,
            "url": f"redis://default:***@127.0.0.1:{redis_plain.port}/0",
            "reachable": True,
            "latency_ms": None,
            "tls": False,
            "verified": False,
            "error": None,
        }
        assert [s["name"] for s in data["schedules"]] == ["celery.backend_cleanup", "heartbeat"]
        assert redis_plain.password not in json.dumps(data)

        # A staff user logged in through the admin sees the page too.
        session = requests.Session()
        session.get(f"{base}/admin/login/", timeout=10)
        login = session.post(
            f"{base}/admin/login/?next=/status/",
            data={
                "username": STAFF_USER,
                "password": STAFF_PASSWORD,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
                "next": "/status/",
            },
            headers={"Referer": f"{base}/admin/login/"},
            timeout=10,
        )
        assert login.status_code == 200 and login.url == f"{base}/status/"
        assert "Service status" in login.text
        assert session.get(f"{base}/status/?format=json", timeout=10).json()["healthy"]

        # What a person sees, in a real browser.
        url = f"{base}/status/?token={TOKEN}"
        dom = run_chromium(tmp_path, "--dump-dom", url)
        text = re.sub(r"<[^>]+>", " ", dom)
        text = re.sub(r"\s+", " ", text)
        assert "Everything this instance runs is up." in text
        for name in ("web", "worker", "beat"):
            assert re.search(rf"\b{name}\b pid \d+ running", text), text
        assert len(re.findall(r"\d+\.\d MB", text)) >= 2
        assert "answered a ping" in text and "last sent app.tasks.record_heartbeat" in text
        assert "reachable answered PING" in text
        assert "no TLS: traffic is not encrypted" in text
        assert TOKEN not in text
        # Nor in the access log (stdout: the platform's logs), though the page was opened.
        wait_for(lambda: '"GET /status/ HTTP/1.1" 200' in runner.output(), PERIODIC_TIMEOUT)
        assert TOKEN not in runner.output() and "not-the-token" not in runner.output()
        # Laid out for a desk and for a phone: every cell shown, inside the window, nothing
        # wider than the window; the screenshots are kept for a person to look at.
        with Browser(tmp_path / "browser") as browser:
            for name, width, mobile in (("desktop", 1200, False), ("phone", 420, True)):
                browser.open(url, width, mobile=mobile)
                layout = browser.evaluate(LAYOUT)
                labels = {c["label"] for c in layout["cells"]}
                assert labels >= {"Memory (PSS)", "Last sign of life"}, labels
                assert layout_problems(layout) == [], (name, layout_problems(layout))
                shot = ARTIFACTS / f"status-page-{name}.png"
                shot.unlink(missing_ok=True)
                assert browser.screenshot(shot)[0] == width
                browser.open(f"{base}/", width, mobile=mobile)
                assert layout_problems(browser.evaluate(LAYOUT)) == [], name
                browser.screenshot(ARTIFACTS / f"home-page-{name}.png")

        # The terminal: same data, exit 0 while the service runs.
        cli = runner_status(runner_env)
        assert cli.returncode == 0, cli.stderr
        lines = cli.stdout.splitlines()
        assert lines[0] == "service   app.settings: all running"
        assert [
            line.split()[:2] for line in lines if line.startswith(("web ", "worker ", "beat "))
        ] == [
            ["web", "running,"],
            ["worker", "running,"],
            ["beat", "running,"],
        ]
        assert any(line.startswith("redis     reachable") for line in lines)
        as_json = runner_status(runner_env, "--json")
        assert as_json.returncode == 0, as_json.stderr
        assert [c["state"] for c in json.loads(as_json.stdout)["components"]] == ["running"] * 3

        # A crash shows as a restart: the worker's main process is killed, supervisord
        # starts it again, and the count goes up once it runs.
        psutil.Process(worker["pid"]).kill()
        wait_for(
            lambda: worker_after_restart(base, worker["pid"]),
            START_TIMEOUT,
            message=lambda: f"no restart counted: {status_json(base)['components'][1]}",
        )

        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=STOP_TIMEOUT) == 0, runner.output()[-3000:]

    stopped = runner_status(runner_env)
    assert stopped.returncode == 1
    assert stopped.stdout == ""
    assert stopped.stderr.startswith("runner | error: no runner is running from ")


# A stalled Redis (SIGSTOP: connections are accepted by the kernel, nothing answers).
STALL_BOUND_SECONDS = 6  # the sources' bound (2 s each: ping, PING) plus the rest of a request
HEALTH_BOUND_SECONDS = 2


def timed_get(url: str, **kwargs) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = requests.get(url, timeout=30, **kwargs)
    return time.monotonic() - started, response


def test_a_stalled_redis_bounds_the_status_and_leaves_the_site_up(
    runner_env, tmp_path: Path, redis_plain
):
    """While Redis answers nothing, /status.json answers within its bound and says so (not
    "ok"); concurrent status requests share one gathering, so /healthz and / still answer.
    The same while the worker is stopped."""
    runner_env |= {"REDIS_URL": redis_plain.url(), "RUNNER_STATUS_TOKEN": TOKEN}
    prepare_database(runner_env)
    base = f"http://127.0.0.1:{runner_env['PORT']}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"{base}/healthz", START_TIMEOUT, runner)
        wait_for(lambda: all_alive(base), PERIODIC_TIMEOUT, message=lambda: status_json(base))
        redis_pid = redis_plain.pid
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            # Past the sharing window: the next request gathers afresh, against the stall.
            time.sleep(SHARED_SECONDS + 0.5)  # not a synchronisation: a cache age
            results: dict[str, tuple[float, requests.Response]] = {}
            threads = [
                threading.Thread(
                    target=lambda k=k: results.update(
                        {k: timed_get(f"{base}/status.json", headers=auth)}
                    )
                )
                for k in ("first", "second")
            ]
            for thread in threads:
                thread.start()
            health = [timed_get(f"{base}/healthz") for _ in range(3)]
            for thread in threads:
                thread.join(STALL_BOUND_SECONDS * 3)
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        for took, response in results.values():
            assert response.status_code == 200 and took < STALL_BOUND_SECONDS, took
        for took, response in health:
            assert response.status_code == 200 and took < HEALTH_BOUND_SECONDS, took
        fresh = max(results.values(), key=lambda r: r[0])[1].json()  # the one that gathered
        assert fresh["redis"]["reachable"] is False
        worker = {c["name"]: c for c in fresh["components"]}["worker"]
        assert worker["sign_of_life"]["ok"] is False, worker
        print(
            "stalled Redis: status in "
            + ", ".join(f"{took:.2f} s" for took, _ in results.values())
            + "; /healthz in "
            + ", ".join(f"{took:.2f} s" for took, _ in health)
        )

        # A stopped worker (SIGSTOP of Celery's main process): its ping goes unanswered,
        # within the same bound, and the page says so.
        alive = wait_for(
            lambda: all_alive(base), PERIODIC_TIMEOUT, message=lambda: status_json(base)
        )
        worker_pid = {c["name"]: c for c in alive["components"]}["worker"]["pid"]
        os.kill(worker_pid, signal.SIGSTOP)
        try:
            time.sleep(SHARED_SECONDS + 0.5)  # not a synchronisation: a cache age
            took, response = timed_get(f"{base}/status.json", headers=auth)
            health_took, health_response = timed_get(f"{base}/healthz")
        finally:
            os.kill(worker_pid, signal.SIGCONT)
        assert response.status_code == 200 and took < STALL_BOUND_SECONDS, took
        assert health_response.status_code == 200 and health_took < HEALTH_BOUND_SECONDS
        worker = {c["name"]: c for c in response.json()["components"]}["worker"]
        assert worker["sign_of_life"]["ok"] is False, worker
        print(f"stopped worker: status in {took:.2f} s")
