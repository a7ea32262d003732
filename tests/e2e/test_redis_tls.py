"""Redis over TLS through the whole runner, as the seed configures it: broker, results, cache,
the start-up check, the connection budget and the password kept out of every output.

One runner with the seed's exact variables (``REDIS_URL=redis://default:PASSWORD@...`` to a
TLS-only port, ``REQUIRE_REDIS_SSL=true``, no CA) serves the first group of tests, in file
order; the last one stops it. Other tests start their own runner or a run that is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
import requests

from runner.errors import EXIT_BAD_CONFIG, EXIT_FAILURE
from tests.conftest import make_password
from tests.support.certs import TlsMaterial
from tests.support.ports import free_port
from tests.support.processes import ProcessHandle, program_of, wait_for
from tests.support.redis_server import RedisServer
from tests.support.runner import (
    REPO_ROOT,
    build_runner_env,
    run_client,
    speed_up_heartbeat,
    start_runner,
    stop_and_check,
    wait_http_ok,
)
from tests.support.timeouts import START_TIMEOUT, TASK_TIMEOUT

pytestmark = pytest.mark.e2e

REFUSED_TIMEOUT = 60  # a refused start imports the project and checks Redis, nothing more
CLIENT_TIMEOUT = 90
QUEUED_TASKS = 3
HEARTBEAT_EVERY_SECONDS = 2
# Peak measurement: slow tasks keep every pool child busy while beat ticks and the web
# answers requests; CLIENT LIST is sampled until they are all done.
SLOW_TASK_SECONDS = 2
SLOW_TASKS = 6  # three rounds of the default two children
WEB_LOAD_THREADS = 3
SAMPLE_EVERY_SECONDS = 0.05
PEAK_TIMEOUT = 120


@dataclass
class Service:
    """A running runner and what was arranged before it started."""

    env: dict[str, str]
    server: RedisServer
    runner: ProcessHandle
    queued_ids: list[str]
    queue_length_after_clear: int
    cache_after_clear: object


def client(env: dict[str, str], code: str) -> object:
    """Run ``code`` in a separate client process with ``env``; decode the JSON it prints."""
    return json.loads(run_client(env, code, CLIENT_TIMEOUT).splitlines()[-1])


def runner_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=REFUSED_TIMEOUT,
    )


def secret_forms(password: str) -> set[str]:
    return {password, quote(password, safe="")}


def seed_env(tmp: Path, server: RedisServer) -> dict[str, str]:
    """The seed's variables, verbatim: redis:// to the TLS port, REQUIRE_REDIS_SSL, no CA."""
    env = build_runner_env(os.environ, tmp, free_port())
    env |= {
        "REDIS_URL": f"redis://default:{server.password}@127.0.0.1:{server.port}",
        "REQUIRE_REDIS_SSL": "true",
        "DJANGO_SETTINGS_MODULE": "app.settings",
        # Not the seed's: for the status page, read below over the same TLS.
        "RUNNER_STATUS_TOKEN": STATUS_TOKEN,
    }
    return env


STATUS_TOKEN = "status-token-for-tls-tests-0123456789"


def status_json(env: dict[str, str]) -> dict:
    """The status page's JSON, asked with the token (polled: the worker may still be starting)."""

    def healthy() -> dict | None:
        data = requests.get(
            f"http://127.0.0.1:{env['PORT']}/status.json",
            headers={"Authorization": f"Bearer {STATUS_TOKEN}"},
            timeout=10,
        ).json()
        worker = {c["name"]: c for c in data["components"]}["worker"]
        return data if worker["sign_of_life"] and worker["sign_of_life"]["ok"] else None

    return wait_for(healthy, START_TIMEOUT, message="the status page never saw the worker")


QUEUE_THEN_CLEAR = f"""
import json, django
django.setup()
from django.core.cache import cache
from app.celery import app
cache.set("greeting", "hello", 300)
ids = [app.send_task("app.tasks.add", (2, 3)).id for _ in range({QUEUED_TASKS})]
cache.clear()
print(json.dumps({{"ids": ids, "cache": cache.get("greeting")}}))
"""


