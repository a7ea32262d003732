"""What a person wants to know about a running service, gathered into one ``Status``.

For each component (web, worker, beat): is it running, since when, how often it was
restarted, how much memory its processes use (PSS) against its share, and, for the worker
and beat, their last sign of life; then whether Redis answers and whether its TLS is
verified. Rendering is elsewhere: ``runner.web.status_view`` (the HTML page and JSON) and
``runner.status.text`` (``python -m runner status``) show the same ``Status``.

Where each fact comes from, and what it costs:
- supervisord, over its private control socket (XML-RPC ``getAllProcessInfo``): state,
  PID, last start; ``runner.supervise.runstate``'s start counts for restarts. Under the runner
  every program finds the socket in ``SUPERVISOR_SERVER_URL`` (supervisord sets it);
  another shell finds it through the pointer file in the data directory.
- psutil: PSS of each program's process tree (``runner.supervise.memory``), ~0.3 ms per process.
- Celery: a broadcast ``ping`` to the workers, answered by their main process even while
  every pool process is busy; bounded by ``PING_TIMEOUT_SECONDS``.
- beat's record in the data directory (``runner.worker.beat_record``): this instance's
  beat, its start and its last send, whatever the scheduler.
- django_celery_beat's tables (when the project uses its ``DatabaseScheduler``): each
  periodic task's last run (any instance's beat) and, from its schedule, when it is due
  next, as beat computes it. Other schedulers keep their schedules where they cannot be
  read safely from outside.
- Redis: one ``PING`` with a short timeout, using the same URL and TLS options as Celery.
The ping and the PING each end within ``SOURCE_BOUND_SECONDS`` whatever Redis does. Each
source fails on its own: a failure becomes a line in the status, never an exception
for the page.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from supervisor.xmlrpc import SupervisorTransport

from runner.config.budget import read_container_limit, resolve_budget
from runner.config.plan import Plan, make_plan
from runner.config.project import find_project
from runner.config.redis import RedisSettings, client_args, mask_url
from runner.config.settings import Settings, beat_record_path, load_settings
from runner.config.supervisord_conf import LIMITS_NAME
from runner.status import when
from runner.supervise.discover import read_manage_py
from runner.supervise.exits import PAUSED
from runner.supervise.memory import sample_tree
from runner.supervise.runstate import read_pointer, read_starts, run_dir_of
from runner.supervise.watchdog import Limits

UTC = timezone.utc  # datetime.UTC from Python 3.11

T = TypeVar("T")
COMPONENTS = ("web", "worker", "beat")
SUPERVISOR_TIMEOUT_SECONDS = 3.0
PING_TIMEOUT_SECONDS = 1.0
REDIS_TIMEOUT_SECONDS = 1.0
# The worker ping and the Redis PING each end within this, whatever Redis does (a stalled
# server answers nothing and the socket timeouts may add up): what is not back by then is
# reported as not answering. Two status requests then never hold the web's threads long.
SOURCE_BOUND_SECONDS = 2.0
# A status gathered by the web is the answer to every request of this long after it
# (runner.web.status_view.SharedStatus).
SHARED_SECONDS = 5.0
# Beat saves its schedule after every send (runner.worker.beat_record), so a schedule whose
# due time has passed is late once beat had its chance: its loop wakes at least every
# 5 s (django_celery_beat) and the send and save take a moment; a minute is generous.
OVERDUE_AFTER_SECONDS = 60
DATABASE_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
MB = 1024 * 1024

# supervisord's state names, in the words the page uses.
STATE_WORDS = {
    "RUNNING": "running",
    "STARTING": "starting",
    "BACKOFF": "restarting",  # exited right after starting; supervisord retries
    "STOPPING": "stopping",
    "STOPPED": "stopped",
    "EXITED": "exited",
    "FATAL": "failed",
    "UNKNOWN": "unknown",
}
NOT_RUN_HERE = "not run here"


@dataclass(frozen=True)
class Memory:
    """PSS of one program's process tree against its share of the budget."""

    pss_mb: float
    processes: int
    share_mb: float | None = None  # None until the plan carries per-program shares


