"""The status data without a running service: assembly from supervisord's answers, beat's
sign of life, the JSON shape, the terminal text, and the pointer and start-count files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runner.config.plan import Plan, make_plan
from runner.config.project import Project
from runner.config.redis import RedisSettings, TLSOptions
from runner.config.settings import load_settings
from runner.status import text, when
from runner.status.gather import (
    NOT_RUN_HERE,
    BeatRecord,
    Component,
    Memory,
    RedisStatus,
    Schedule,
    SignOfLife,
    Status,
    assemble_components,
    beat_sign,
    read_beat_record,
    redis_status,
)
from runner.status.text import render_text
from runner.supervise import runstate
from runner.supervise.exits import PAUSED
from runner.worker import beat_record as beat_record_module

UTC = timezone.utc  # datetime.UTC from Python 3.11

CWD = Path("/srv/project")
PROJECT = Project("app.settings", "manage.py", "app", "top package of app.settings")
NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
STARTED = NOW - timedelta(minutes=5)
WORKER_SIGN = SignOfLife(True, "celery@host answered a ping (3 ms)", NOW)
# No REDIS_URL: nothing to ping.
LOCAL_DEFAULT_REDIS = RedisStatus(configured=False, url=None)


def plan_for(environ: dict[str, str]) -> Plan:
    return make_plan(load_settings(environ, CWD), PROJECT)


def info(name: str, statename: str = "RUNNING", pid: int = 100, spawnerr: str = "") -> dict:
    """One entry of supervisord's getAllProcessInfo, as XML-RPC returns it."""
    return {
        "name": name,
        "statename": statename,
        "pid": pid if statename == "RUNNING" else 0,
        "start": int(STARTED.timestamp()),
        "spawnerr": spawnerr,
    }


def test_embedded_beat_is_reported_as_part_of_the_worker():
    """Embedded beat shows the worker's state, PID and restarts, and no memory of its own."""
    memory = {"web": Memory(80.0, 3), "worker": Memory(120.0, 4)}
    components = assemble_components(
        plan_for({}),
        [info("web", pid=10), info("worker", pid=20)],
        {"web": 1, "worker": 3},
        memory,
        {"worker": WORKER_SIGN},
    )
    assert components == (
        Component("web", True, "web", "running", 10, STARTED, 0, memory["web"]),
        Component(
            "worker", True, "worker", "running", 20, STARTED, 2, memory["worker"], WORKER_SIGN
        ),
        Component(
            "beat",
            True,
            "worker",
            "running",
            20,
            STARTED,
            2,
            None,
            None,
            "embedded in the worker (BEAT_MODE=embedded): its memory is the worker's",
        ),
    )


@pytest.mark.parametrize(
    ("environ", "planned"),
    [
        ({"BEAT_MODE": "separate"}, ("web", "worker", "beat")),
        ({"RUN_WORKER": "false", "RUN_BEAT": "false"}, ("web",)),
        ({"RUN_WEB": "false", "RUN_BEAT": "false"}, ("worker",)),
        ({"RUN_WEB": "false", "RUN_WORKER": "false"}, ("beat",)),
    ],
)
def test_components_this_instance_does_not_run_say_so(environ, planned):
    """Scaled out, each service shows the other components as "not run here"."""
    plan = plan_for(environ)
    infos = [info(name) for name in plan.program_names]
    components = assemble_components(plan, infos, {}, {}, {})
    assert tuple(c.name for c in components if c.planned) == planned
    for component in components:
        if not component.planned:
            assert (component.state, component.program) == (NOT_RUN_HERE, None)
            assert component.note == f"RUN_{component.name.upper()} is false for this instance"


@pytest.mark.parametrize(
    ("statename", "word"),
    [
        ("STARTING", "starting"),
        ("BACKOFF", "restarting"),
        ("FATAL", "failed"),
        ("EXITED", "exited"),
    ],
)
def test_supervisord_states_become_words_and_only_running_has_a_since(statename, word):
    """A program that is not running has no "since", and its spawn error is shown."""
    plan = plan_for({"RUN_WORKER": "false", "RUN_BEAT": "false"})
    [web, *_] = assemble_components(
        plan, [info("web", statename, spawnerr="can't find command")], {"web": 4}, {}, {}
    )
    assert (web.state, web.since, web.restarts, web.note) == (word, None, 3, "can't find command")
    assert not web.running


def test_restarts_are_unknown_without_start_counts():
    """Without the start-count file, restarts are shown as unknown rather than as zero."""
    plan = plan_for({"RUN_WORKER": "false", "RUN_BEAT": "false"})
    [web, *_] = assemble_components(plan, [info("web")], {}, {}, {})
    assert web.restarts is None


def schedule(name: str, last_minutes_ago: float | None, overdue: bool = False) -> Schedule:
    last = None if last_minutes_ago is None else NOW - timedelta(minutes=last_minutes_ago)
    return Schedule(name, f"app.tasks.{name}", "every minute", last, NOW, overdue)


