"""The wake as Render's free instance sees it: launch to the first page under a 0.1-CPU quota.

    .venv/bin/python -m bench.wake_quota [--runs 2] [--cpu 0.1]

A sleeping free instance wakes when a request arrives: the container starts, and the user
waits for the first 200 with a tenth of a core. Here each layout is started inside a cgroup
whose CPU quota is that tenth (cgroup v1 ``cpu.cfs_quota_us`` = 10000 for a 100000 period, or
v2 ``cpu.max``; root makes it, and removes it at the end), from a database migrated before
(the instance migrated at its first start; the runner still checks at each start, as it
does on Render). Layouts, in alternating order:

- seed web: the seed's web service alone, ``gunicorn app.wsgi:application --workers 2`` (its
  worker and beat are other services, which the request does not wake);
- runner, fork model (the default): one service, web, worker and beat;
- runner, exec model (``RUNNER_FORK=false``): each program its own interpreter.

Per run: wall seconds from launch to the first 200 of ``/admin/login/`` (a Django page, the
same for all) and, for the runner, to its worker's ``ready``; the CPU seconds the tree used
until the page answered. Medians, and ratios against the seed's web alone. Every process is
stopped by PID; files only in a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from bench import startup
from tests.support.processes import ProcessHandle, start_process, wait_for
from tests.support.runner import REPO_ROOT

PERIOD_US = 100_000
READY_PATH = "/admin/login/"
START_TIMEOUT = 600  # seconds: a tenth of a core makes a second of CPU ten
WORKER_READY = "ready."


@dataclass(frozen=True)
class Layout:
    key: str
    title: str
    command: tuple[str, ...]
    environment: tuple[tuple[str, str], ...] = ()
    worker_log: bool = False  # whether a worker's "ready" is in its output


PYTHON = sys.executable
LAYOUTS = (
    Layout(
        "seed-web",
        "seed's web service alone (Gunicorn, 2 workers)",
        (PYTHON, "-m", "gunicorn", "app.wsgi:application", "--workers", "2", "--timeout", "120"),
    ),
    Layout("runner-fork", "runner, fork model (default)", (PYTHON, "-m", "runner"), (), True),
    Layout(
        "runner-exec",
        "runner, exec model (RUNNER_FORK=false)",
        (PYTHON, "-m", "runner"),
        (("RUNNER_FORK", "false"),),
        True,
    ),
)


@contextlib.contextmanager
def cpu_quota(cpu: float) -> Iterator[Path]:
    """A new cgroup limited to ``cpu`` cores; yields the file a PID is written to to join."""
    name = f"bench-wake-{os.getpid()}"
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists():
        group = v1 / name
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(int(cpu * PERIOD_US)))
    else:
        group = Path("/sys/fs/cgroup") / name
        group.mkdir()
        (group / "cpu.max").write_text(f"{int(cpu * PERIOD_US)} {PERIOD_US}")
    try:
        yield group / "cgroup.procs"
    finally:
        # Whatever is left (nothing, if every process was stopped) goes back to the root.
        with contextlib.suppress(OSError):
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (group.parent / "cgroup.procs").write_text(pid)
        group.rmdir()


def in_group(procs: Path, argv: tuple[str, ...]) -> list[str]:
    """``argv`` run by a shell that first moves itself into the cgroup (its children follow)."""
    return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(procs), *argv]


@dataclass(frozen=True)
class Wake:
    page_seconds: float
    page_cpu_seconds: float
    worker_ready_seconds: float | None


def wake(layout: Layout, procs: Path, work: Path) -> Wake:
    """Migrate outside the quota, then launch ``layout`` inside it and time its wake."""
    env = startup.environment(work, None) | dict(layout.environment)
    env["MEMORY_BUDGET_MB"] = "512"
    startup.migrate(env, START_TIMEOUT)
    argv = layout.command
    if layout.key == "seed-web":
        argv = (*argv, "--bind", f"0.0.0.0:{env['PORT']}")
    launched = time.monotonic()
    handle: ProcessHandle = start_process(in_group(procs, argv), env, REPO_ROOT, work / "out.log")
    with handle:
        url = f"http://127.0.0.1:{env['PORT']}{READY_PATH}"

        def answered() -> bool:
            try:
                return requests.get(url, timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answered, START_TIMEOUT, interval=0.05, message=f"{layout.key}: no page")
        page = time.monotonic() - launched
        cpu = startup.cpu_seconds(handle.tree())
        ready = None
        if layout.worker_log:
            handle.wait_for_output(WORKER_READY, START_TIMEOUT)
            ready = time.monotonic() - launched
        handle.kill_tree()
    return Wake(page, cpu, ready)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(results: dict[str, list[Wake]], runs: int, cpu: float) -> str:
    seed = _median([w.page_seconds for w in results["seed-web"]])
    lines = [
        f"Medians of {runs} run(s), {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"CPU quota {cpu:g} core; database migrated before the launch.",
        "",
        "| layout | launch to first page (s) | / seed web | CPU to it (s) | worker ready (s) "
        "| each run, page (s) |",
        "|---|---|---|---|---|---|",
    ]
    for layout in LAYOUTS:
        wakes = results[layout.key]
        page = _median([w.page_seconds for w in wakes])
        ratio = page / seed if page is not None and seed else None
        lines.append(
            f"| {layout.title} | {_cell(page)} | {_cell(ratio, 2)} "
            f"| {_cell(_median([w.page_cpu_seconds for w in wakes]), 2)} "
            f"| {_cell(_median([w.worker_ready_seconds for w in wakes]))} "
            f"| {', '.join(_cell(w.page_seconds) for w in wakes)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wake_quota", description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--cpu", type=float, default=0.1, help="cores (default 0.1)")
    args = parser.parse_args(argv)
    results: dict[str, list[Wake]] = {layout.key: [] for layout in LAYOUTS}
    with tempfile.TemporaryDirectory(prefix="bench-wake-") as tmp, cpu_quota(args.cpu) as procs:
        for number in range(args.runs):
            order = LAYOUTS if number % 2 == 0 else LAYOUTS[::-1]
            for layout in order:
                work = Path(tmp) / f"{layout.key}-{number}"
                work.mkdir()
                result = wake(layout, procs, work)
                results[layout.key].append(result)
                print(f"run {number + 1} {layout.key}: {result}", file=sys.stderr, flush=True)
    print(report(results, args.runs, args.cpu), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