@dataclass(frozen=True)
class SignOfLife:
    """The last thing a component did that proves it works; ``ok`` None means unknown."""

    ok: bool | None
    summary: str
    at: datetime | None = None


@dataclass(frozen=True)
class Component:
    """One of web, worker, beat, as this instance sees it."""

    name: str
    planned: bool  # this instance runs it (RUN_WEB / RUN_WORKER / RUN_BEAT)
    program: str | None  # the supervisord program running it; "worker" for embedded beat
    state: str  # STATE_WORDS values, or NOT_RUN_HERE
    pid: int | None = None
    since: datetime | None = None
    restarts: int | None = None
    memory: Memory | None = None
    sign_of_life: SignOfLife | None = None
    note: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class Schedule:
    """One periodic task beat sends, with its last run and when it is due next."""

    name: str
    task: str
    every: str
    last_run_at: datetime | None
    next_due_at: datetime | None
    overdue: bool


@dataclass(frozen=True)
class BeatRecord:
    """This instance's beat, as it wrote itself down (``runner.worker.beat_record``)."""

    pid: int
    started_at: datetime
    task: str | None = None
    sent_at: datetime | None = None
    alive: bool = True


@dataclass(frozen=True)
class RedisStatus:
    """Whether Redis answers, and how the connection is secured."""

    configured: bool
    url: str | None  # masked
    reachable: bool | None = None
    latency_ms: float | None = None
    tls: bool = False
    verified: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Status:
    """Everything the status page, its JSON and ``runner status`` show."""

    checked_at: datetime
    project: str
    supervisor_url: str | None
    components: tuple[Component, ...]
    redis: RedisStatus
    scheduler: str | None = None
    schedules: tuple[Schedule, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        """Nothing wrong: every planned component runs, or is within its start period
        (supervisord's ``starting``, ``START_SECONDS``), and none shows a failed sign."""
        return not self.problems and all(
            c.state in ("running", "starting")
            and (c.sign_of_life is None or c.sign_of_life.ok is not False)
            for c in self.components
            if c.planned
        )

    @property
    def starting(self) -> bool:
        """Healthy, with a component still within its start period."""
        return self.healthy and any(c.state == "starting" for c in self.components if c.planned)

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def to_json(self) -> dict:
        """Plain JSON types: datetimes as ISO 8601 strings, everything else as is."""

        def convert(value):
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {key: convert(item) for key, item in value.items()}
            if isinstance(value, (list, tuple)):
                return [convert(item) for item in value]
            return value

        data = convert(asdict(self))
        data["healthy"] = self.healthy
        data["starting"] = self.starting
        for component in data["components"]:
            component["running"] = component["state"] == "running"
        return data


# --- supervisord -------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    """supervisor's UnixStreamHTTPConnection, with a timeout (a hung supervisord must not
    hang the status page)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def supervisor_proxy(url: str, timeout: float = SUPERVISOR_TIMEOUT_SECONDS):
    """An XML-RPC proxy for supervisord at ``unix:///path/to/socket``."""
    transport = SupervisorTransport(None, None, url)
    path = url.removeprefix("unix://")
    transport._get_connection = lambda: _UnixConnection(path, timeout)
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


class ShuttingDownError(Exception):
    """supervisord refuses questions while it stops the service."""

    def __str__(self) -> str:
        return "the service is shutting down"


def read_process_info(url: str) -> list[dict]:
    """supervisord's ``getAllProcessInfo``: name, statename, pid, start, spawnerr, ..."""
    try:
        return supervisor_proxy(url).supervisor.getAllProcessInfo()
    except xmlrpc.client.Fault as fault:
        if "SHUTDOWN_STATE" in fault.faultString:
            raise ShuttingDownError from None
        raise


# --- Assembly (pure) ---------------------------------------------------------------------


def plan_shares(plan: Plan) -> Mapping[str, float]:
    """Each program's memory share in MB, from the plan; empty while the plan has none."""
    # The memory budget (runner.config.budget) hands out per-program shares through the plan;
    # until the plan carries them, memory is shown without a share ("share_mb": null).
    return getattr(plan, "shares_mb", None) or {}