@pytest.fixture(scope="module")
def seed_service(
    tmp_path_factory: pytest.TempPathFactory, tls_material: TlsMaterial
) -> Iterator[Service]:
    """The runner with the seed's variables, started after tasks were queued and the cache
    cleared (no worker yet, so the tasks wait in Redis), heartbeat every 2 s."""
    tmp = tmp_path_factory.mktemp("seed-tls")
    with RedisServer(tmp / "redis", password=make_password(), tls=tls_material) as server:
        env = seed_env(tmp, server)
        speed_up_heartbeat(env, HEARTBEAT_EVERY_SECONDS)
        arranged = client(env, QUEUE_THEN_CLEAR)
        queue_length = server.client().llen("celery")
        with start_runner(env, tmp) as runner:
            wait_http_ok(f"http://127.0.0.1:{env['PORT']}/healthz", START_TIMEOUT, runner)
            runner.wait_for_output("ready.", START_TIMEOUT)
            yield Service(env, server, runner, arranged["ids"], queue_length, arranged["cache"])
            # Checked once every test has used it, whatever their order: SIGTERM stops
            # everything with status 0, and neither the runner's output nor `plan` and
            # `check` ever showed the password.
            stop_cleanly_without_showing(env, runner, server.password)


def stop_cleanly_without_showing(env: dict[str, str], runner: ProcessHandle, password: str):
    stop_and_check(runner)
    outputs = [runner.output()]
    for args in (("plan",), ("plan", "--json"), ("check",)):
        done = runner_command(env, *args)
        outputs.append(done.stdout + done.stderr)
    for output in outputs:
        for secret in secret_forms(password):
            assert secret not in output


def test_tasks_queued_before_cache_clear_still_run(seed_service: Service):
    """cache.clear() deletes the cache's keys only: tasks queued before it stay in Redis and
    run once the worker starts."""
    assert seed_service.cache_after_clear is None
    assert seed_service.queue_length_after_clear == QUEUED_TASKS
    results = client(
        seed_service.env,
        "import json; from app.celery import app; print(json.dumps("
        f"[app.AsyncResult(i).get(timeout={TASK_TIMEOUT}) for i in {seed_service.queued_ids!r}]"
        "))",
    )
    assert results == [5] * QUEUED_TASKS


def test_the_seeds_variables_run_a_task_over_tls(seed_service: Service):
    """A task sent from a separate client process with the same variables runs end to end
    over TLS (the server has no plain port), its result in REDIS_URL's database."""
    task_id, result = client(
        seed_service.env,
        "import json; from app.celery import app; r = app.send_task('app.tasks.add', (2, 3)); "
        f"print(json.dumps([r.id, r.get(timeout={TASK_TIMEOUT})]))",
    )
    assert result == 5
    assert seed_service.server.client().exists(f"celery-task-meta-{task_id}") == 1
    output = seed_service.runner.output()
    port = seed_service.server.port
    assert "runner | REQUIRE_REDIS_SSL is true: redis:// URLs were upgraded to rediss://" in output
    assert "encrypted but the server is NOT verified; set REDIS_SSL_CA_CERTS" in output
    assert "runner | Redis connections at peak: up to " in output
    assert (
        f"runner | Redis at rediss://default:***@127.0.0.1:{port} answers (broker, results "
        "and cache; TLS, encrypted but the server is NOT verified)"
    ) in output
    # The status page over the same TLS: it pings the worker through Redis and says the
    # certificate is not verified.
    redis = status_json(seed_service.env)["redis"]
    assert (redis["reachable"], redis["tls"], redis["verified"]) == (True, True, False)


def test_the_django_cache_reads_and_writes_over_tls(seed_service: Service):
    """The Django cache of app.settings writes to and reads from Redis over TLS, under its
    own key prefix."""
    value = client(
        seed_service.env,
        "import json, django; django.setup(); from django.core.cache import cache; "
        "cache.set('tls-check', {'n': 7}, 60); print(json.dumps(cache.get('tls-check')))",
    )
    assert value == {"n": 7}
    keys = seed_service.server.client().keys("django-cache:*")
    assert [key.decode() for key in keys] == ["django-cache:1:tls-check"]


def runner_connections(runner: ProcessHandle, port: int) -> dict[int, tuple[str, int]]:
    """Connections to Redis on ``port`` per process of the runner's tree: pid -> (kind, n)."""
    kinds = {process.pid: kind_of(process) for process in runner.tree()}
    counts: Counter[int] = Counter()
    for connection in psutil.net_connections(kind="tcp"):
        if connection.raddr and connection.raddr.port == port and connection.pid in kinds:
            if connection.status == psutil.CONN_ESTABLISHED:
                counts[connection.pid] += 1
    return {pid: (kinds[pid], n) for pid, n in counts.items()}