def record(sent_minutes_ago: float | None, task: str = "app.tasks.b", alive: bool = True):
    sent = None if sent_minutes_ago is None else NOW - timedelta(minutes=sent_minutes_ago)
    return BeatRecord(4321, STARTED, task if sent else None, sent, alive)


def test_beat_sign_of_life_is_this_instances_last_send_unless_something_is_overdue():
    """Beat is alive when its own record shows a recent send and nothing is overdue; the
    database's last runs (any instance's) do not count for it; unknown before its first."""
    assert beat_sign([schedule("a", 3), schedule("b", 1)], NOW, record(1)) == SignOfLife(
        True, "last sent app.tasks.b 60 s ago", NOW - timedelta(minutes=1)
    )
    # Another instance's beat sent a minute ago; this one (just restarted) has not yet.
    assert beat_sign([schedule("b", 1)], NOW, record(None)) == SignOfLife(
        None, "has not sent a task yet (started 5 min ago)"
    )
    assert beat_sign([schedule("a", None)], NOW, None) == SignOfLife(
        None, "has not written its record yet (starting)"
    )
    assert beat_sign([schedule("a", 30, overdue=True)], NOW, record(30)) == SignOfLife(
        False, "overdue: a (beat is not sending them)", NOW - timedelta(minutes=30)
    )
    assert beat_sign([], NOW, record(2, alive=False)) == SignOfLife(
        False, "its process (pid 4321) is gone", NOW - timedelta(minutes=2)
    )


def test_beat_in_another_service_is_judged_by_the_database_not_starting_for_ever():
    """Scaled out (RUN_BEAT=false here), beat's record is on the beat service's disk: the
    database's last runs speak for it, and overdue schedules still say it is not sending."""
    assert beat_sign([schedule("a", 3), schedule("b", 1)], NOW, None, here=False) == SignOfLife(
        True, "runs in another service; last run 60 s ago", NOW - timedelta(minutes=1)
    )
    assert beat_sign([], NOW, None, here=False) == SignOfLife(
        None, "runs in another service (RUN_BEAT is false here)"
    )
    overdue = beat_sign([schedule("a", 30, overdue=True)], NOW, None, here=False)
    assert overdue.ok is False


def test_the_record_beat_writes_is_read_back(tmp_path):
    """What runner.worker.beat_record writes in the beat process, gather reads."""
    path = tmp_path / "beat.json"
    writer = beat_record_module.BeatRecord(path)
    writer.started()
    assert read_beat_record(path) == BeatRecord(
        os.getpid(), read_beat_record(path).started_at, None, None, True
    )
    writer.sent(sender="app.tasks.x", headers={"task": "app.tasks.record_heartbeat"})
    read = read_beat_record(path)
    assert read.task == "app.tasks.record_heartbeat" and read.sent_at is not None
    assert [p.name for p in tmp_path.iterdir()] == ["beat.json"]  # no temporary left
    path.write_text("{not json")
    assert read_beat_record(path) is None
    assert read_beat_record(tmp_path / "missing.json") is None


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0, "0 s"), (89, "89 s"), (90, "2 min"), (1755, "29 min"), (5399, "90 min"),
     (5400, "1 h 30 min"), (3 * 86400, "3 days")],
)  # fmt: skip
def test_durations_read_the_same_on_the_page_and_in_the_terminal(seconds, words):
    assert when.duration(seconds) == words
    assert when.relative(NOW - timedelta(seconds=seconds), NOW) == f"{words} ago"
    if seconds:
        assert when.relative(NOW + timedelta(seconds=seconds), NOW) == f"in {words}"


def test_a_component_within_its_start_period_is_starting_not_attention():
    """supervisord's STARTING (the first START_SECONDS) is healthy, said as "starting"."""
    starting = Component("worker", True, "worker", "starting", 20, None, 0, None, WORKER_SIGN)
    current = status(components=(starting,))
    assert current.healthy and current.starting
    assert render_text(current).splitlines()[0] == (
        "service   app.settings: starting (a component is within its start period)"
    )
    failing = replace(starting, sign_of_life=SignOfLife(False, "no answer"))
    assert not status(components=(failing,)).healthy
    assert not status(components=(replace(starting, state="restarting"),)).healthy


def status(**changes) -> Status:
    fields = {
        "checked_at": NOW,
        "project": "app.settings",
        "supervisor_url": "unix:///tmp/runner-x/supervisor.sock",
        "components": (
            Component("web", True, "web", "running", 10, STARTED, 0, Memory(80.0, 3)),
            Component("worker", True, "worker", "running", 20, STARTED, 1, Memory(120.5, 4)),
            Component("beat", False, None, NOT_RUN_HERE, note="RUN_BEAT is false"),
        ),
        "redis": LOCAL_DEFAULT_REDIS,
    }
    return Status(**(fields | changes))