def _since(info: Mapping) -> datetime | None:
    start = info.get("start") or 0
    return datetime.fromtimestamp(start, UTC) if start else None


def assemble_components(
    plan: Plan,
    infos: Sequence[Mapping],
    starts: Mapping[str, int],
    memory: Mapping[str, Memory],
    signs: Mapping[str, SignOfLife],
) -> tuple[Component, ...]:
    """Web, worker and beat from supervisord's process info and the other sources."""
    by_name = {info["name"]: info for info in infos}
    components = []
    for name in COMPONENTS:
        program = name
        note = ""
        if name == "beat" and _worker_embeds_beat(plan):
            program = "worker"
            note = "embedded in the worker (BEAT_MODE=embedded): its memory is the worker's"
        if program not in plan.program_names:
            components.append(
                Component(
                    name,
                    planned=False,
                    program=None,
                    state=NOT_RUN_HERE,
                    sign_of_life=signs.get(name),
                    note=f"RUN_{name.upper()} is false for this instance",
                )
            )
            continue
        info = by_name.get(program)
        if info is None:
            components.append(
                Component(name, True, program, "unknown", note="supervisord does not list it")
            )
            continue
        state = STATE_WORDS.get(info.get("statename", "UNKNOWN"), "unknown")
        spawn_error = info.get("spawnerr") or ""
        if spawn_error.startswith(PAUSED):  # runner.supervise.exits: a pause, then a start
            state = STATE_WORDS["BACKOFF"]
        if spawn_error:
            note = f"{note}; {spawn_error}" if note else spawn_error
        components.append(
            Component(
                name,
                planned=True,
                program=program,
                state=state,
                pid=info.get("pid") or None,
                since=_since(info) if state == "running" else None,
                restarts=max(starts.get(program, 1) - 1, 0) if starts else None,
                memory=None if program != name else memory.get(program),
                sign_of_life=signs.get(name),
                note=note,
            )
        )
    return tuple(components)


def _worker_embeds_beat(plan: Plan) -> bool:
    return "worker" in plan.program_names and "--beat" in plan.program("worker").command


# --- Memory ------------------------------------------------------------------------------


def program_memory(infos: Sequence[Mapping], shares: Mapping[str, float]) -> dict[str, Memory]:
    """PSS of each running program's process tree (the program and all its children)."""
    result = {}
    for info in infos:
        pid = info.get("pid")
        if not pid:
            continue
        tree = sample_tree(pid)
        if tree.processes:
            result[info["name"]] = Memory(
                pss_mb=round(tree.pss / MB, 1),
                processes=len(tree.processes),
                share_mb=shares.get(info["name"]),
            )
    return result


# --- Worker and beat ---------------------------------------------------------------------


def worker_sign(celery_app, timeout: float = PING_TIMEOUT_SECONDS) -> SignOfLife:
    """Ping the workers; the first answer proves that the broker and a worker work."""
    started = time.monotonic()
    try:
        # A connection of its own, and the ping published on it: `control.ping()` would take
        # a second connection from the app's producer pool, which runner.config.connections sizes
        # for the web's own task sending (one per thread), and wait forever for it.
        # Socket timeouts on every Redis call of the ping (kombu's own transport options;
        # other transports ignore them): a stalled Redis is an answer, not a wait.
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        with celery_app.connection_for_write(transport_options=options) as connection:
            mailbox = celery_app.control.mailbox(connection)
            mailbox._producer_pool = None  # kombu then publishes on this connection's channel
            # One answer proves the worker side works; without a limit, ping always waits
            # the whole timeout for more.
            replies = mailbox._broadcast("ping", {}, reply=True, timeout=timeout, limit=1)
    except Exception as error:  # any broker failure is a fact to show, not a crash
        return SignOfLife(False, f"cannot ping workers: {error.__class__.__name__}: {error}")
    now = datetime.now(UTC)
    if not replies:
        return SignOfLife(False, f"no worker answered a ping within {timeout:g} s", None)
    elapsed_ms = (time.monotonic() - started) * 1000
    name = next(iter(replies[0]), "a worker")
    if elapsed_ms > timeout * 1000:
        # An answer that came late proves the worker is alive, not that things are well.
        return SignOfLife(
            False, f"{name} answered a ping late ({elapsed_ms:.0f} ms, bound {timeout:g} s)", now
        )
    return SignOfLife(True, f"{name} answered a ping ({elapsed_ms:.0f} ms)", now)


