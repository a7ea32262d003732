"""Every Redis consumer does what the TLS variables ask: kombu's broker connection, Celery's
Redis result backend, the Django cache and the runner's own check, each against a real
TLS redis-server, from a fresh process with ``DJANGO_SETTINGS_MODULE=app.settings`` (the
settings every program of the runner reads).

Also: a process that sends tasks, waits for results and uses the cache opens exactly the
connections ``runner.config.connections`` counts for a web worker, under the limits it is given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.config.connections import redis_connections
from tests.conftest import make_password
from tests.support.certs import TlsMaterial, make_tls_material
from tests.support.processes import tail
from tests.support.redis_server import RedisServer
from tests.support.runner import REPO_ROOT, build_runner_env

pytestmark = pytest.mark.e2e

PROBE_TIMEOUT = 90  # a fresh interpreter imports Django and Celery (2 busy cores)
# The only name in the narrow server's certificate; clients dial it as "localhost" instead.
CERTIFIED_NAME = "127.0.0.1"

# Connects once through each consumer, as the programs would, and prints what happened.
CONSUMERS_PROBE = r"""
import json, os
import django
django.setup()
from django.core.cache import cache
from app.celery import app
from runner.config.environment import EnvironmentReader
from runner.config.redis import read_redis_settings
from runner.supervise.redis_check import check_redis


def attempt(use):
    try:
        use()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "ok"


def broker():
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        connection.default_channel.client.ping()


def cache_round_trip():
    cache.set("probe", 42, 30)
    if cache.get("probe") != 42:
        raise AssertionError("the cache did not return what was written")


def check():
    (outcome,) = check_redis(read_redis_settings(EnvironmentReader(os.environ)))
    if not outcome.ok:
        raise RuntimeError(outcome.line)


print(json.dumps({
    "broker": attempt(broker),
    "results": attempt(lambda: app.backend.client.ping()),
    "cache": attempt(cache_round_trip),
    "check": attempt(check),
}))
"""

# Sends a task, waits for its result and uses the cache, then counts its own connections.
WEB_LIKE_PROBE = r"""
import json, os
import django
django.setup()
import psutil, redis
from django.core.cache import cache
from app.celery import app

result = app.send_task("app.tasks.add", (2, 3))
state = result.state
try:
    result.get(timeout=1)  # no worker: it only has to wait on the result channel
except Exception:
    pass