def test_json_has_every_field_with_a_place_for_the_memory_share():
    """The JSON is plain types, datetimes in ISO 8601, and share_mb present (null) per program."""
    data = json.loads(json.dumps(status().to_json()))
    web = data["components"][0]
    assert web == {
        "name": "web",
        "planned": True,
        "program": "web",
        "state": "running",
        "running": True,
        "pid": 10,
        "since": STARTED.isoformat(),
        "restarts": 0,
        "memory": {"pss_mb": 80.0, "processes": 3, "share_mb": None},
        "sign_of_life": None,
        "note": "",
    }
    assert data["redis"]["configured"] is False
    assert data["healthy"] is True


def test_a_failing_worker_ping_makes_the_status_unhealthy():
    """A running worker that does not answer its ping is not healthy."""
    silent = Component(
        "worker", True, "worker", "running", 20, STARTED, 0, None, SignOfLife(False, "no answer")
    )
    assert not status(components=(silent,)).healthy
    assert status(components=(silent,)).to_json()["healthy"] is False


def test_terminal_text_shows_each_component_on_its_own_line():
    """`runner status` prints one aligned line per component, then Redis."""
    text = render_text(status())
    assert text.splitlines() == [
        "service   app.settings: all running",
        "checked   2026-01-02 12:00:00 UTC",
        "web       running, pid 10, since 11:55:00 (5 min ago), restarts 0, "
        "memory 80.0 MB (3 processes)",
        "worker    running, pid 20, since 11:55:00 (5 min ago), restarts 1, "
        "memory 120.5 MB (4 processes)",
        "beat      not run here",
        "          RUN_BEAT is false",
        "redis     not used (local default: no REDIS_URL)",
    ]


def test_redis_status_reports_an_unreachable_server_without_raising():
    """A Redis that does not answer is a fact in the status (with TLS flags), not an error."""
    url = "rediss://default:secret@127.0.0.1:9/0"  # the discard port: nothing listens
    settings = RedisSettings(url, url, url, False, TLSOptions("required"), 30)
    result = redis_status(settings, timeout=0.5)
    assert (result.configured, result.reachable, result.tls, result.verified) == (
        True,
        False,
        True,
        True,
    )
    assert result.url == "rediss://default:***@127.0.0.1:9/0"
    assert "secret" not in (result.error or "")


def test_pointer_of_a_live_process_is_read_back(tmp_path):
    """The pointer written for a live PID is found again, with its run directory."""
    runstate.write_pointer(tmp_path, os.getpid(), "unix:///r/x/s.sock", CWD)
    pointer = runstate.read_pointer(tmp_path)
    assert pointer is not None
    assert (pointer.pid, pointer.supervisor_url, pointer.run_dir) == (
        os.getpid(),
        "unix:///r/x/s.sock",
        Path("/r/x"),
    )


def test_a_stale_pointer_reads_as_nothing_running_and_is_removed(tmp_path):
    """A pointer whose process has exited is removed when read."""
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(finished.stdout)
    (tmp_path / runstate.POINTER_NAME).write_text(
        json.dumps({"pid": pid, "create_time": 1.0, "supervisor_url": "unix:///x", "cwd": "/"})
    )
    assert runstate.read_pointer(tmp_path) is None
    assert not (tmp_path / runstate.POINTER_NAME).exists()


def test_garbage_in_the_pointer_reads_as_nothing_running(tmp_path):
    """An unreadable pointer is treated like a stale one."""
    (tmp_path / runstate.POINTER_NAME).write_text("{not json")
    assert runstate.read_pointer(tmp_path) is None


def test_start_counts_round_trip(tmp_path):
    """Start counts written by the supervisor are read back; a missing file reads as empty."""
    assert runstate.read_starts(tmp_path) == {}
    runstate.write_starts(tmp_path, {"web": 1, "worker": 3})
    assert runstate.read_starts(tmp_path) == {"web": 1, "worker": 3}


def test_a_program_paused_by_the_runner_reads_as_restarting():
    """A worker held STOPPED during its pause (runner.supervise.exits) is "restarting"."""
    plan = plan_for({"RUN_WEB": "false", "RUN_BEAT": "false"})
    components = assemble_components(
        plan, [info("worker", "STOPPED", spawnerr=f"{PAUSED}: starting again in 8 s")], {}, {}, {}
    )
    assert {c.name: c.state for c in components}["worker"] == "restarting"


@pytest.mark.parametrize(("healthy", "exit_status"), [(True, 0), (False, 1)])
def test_runner_status_exits_non_zero_when_not_healthy(monkeypatch, capsys, healthy, exit_status):
    """`python -m runner status`: 0 when all is well, 1 when a component is down or
    restarting, so that scripts and health checks can act on it."""
    current = status()
    if not healthy:
        down = replace(current.components[1], state="restarting")
        current = status(components=(current.components[0], down))
    monkeypatch.setattr(text, "collect", lambda _environ, _cwd: current)
    assert text.main({}, Path("."), as_json=False) == exit_status
    assert capsys.readouterr().out.startswith("service   app.settings")