def within(seconds: float, read: Callable[[], T], late: Callable[[], T]) -> T:
    """``read()``, or ``late()`` if it is not back within ``seconds``.

    ``read`` runs in a daemon thread, which its own socket timeouts end soon after; the
    caller does not wait for that.
    """
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(read()), daemon=True)
    thread.start()
    thread.join(seconds)
    return result[0] if result else late()


def database_schedules(now: datetime, beat_started: datetime | None = None) -> tuple[Schedule, ...]:
    """Enabled periodic tasks from django_celery_beat's tables, with their next due time as
    beat computes it (``schedule.remaining_estimate`` from the last run)."""
    from django_celery_beat.models import PeriodicTask

    schedules = []
    for task in PeriodicTask.objects.filter(enabled=True).order_by("name"):
        try:
            schedule = task.schedule
        except Exception:  # a task without a valid schedule: beat skips it too
            continue
        # A task that never ran counts from when beat loaded it (its ModelEntry takes "now"
        # then): this beat's start, or the task's last change if that came later.
        loaded = [t for t in (task.date_changed, beat_started) if t is not None]
        base = task.last_run_at or (max(loaded) if loaded else now)
        # The schedule's own clock, stopped at this gathering's "now": its remaining time
        # is then counted from the same instant (not from a moment later, which showed a
        # 04:00 crontab as due at 03:59:59).
        zone = getattr(schedule, "tz", None)
        schedule.nowfun = lambda zone=zone: now.astimezone(zone) if zone else now
        try:
            next_due = _whole_second(now + schedule.remaining_estimate(base))
        except Exception:  # e.g. a clocked schedule that already fired
            next_due = None
        overdue = next_due is not None and (now - next_due).total_seconds() > OVERDUE_AFTER_SECONDS
        schedules.append(
            Schedule(
                name=task.name,
                task=task.task,
                every=schedule_words(task),
                last_run_at=task.last_run_at,
                next_due_at=next_due,
                overdue=overdue,
            )
        )
    return tuple(schedules)


def _whole_second(moment: datetime) -> datetime:
    # remaining_estimate is computed from "now" to the microsecond: 03:59:59.999 is 04:00.
    return datetime.fromtimestamp(round(moment.timestamp()), moment.tzinfo)


def schedule_words(task) -> str:
    """A periodic task's schedule in words: django_celery_beat's for intervals ("every
    minute"), a reading of the common crontabs ("every day at 04:00 UTC"), the fields
    otherwise ("cron 0 4 * * 1-5 UTC")."""
    crontab = task.crontab
    if crontab is None:
        return str(task.interval or task.solar or task.clocked or "")
    minute, hour = str(crontab.minute), str(crontab.hour)
    rest = (str(crontab.day_of_month), str(crontab.month_of_year), str(crontab.day_of_week))
    zone = str(getattr(crontab, "timezone", "") or "UTC")
    if rest == ("*", "*", "*") and minute.isdigit():
        if hour.isdigit():
            return f"every day at {int(hour):02d}:{int(minute):02d} {zone}"
        if hour == "*":
            return f"every hour at minute {int(minute)}"
    return f"cron {minute} {hour} {' '.join(rest)} {zone}"


