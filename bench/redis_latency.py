"""Task round trip over TLS against plain Redis, through the real runner, on loopback.

    .venv/bin/python -m bench.redis_latency [--tasks 300] [--warmup 30] [--runs 2]

For each way of reaching Redis, this starts a throwaway redis-server (plain, or TLS-only
with certificates made for the run), starts ``python -m runner`` against it (web, worker
with 2 pool processes, embedded beat, its heartbeat switched off), and times, from a
separate client process with the same variables, ``--tasks`` round trips one after the
other: ``send_task("app.tasks.add")`` until ``.get()`` returns (broker LPUSH, worker BRPOP,
the result stored and published, the client's pub/sub woken). The first ``--warmup`` round
trips (connections being opened, TLS handshakes) are left out. ``--runs`` rounds, the order
of the ways alternating from one round to the next (plain first, then TLS first: the same
drift of a shared machine for both); the round trips of every round are pooled. Ratios are
against plain Redis in the same rounds. Prints a markdown table; every process started is
stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.certs import TlsMaterial, make_tls_material
from tests.support.ports import free_port
from tests.support.processes import start_process, stop_all
from tests.support.redis_server import RedisServer
from tests.support.runner import REPO_ROOT, build_runner_env, run_client

START_TIMEOUT = 120
STOP_TIMEOUT = 60
CLIENT_TIMEOUT = 600
DEFAULT_TASKS = 300
DEFAULT_WARMUP = 30

DISABLE_HEARTBEAT = (
    "import django; django.setup(); from django.core.management import call_command; "
    "call_command('migrate', verbosity=0); "
    "from django_celery_beat.models import PeriodicTask; "
    "PeriodicTask.objects.filter(name='heartbeat').update(enabled=False)"
)

ROUND_TRIPS = """
import json, time
from app.celery import app
seconds = []
for _ in range({count}):
    started = time.perf_counter()
    if app.send_task("app.tasks.add", (2, 3)).get(timeout=30) != 5:
        raise SystemExit("wrong result")
    seconds.append(time.perf_counter() - started)
print(json.dumps(seconds))
"""


@dataclass(frozen=True)
class Way:
    """How the runner reaches Redis: a server kind and the variables a user would set."""

    title: str
    tls: bool
    variables: str  # "plain", "seed" (redis:// + REQUIRE_REDIS_SSL) or "verified" (CA)


WAYS = (
    Way("plain `redis://`", tls=False, variables="plain"),
    Way("TLS, not verified (the seed's variables)", tls=True, variables="seed"),
    Way("TLS, verified (`REDIS_SSL_CA_CERTS`)", tls=True, variables="verified"),
)


def redis_variables(way: Way, server: RedisServer, tls: TlsMaterial) -> dict[str, str]:
    if way.variables == "plain":
        return {"REDIS_URL": server.url()}
    if way.variables == "seed":
        return {"REDIS_URL": server.url(scheme="redis"), "REQUIRE_REDIS_SSL": "true"}
    return {"REDIS_URL": server.url(), "REDIS_SSL_CA_CERTS": tls.ca_pem_text}


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100)[round(fraction * 100) - 1]


def round_trips(way: Way, work: Path, tls: TlsMaterial, count: int) -> list[float]:
    """Seconds of each of ``count`` round trips through a runner reaching Redis ``way``."""
    directory = work / way.variables
    with RedisServer(directory / "redis", password="bench", tls=tls if way.tls else None) as server:
        env = build_runner_env(os.environ, directory, free_port())
        env |= redis_variables(way, server, tls) | {"DJANGO_SETTINGS_MODULE": "app.settings"}
        run_client(env, DISABLE_HEARTBEAT, CLIENT_TIMEOUT)
        env["RUN_MIGRATIONS"] = "false"
        runner = start_process(
            [sys.executable, "-m", "runner"], env, REPO_ROOT, directory / "runner.log"
        )
        try:
            runner.wait_for_output("ready.", START_TIMEOUT)
            return json.loads(run_client(env, ROUND_TRIPS.format(count=count), CLIENT_TIMEOUT))
        finally:
            stop_all([runner], STOP_TIMEOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="timed round trips")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed first ones")
    parser.add_argument("--runs", type=int, default=2, help="rounds, order alternating")
    args = parser.parse_args()
    results: dict[str, list[float]] = {way.title: [] for way in WAYS}
    with tempfile.TemporaryDirectory(prefix="bench-redis-latency-") as directory:
        tls = make_tls_material(Path(directory) / "tls")
        for number in range(args.runs):
            for way in WAYS if number % 2 == 0 else WAYS[::-1]:
                work = Path(directory) / f"{number}"
                work.mkdir(exist_ok=True)
                seconds = round_trips(way, work, tls, args.warmup + args.tasks)
                results[way.title] += [s * 1000 for s in seconds[args.warmup :]]
    plain = results[WAYS[0].title]
    plain_p50, plain_p95 = statistics.median(plain), percentile(plain, 0.95)
    print(
        f"Task round trip (send_task + get) through `python -m runner`, {args.tasks} tasks "
        f"one after the other after {args.warmup} untimed, {args.runs} round(s) in "
        "alternating order, pooled; loopback\n"
    )
    print("| Redis | p50 ms | p95 ms | p50 vs plain | p95 vs plain |")
    print("|---|---|---|---|---|")
    for title, values in results.items():
        p50, p95 = statistics.median(values), percentile(values, 0.95)
        print(
            f"| {title} | {p50:.1f} | {p95:.1f} | {p50 / plain_p50:.2f} | {p95 / plain_p95:.2f} |"
        )


if __name__ == "__main__":
    main()