def kind_of(process: psutil.Process) -> str:
    """Which of the budget's process kinds ``process`` is, from its program and its parent's
    (``program_of``: the same in both models).

    The runner's Celery hooks name pool children celery-child and the embedded beat
    celery-beat when installed, else a worker's child is only a "worker child".
    """
    try:
        program = program_of(process)
        parent = program_of(process.parent()) if process.parent() else None
        name = process.name()
    except psutil.Error:
        return "gone"
    if program == "web":
        return "web worker" if parent == "web" else "web master"
    if program == "beat":
        return "beat"
    if program != "worker":
        return "other"
    if parent != "worker":
        return "worker main"
    return "pool child" if name == "celery-child" else "worker child"


def model_per_process(plan: dict) -> dict[str, int]:
    """What `runner plan --json` counts for one process of each kind this test tells apart."""
    model = {"web master": 0}
    for group in plan["groups"]:
        each = sum(n for _, n in group["parts"])
        if group["program"] == "web":
            kind = "web worker"
        elif group["label"].startswith("main"):
            kind = "worker main"
        elif group["program"] == "beat" or group["label"] == "beat embedded":
            kind = "beat"
        else:
            kind = "pool child"
        model[kind] = each
    # A pool child or the embedded beat, when the process is not named.
    model["worker child"] = max(model.get("pool child", 0), model.get("beat", 0))
    if "pool child" not in model:  # threads pool: beat is a thread of the worker main
        model["worker main"] = model.get("worker main", 0) + model.get("beat", 0)
    return model


def test_peak_connections_stay_within_the_budget(seed_service: Service):
    """With the web answering requests, every pool child busy and beat ticking, the runner's
    processes never hold more Redis connections than `runner plan` counts, nor more than
    REDIS_MAX_CONNECTIONS; and no process more than the budget counts for its kind."""
    env, runner, server = seed_service.env, seed_service.runner, seed_service.server
    # Another PORT: plan, like start, refuses the running service's (the budget ignores it).
    planned = runner_command(env | {"PORT": str(free_port())}, "plan", "--json")
    plan = json.loads(planned.stdout)["redis_connections"]
    model = model_per_process(plan)

    stop = threading.Event()

    def load_web() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                session.get(f"http://127.0.0.1:{env['PORT']}/", timeout=10)

    threads = [threading.Thread(target=load_web) for _ in range(WEB_LOAD_THREADS)]
    sender = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from app.celery import app\n"
            f"results = [app.send_task('app.tasks.slow', ({SLOW_TASK_SECONDS},)) "
            f"for _ in range({SLOW_TASKS})]\n"
            f"print([r.get(timeout={PEAK_TIMEOUT}) for r in results])\n",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    heartbeats_before = runner.output().count("Sending due task heartbeat")
    peak = 0
    peak_server_side = 0
    per_kind: dict[str, int] = defaultdict(int)
    probe = server.client()
    try:
        for thread in threads:
            thread.start()

        def sample() -> bool:
            nonlocal peak, peak_server_side
            by_process = runner_connections(runner, server.port)
            peak = max(peak, sum(n for _, n in by_process.values()))
            for kind, n in by_process.values():
                per_kind[kind] = max(per_kind[kind], n)
            peak_server_side = max(peak_server_side, len(probe.client_list()) - 1)
            ticked = runner.output().count("Sending due task heartbeat") > heartbeats_before
            return sender.poll() is not None and ticked

        wait_for(sample, PEAK_TIMEOUT, interval=SAMPLE_EVERY_SECONDS, message="load never ended")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        probe.close()
        if sender.poll() is None:
            sender.kill()
        out, err = sender.communicate()
    assert sender.returncode == 0, err
    assert out.strip() == str([float(SLOW_TASK_SECONDS)] * SLOW_TASKS)
    print(f"\npeak {peak} (server side, with the sender: {peak_server_side}); {dict(per_kind)}")
    assert peak <= plan["total"] <= plan["budget"]
    for kind, most in per_kind.items():
        assert most <= model[kind], (kind, most, dict(per_kind), model)