def read_beat_record(path: Path) -> BeatRecord | None:
    """This instance's beat record, or None when there is none (or it cannot be read)."""
    try:
        data = json.loads(path.read_text())
        sent_at = data.get("sent_at")
        pid = int(data["pid"])
        return BeatRecord(
            pid=pid,
            started_at=datetime.fromtimestamp(float(data["started_at"]), UTC),
            task=data.get("task"),
            sent_at=datetime.fromtimestamp(float(sent_at), UTC) if sent_at else None,
            alive=psutil.pid_exists(pid),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def beat_sign(
    schedules: Sequence[Schedule],
    now: datetime,
    record: BeatRecord | None = None,
    here: bool = True,
) -> SignOfLife:
    """Beat's last sign of life: what this instance's beat sent last (its record), and
    whether any schedule is overdue (from the database: any instance's beat may send).
    Where beat runs in another service (``here`` false: RUN_BEAT=false, scaled out), its
    record is on that service's disk: the database's last runs speak for it."""
    overdue = [s.name for s in schedules if s.overdue]
    last_at = record.sent_at if record is not None else None
    if overdue:
        return SignOfLife(
            False, "overdue: " + ", ".join(overdue) + " (beat is not sending them)", last_at
        )
    if not here:
        runs = [s.last_run_at for s in schedules if s.last_run_at is not None]
        if runs:
            last = max(runs)
            return SignOfLife(
                True, f"runs in another service; last run {when.relative(last, now)}", last
            )
        return SignOfLife(None, "runs in another service (RUN_BEAT is false here)", None)
    if record is None:
        return SignOfLife(None, "has not written its record yet (starting)", None)
    if not record.alive:
        return SignOfLife(False, f"its process (pid {record.pid}) is gone", last_at)
    if record.sent_at is None:
        started = when.relative(record.started_at, now)
        return SignOfLife(None, f"has not sent a task yet (started {started})", None)
    return SignOfLife(
        True, f"last sent {record.task} {when.relative(record.sent_at, now)}", record.sent_at
    )


# --- Redis -------------------------------------------------------------------------------


def redis_status(settings: RedisSettings, timeout: float = REDIS_TIMEOUT_SECONDS) -> RedisStatus:
    """One PING with a short timeout, with the URL and TLS options Celery uses."""
    url = settings.url or settings.broker_url
    if not url or not url.startswith(("redis://", "rediss://")):
        return RedisStatus(configured=False, url=None)
    tls = url.startswith("rediss://")
    verified = tls and settings.tls_for(url).verified
    base = RedisStatus(True, mask_url(url), tls=tls, verified=verified)
    client_url, tls_kwargs = client_args(settings, url)
    client = redis.Redis.from_url(
        client_url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        **tls_kwargs,
    )
    started = time.monotonic()
    try:
        client.ping()
    except redis.RedisError as error:
        return RedisStatus(
            **{**asdict(base), "reachable": False, "error": f"{error.__class__.__name__}: {error}"}
        )
    finally:
        client.close()
    latency = round((time.monotonic() - started) * 1000, 1)
    return RedisStatus(**{**asdict(base), "reachable": True, "latency_ms": latency})


def bounded_redis_status(settings: RedisSettings) -> RedisStatus:
    """``redis_status``, reported as unreachable if it is not back in SOURCE_BOUND_SECONDS."""
    url = settings.url or settings.broker_url
    return within(
        SOURCE_BOUND_SECONDS,
        lambda: redis_status(settings),
        lambda: RedisStatus(
            True,
            mask_url(url),
            tls=bool(url and url.startswith("rediss://")),
            reachable=False,
            error=f"no answer within {SOURCE_BOUND_SECONDS:g} s",
        ),
    )


# --- Everything --------------------------------------------------------------------------


def _attempt(problems: list[str], what: str, gather: Callable, default):
    try:
        return gather()
    except ShuttingDownError as error:
        problems.append(str(error))
    except Exception as error:  # one source failing must not hide the others
        problems.append(f"{what}: {error.__class__.__name__}: {error}")
    return default


@dataclass
class Sources:
    """Where gather() reads from; tests and callers without Django leave parts out."""

    supervisor_url: str | None
    celery_app: object | None = None  # None: no worker ping, no schedules
    django_ready: bool = False  # Django is set up, so its database can be read
    data_dir: Path | None = None  # where this instance's beat keeps its record
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def gather(plan: Plan, redis_settings: RedisSettings, sources: Sources) -> Status:
    """Read every source once and assemble the Status (never raises for a source)."""
    problems: list[str] = []
    now = sources.now()
    infos: list[dict] = []
    starts: dict[str, int] = {}
    if sources.supervisor_url:
        infos = _attempt(
            problems,
            "supervisord",
            lambda: read_process_info(sources.supervisor_url),
            [],
        )
        starts = read_starts(run_dir_of(sources.supervisor_url))
    else:
        problems.append("not running under the runner (no supervisord to ask)")
    memory = _attempt(
        problems, "memory could not be read", lambda: program_memory(infos, plan_shares(plan)), {}
    )

    signs: dict[str, SignOfLife] = {}
    scheduler = None
    schedules: tuple[Schedule, ...] = ()
    app = sources.celery_app
    if app is not None:
        signs["worker"] = within(
            SOURCE_BOUND_SECONDS,
            lambda: worker_sign(app),
            lambda: SignOfLife(
                False, f"no worker answered a ping within {SOURCE_BOUND_SECONDS:g} s", None
            ),
        )
        scheduler = str(app.conf.beat_scheduler)
        record = read_beat_record(beat_record_path(sources.data_dir)) if sources.data_dir else None
        if scheduler == DATABASE_SCHEDULER and sources.django_ready:
            beat_started = record.started_at if record is not None else None
            schedules = _attempt(
                problems,
                "periodic tasks could not be read",
                lambda: database_schedules(now, beat_started),
                (),
            )
        here = any(p.name == "beat" for p in plan.programs) or _worker_embeds_beat(plan)
        signs["beat"] = beat_sign(schedules, now, record, here=here)

    return Status(
        checked_at=now,
        project=plan.project.settings_module,
        supervisor_url=sources.supervisor_url,
        components=assemble_components(plan, infos, starts, memory, signs),
        redis=bounded_redis_status(redis_settings),
        scheduler=scheduler,
        schedules=schedules,
        problems=tuple(problems),
    )


def find_supervisor(environ: Mapping[str, str], data_dir: Path) -> str | None:
    """supervisord's control URL: our own parent's (under the runner), or the pointer's."""
    url = environ.get("SUPERVISOR_SERVER_URL")
    if url and url.startswith("unix://"):
        return url
    pointer = read_pointer(data_dir)
    return pointer.supervisor_url if pointer else None


def celery_app_of(plan: Plan):
    """The project's Celery app, found the way ``celery -A`` finds it."""
    from celery.app.utils import find_app

    return find_app(plan.project.celery_app)


def load_plan(environ: Mapping[str, str], cwd: Path) -> tuple[Settings, Plan]:
    """Settings and plan as the running service made them, without importing the project
    again (``runner.supervise.launch.load`` also checks the project by importing it)."""
    settings = load_settings(environ, cwd)
    project = find_project(
        settings.django_settings_module, settings.celery_app, read_manage_py(cwd)
    )
    # The same budget as runner.supervise.launch found: this machine's cgroup, or MEMORY_BUDGET_MB.
    budget = resolve_budget(settings.memory_budget_mb, read_container_limit())
    plan = make_plan(settings, project, budget)
    # The shares the running service works with: its plan also knew what only importing the
    # project tells (time limits choose the pool), so they come from its run directory.
    shares = running_shares(settings.data_dir)
    if shares and plan.memory is not None:
        plan = replace(plan, memory=replace(plan.memory, shares_mb=shares))
    return settings, plan


def running_shares(data_dir: Path) -> dict[str, int] | None:
    """The memory shares of the service running from ``data_dir`` (its watchdog's limits)."""
    pointer = read_pointer(data_dir)
    if pointer is None:
        return None
    try:
        limits = json.loads((run_dir_of(pointer.supervisor_url) / LIMITS_NAME).read_text())
        return Limits.from_dict(limits).shares_mb
    except (OSError, ValueError, KeyError, TypeError):
        return None