cache.set("probe", 1, 30)
cache.get("probe")
port = int(os.environ["PROBE_PORT"])
mine = [
    c for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port
]
counter = redis.Redis.from_url(os.environ["REDIS_URL"], ssl_cert_reqs="none")
everyone = len(counter.client_list()) - 1  # all but the counter itself
counter.close()
print(json.dumps({"state": state, "own_sockets": len(mine), "client_list": everyone}))
"""


def run_probe(env: dict[str, str], code: str) -> dict[str, str]:
    """Run ``code`` in a fresh interpreter with ``env``; return the JSON it printed last."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
    )
    assert result.returncode == 0, tail(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def probe_env(base: dict[str, str], **variables: str) -> dict[str, str]:
    return base | {"DJANGO_SETTINGS_MODULE": "app.settings"} | variables


@pytest.fixture(scope="module")
def narrow_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """TLS material whose server certificate is valid for CERTIFIED_NAME only."""
    return make_tls_material(tmp_path_factory.mktemp("narrow-tls"), (CERTIFIED_NAME,))


@pytest.fixture(scope="module")
def narrow_server(
    tmp_path_factory: pytest.TempPathFactory, narrow_tls: TlsMaterial
) -> Iterator[RedisServer]:
    """A TLS redis-server whose certificate is for 127.0.0.1 only, not for "localhost"."""
    directory = tmp_path_factory.mktemp("redis-narrow")
    with RedisServer(directory, password=make_password(), tls=narrow_tls) as server:
        yield server


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """The host environment without the runner's variables, with a private database."""
    return build_runner_env(os.environ, tmp_path, 0)


def seed_url(server: RedisServer, host: str = "127.0.0.1") -> str:
    """The seed's REDIS_URL: redis:// with the password, pointing at a TLS port."""
    return f"redis://default:{server.password}@{host}:{server.port}"


ALL_OK = {"broker": "ok", "results": "ok", "cache": "ok", "check": "ok"}


def test_seed_variables_encrypt_without_verifying_in_every_consumer(
    base_env, redis_tls_session: RedisServer
):
    """REDIS_URL=redis://... with REQUIRE_REDIS_SSL=true and no CA: every consumer connects
    over TLS to a server whose certificate it cannot verify, as the seed's CERT_NONE did."""
    env = probe_env(base_env, REDIS_URL=seed_url(redis_tls_session), REQUIRE_REDIS_SSL="true")
    assert run_probe(env, CONSUMERS_PROBE) == ALL_OK


@pytest.mark.parametrize("form", ["pem_text", "path"])
def test_the_right_ca_verifies_in_every_consumer(
    form, base_env, redis_tls_session: RedisServer, tls_material: TlsMaterial
):
    """With REDIS_SSL_CA_CERTS (PEM text or a path) every consumer verifies and connects."""
    ca = tls_material.ca_pem_text if form == "pem_text" else str(tls_material.ca_pem)
    env = probe_env(base_env, REDIS_URL=redis_tls_session.url(), REDIS_SSL_CA_CERTS=ca)
    assert run_probe(env, CONSUMERS_PROBE) == ALL_OK


def test_the_wrong_ca_fails_in_every_consumer(
    base_env, redis_tls_session: RedisServer, tls_material: TlsMaterial
):
    """A CA that did not sign the server's certificate makes every consumer refuse it."""
    env = probe_env(
        base_env,
        REDIS_URL=redis_tls_session.url(),
        REDIS_SSL_CA_CERTS=tls_material.other_ca_pem.read_text(),
    )
    outcome = run_probe(env, CONSUMERS_PROBE)
    for consumer in ("broker", "results", "cache"):
        assert "CERTIFICATE_VERIFY_FAILED" in outcome[consumer], outcome
    assert "certificate verification failed" in outcome["check"]


def test_required_checks_the_host_name_and_optional_does_not(
    base_env, narrow_server: RedisServer, narrow_tls: TlsMaterial
):
    """With the right CA, `required` refuses a certificate for another host name in every
    consumer; `optional` checks the CA only, so every consumer connects."""
    url = narrow_server.url().replace(f"@{CERTIFIED_NAME}:", "@localhost:")
    base = probe_env(base_env, REDIS_URL=url, REDIS_SSL_CA_CERTS=narrow_tls.ca_pem_text)
    required = run_probe(base, CONSUMERS_PROBE)
    for consumer in ("broker", "results", "cache"):
        assert "Hostname mismatch" in required[consumer], required
    assert "the certificate is not valid for localhost" in required["check"]
    optional = run_probe(base | {"REDIS_SSL_CERT_REQS": "optional"}, CONSUMERS_PROBE)
    assert optional == ALL_OK


def test_a_web_worker_opens_what_the_budget_counts(base_env, redis_tls: RedisServer):
    """Sending a task, waiting on its result and using the cache under the web's pool limits
    opens exactly the connections runner.config.connections counts for one web worker."""
    web = redis_connections(1000, [FakeWeb()])
    (group,) = web.groups
    pools = web.pools_for("web")
    env = probe_env(
        base_env,
        REDIS_URL=redis_tls.url(),
        PROBE_PORT=str(redis_tls.port),
        **dict(pools.environment()),
    )
    measured = run_probe(env, WEB_LIKE_PROBE)
    assert measured == {"state": "PENDING", "own_sockets": group.each, "client_list": group.each}


class FakeWeb:
    """A one-worker Gunicorn program, as runner.config.plan would describe it."""

    name = "web"
    command = ("gunicorn", "runner.web.wsgi:application", "--workers", "1")
    environment = ()