def test_verified_tls_and_explicit_broker_and_result_urls(
    runner_env, tmp_path: Path, redis_tls: RedisServer, redis_plain: RedisServer, tls_material
):
    """REDIS_SSL_CA_CERTS as PEM text verifies every TLS connection; explicit
    CELERY_BROKER_URL and CELERY_RESULT_BACKEND are used as given: tasks through the TLS
    server's database 1, results in the plain server's database 2, the cache on REDIS_URL."""
    tls_base = f"rediss://default:{redis_tls.password}@localhost:{redis_tls.port}"
    runner_env |= {
        "REDIS_URL": f"{tls_base}/0",
        "CELERY_BROKER_URL": f"{tls_base}/1",
        "CELERY_RESULT_BACKEND": redis_plain.url(db=2),
        "REDIS_SSL_CA_CERTS": tls_material.ca_pem_text,
        "RUN_BEAT": "false",
        "RUNNER_STATUS_TOKEN": STATUS_TOKEN,
    }
    with start_runner(runner_env, tmp_path) as runner:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, runner)
        runner.wait_for_output("ready.", START_TIMEOUT)
        task_id, result = client(
            runner_env,
            "import json; from app.celery import app; r = app.send_task('app.tasks.add', (2, 3));"
            f" print(json.dumps([r.id, r.get(timeout={TASK_TIMEOUT})]))",
        )
        # The status page, over verified TLS: REDIS_URL's server, its certificate checked.
        redis = status_json(runner_env)["redis"]
        output = runner.output()
    assert (redis["reachable"], redis["tls"], redis["verified"]) == (True, True, True)
    assert result == 5
    assert redis_plain.client(db=2).exists(f"celery-task-meta-{task_id}") == 1
    assert redis_tls.client(db=0).exists(f"celery-task-meta-{task_id}") == 0
    assert redis_tls.client(db=1).exists("_kombu.binding.celery") == 1
    port = redis_tls.port
    for line in (
        f"Redis at rediss://default:***@localhost:{port}/1 answers (broker; TLS, certificate "
        "verified)",
        f"Redis at redis://default:***@127.0.0.1:{redis_plain.port}/2 answers (results; no TLS)",
        f"Redis at rediss://default:***@localhost:{port}/0 answers (cache; TLS, certificate "
        "verified)",
    ):
        assert f"runner | {line}" in output
    assert "NOT verified" not in output
    for secret in secret_forms(redis_tls.password) | secret_forms(redis_plain.password):
        assert secret not in output


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("wrong CA", EXIT_FAILURE, "certificate verification failed for Redis at rediss://"),
        ("plain client, TLS port", EXIT_FAILURE, "speaks TLS but the URL says redis://"),
        ("TLS client, plain port", EXIT_FAILURE, "does not speak TLS on port"),
        ("budget of 10", EXIT_BAD_CONFIG, "set it to at least 26"),
    ],
)
def test_a_start_that_cannot_work_is_refused_before_anything_starts(
    case,
    status,
    words,
    runner_env,
    tmp_path: Path,
    redis_tls_session: RedisServer,
    redis_plain_session: RedisServer,
    tls_material: TlsMaterial,
):
    """A wrong CA, a wrong scheme either way, or a budget too small for the default layout:
    one error line with the fix, a non-zero exit, no migration and no program started."""
    tls, plain = redis_tls_session, redis_plain_session
    runner_env |= {
        "wrong CA": {
            "REDIS_URL": tls.url(),
            "REDIS_SSL_CA_CERTS": tls_material.other_ca_pem.read_text(),
        },
        "plain client, TLS port": {"REDIS_URL": tls.url(scheme="redis")},
        "TLS client, plain port": {"REDIS_URL": plain.url(), "REQUIRE_REDIS_SSL": "true"},
        "budget of 10": {"REDIS_URL": tls.url(), "REDIS_MAX_CONNECTIONS": "10"},
    }[case]
    with start_runner(runner_env, tmp_path) as runner:
        assert runner.wait(REFUSED_TIMEOUT) == status
        output = runner.output()
    errors = [line for line in output.splitlines() if line.startswith("runner | error: ")]
    assert len(errors) == 1 and words in errors[0], output
    assert "migrate |" not in output and "starting (pid" not in output
    for secret in secret_forms(tls.password) | secret_forms(plain.password):
        assert secret not in output
