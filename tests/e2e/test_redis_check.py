"""The start-up check against real redis-server processes: each failure is one line naming the
cause and the fix, configuration errors stop the start, Redis not reachable yet does not.

The diagnoses run in this process (``runner.supervise.redis_check``, real sockets); ``python -m
runner
check`` and ``python -m runner`` are run as subprocesses for their exit statuses and output.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.config.environment import EnvironmentReader
from runner.config.redis import RedisSettings, read_redis_settings
from runner.errors import EXIT_FAILURE, EXIT_OK
from runner.supervise.redis_check import (
    Outcome,
    RedisCheckFailed,
    check_redis,
    check_target,
    preflight,
    targets,
)
from tests.support.certs import TlsMaterial
from tests.support.ports import LOOPBACK, free_port
from tests.support.redis_server import RedisServer
from tests.support.runner import start_runner, wait_http_ok
from tests.support.timeouts import START_TIMEOUT

pytestmark = pytest.mark.e2e

RUNNER_EXIT_TIMEOUT = 60  # the runner imports the project, then checks Redis
# A short check timeout keeps the silent-port case quick; the runner uses 5 s.
SHORT_TIMEOUT = 1.0


def settings_for(environ: dict[str, str]) -> RedisSettings:
    env = EnvironmentReader(environ)
    settings = read_redis_settings(env)
    assert env.problems == []
    return settings


def check_once(environ: dict[str, str]) -> Outcome:
    """Check the one Redis URL of ``environ``."""
    (outcome,) = check_redis(settings_for(environ))
    return outcome


def seed_url(server: RedisServer, password: str | None = None) -> str:
    return f"redis://default:{password or server.password}@127.0.0.1:{server.port}"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a firewall eating packets)."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def assert_secret_free(outcome: Outcome, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in outcome.line


def test_the_seeds_variables_pass_and_say_the_server_is_not_verified(
    redis_tls_session: RedisServer,
):
    """redis:// to a TLS port with REQUIRE_REDIS_SSL=true passes, encrypted but unverified."""
    outcome = check_once({"REDIS_URL": seed_url(redis_tls_session), "REQUIRE_REDIS_SSL": "true"})
    assert outcome.ok and not outcome.fatal
    assert outcome.line == (
        f"Redis at rediss://default:***@127.0.0.1:{redis_tls_session.port} answers "
        "(broker, results and cache; TLS, encrypted but the server is NOT verified)"
    )


def test_the_right_ca_passes_verified(redis_tls_session: RedisServer, tls_material: TlsMaterial):
    """A CA given as PEM text verifies the server."""
    outcome = check_once(
        {"REDIS_URL": redis_tls_session.url(), "REDIS_SSL_CA_CERTS": tls_material.ca_pem_text}
    )
    assert outcome.ok and "TLS, certificate verified" in outcome.line


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("wrong CA", "the CA in REDIS_SSL_CA_CERTS did not sign the server's certificate"),
        ("no CA, required", "REDIS_SSL_CA_CERTS is not set, so the system's CAs were used"),
    ],
)
def test_a_certificate_that_does_not_verify_is_a_configuration_error(
    name, words, redis_tls_session: RedisServer, tls_material: TlsMaterial
):
    """Verification failure names REDIS_SSL_CA_CERTS and REDIS_SSL_CERT_REQS as the fixes."""
    environ = {"REDIS_URL": redis_tls_session.url()}
    if name == "wrong CA":
        environ["REDIS_SSL_CA_CERTS"] = str(tls_material.other_ca_pem)
    else:
        environ["REDIS_SSL_CERT_REQS"] = "required"
    outcome = check_once(environ)
    assert outcome.fatal
    assert outcome.line.startswith("certificate verification failed for Redis at rediss://")
    assert words in outcome.line and "REDIS_SSL_CERT_REQS=none" in outcome.line
    assert_secret_free(outcome, redis_tls_session.password)


def test_a_plain_client_against_the_tls_port_is_told_to_use_rediss(
    redis_tls_session: RedisServer,
):
    """redis:// against a TLS-only port: the server resets; the probe finds TLS there."""
    outcome = check_once({"REDIS_URL": seed_url(redis_tls_session)})
    assert outcome.fatal
    assert outcome.line == (
        f"Redis at redis://default:***@127.0.0.1:{redis_tls_session.port} speaks TLS but the "
        "URL says redis://: write rediss:// in REDIS_URL, or set REQUIRE_REDIS_SSL=true"
    )


def test_tls_against_a_plain_port_is_told_to_drop_the_upgrade(redis_plain_session: RedisServer):
    """REQUIRE_REDIS_SSL=true against a plain port (Render Key Value's internal URL): the
    handshake gets no answer; the probe finds plain Redis and the line names the flag."""
    outcome = check_once({"REDIS_URL": redis_plain_session.url(), "REQUIRE_REDIS_SSL": "true"})
    assert outcome.fatal
    assert outcome.line == (
        f"Redis at rediss://default:***@127.0.0.1:{redis_plain_session.port}/0 does not speak "
        f"TLS on port {redis_plain_session.port}, plain Redis answers there: set "
        "REQUIRE_REDIS_SSL=false (it turned redis:// into rediss://), or use your provider's "
        "TLS port"
    )


def test_an_explicit_rediss_broker_on_a_plain_port_names_its_variable(
    redis_plain_session: RedisServer,
):
    """A rediss:// CELERY_BROKER_URL written by hand is named, not REQUIRE_REDIS_SSL."""
    broker = redis_plain_session.url(scheme="rediss")
    settings = settings_for({"REDIS_URL": redis_plain_session.url(), "CELERY_BROKER_URL": broker})
    broker_target = next(t for t in targets(settings) if t.uses == ("broker",))
    outcome = check_target(broker_target, settings)
    assert outcome.fatal and "write redis:// in CELERY_BROKER_URL" in outcome.line


@pytest.mark.parametrize("server_name", ["redis_plain_session", "redis_tls_session"])
def test_a_wrong_password_is_a_configuration_error(server_name, request):
    """WRONGPASS: the line names the variable holding the password, never the password."""
    server: RedisServer = request.getfixturevalue(server_name)
    wrong = "not-the-password-1234"
    outcome = check_once({"REDIS_URL": server.url().replace(server.password, wrong)})
    assert outcome.fatal and outcome.line.startswith("authentication failed at Redis at")
    assert "check the user and password in REDIS_URL" in outcome.line
    assert_secret_free(outcome, wrong, server.password)


def test_a_missing_password_is_a_configuration_error(redis_plain_session: RedisServer):
    """NOAUTH: a URL without a password is told how to write one."""
    outcome = check_once({"REDIS_URL": f"redis://127.0.0.1:{redis_plain_session.port}"})
    assert outcome.fatal
    assert "it requires a password and REDIS_URL has none" in outcome.line


def test_connection_refused_is_not_reachable_yet():
    """Nothing listening: Redis is not reachable yet, which does not stop a start."""
    port = free_port()
    outcome = check_once({"REDIS_URL": f"rediss://default:secret-pw@127.0.0.1:{port}"})
    assert not outcome.ok and not outcome.fatal
    assert outcome.line == (
        f"Redis at rediss://default:***@127.0.0.1:{port} is not reachable yet "
        f"(connection refused: nothing listens on 127.0.0.1:{port})"
    )


def test_an_unknown_host_is_not_reachable_yet():
    """A host name that does not resolve is reported as such (DNS may come back)."""
    outcome = check_once({"REDIS_URL": "rediss://default:pw@no-such-host.invalid:6380"})
    assert not outcome.fatal and "host name no-such-host.invalid not found" in outcome.line


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_a_silent_port_is_not_reachable_yet(scheme, silent_port: int):
    """A port that accepts but never answers gives up after the timeout, not a wrong scheme."""
    settings = settings_for({"REDIS_URL": f"{scheme}://default:pw@127.0.0.1:{silent_port}"})
    (target,) = targets(settings)
    outcome = check_target(target, settings, timeout=SHORT_TIMEOUT)
    assert not outcome.fatal and "is not reachable yet (no answer within" in outcome.line


@pytest.mark.parametrize("server_name", ["redis_plain", "redis_tls"])
def test_max_clients_is_not_reachable_yet_and_names_the_budget(server_name, request):
    """A full Redis (maxclients) is a transient state: the line says who holds connections and
    how many this service takes."""
    server: RedisServer = request.getfixturevalue(server_name)
    holder = server.client()
    holder.config_set("maxclients", 1)
    settings = settings_for({"REDIS_URL": server.url()})
    outcome = check_redis(settings, budget_total=25)[0]
    holder.close()
    assert not outcome.ok and not outcome.fatal
    assert "max number of clients" in outcome.line
    assert "this service opens up to 25 (REDIS_MAX_CONNECTIONS)" in outcome.line


def test_preflight_warns_without_promising_a_worker_that_is_not_there():
    """A web-only start with Redis down says it starts anyway, without mentioning a worker."""
    port = free_port()
    said: list[str] = []
    preflight(settings_for({"REDIS_URL": f"redis://127.0.0.1:{port}"}), said.append, worker=False)
    assert said == [
        f"Redis at redis://127.0.0.1:{port} is not reachable yet (connection refused: nothing "
        f"listens on 127.0.0.1:{port}); starting anyway"
    ]


def test_preflight_refuses_a_configuration_error(redis_tls_session: RedisServer):
    """A configuration error stops the start with RedisCheckFailed, nothing said before it."""
    said: list[str] = []
    with pytest.raises(RedisCheckFailed) as caught:
        preflight(settings_for({"REDIS_URL": seed_url(redis_tls_session)}), said.append)
    assert said == [] and caught.value.exit_status == EXIT_FAILURE
    (line,) = caught.value.lines()
    assert "speaks TLS but the URL says redis://" in line


# --- the command line --------------------------------------------------------------------


def test_runner_check_exits_0_with_an_ok_line(runner_env, tmp_path: Path, redis_tls_session):
    """`python -m runner check` with the seed's variables prints one ok line and exits 0."""
    runner_env |= {"REDIS_URL": seed_url(redis_tls_session), "REQUIRE_REDIS_SSL": "true"}
    with start_runner(runner_env, tmp_path, ["check"]) as check:
        assert check.wait(RUNNER_EXIT_TIMEOUT) == EXIT_OK
    assert "runner | ok: Redis at rediss://default:***@127.0.0.1:" in check.output()


def test_runner_check_exits_1_when_redis_is_not_reachable(runner_env, tmp_path: Path):
    """`python -m runner check` fails (exit 1) when Redis is down, unlike a start."""
    runner_env["REDIS_URL"] = f"redis://default:pw@127.0.0.1:{free_port()}"
    with start_runner(runner_env, tmp_path, ["check"]) as check:
        assert check.wait(RUNNER_EXIT_TIMEOUT) == EXIT_FAILURE
    assert "runner | error: Redis at redis://default:***@" in check.output()
    assert "is not reachable yet (connection refused" in check.output()


def test_a_start_with_redis_down_warns_and_serves(runner_env, tmp_path: Path):
    """Redis not reachable at start: one warning line, then the web serves anyway."""
    port = free_port()
    runner_env["REDIS_URL"] = f"redis://default:secret-pw@127.0.0.1:{port}"
    with start_runner(runner_env, tmp_path) as runner:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, runner)
        output = runner.output()
    assert (
        f"runner | Redis at redis://default:***@127.0.0.1:{port} is not reachable yet "
        f"(connection refused: nothing listens on 127.0.0.1:{port}); starting anyway, the "
        "worker will wait for it"
    ) in output
    assert "secret-pw" not in output


def test_the_demo_with_require_redis_ssl_against_a_plain_port_names_the_flag(
    redis_plain_session: RedisServer, runner_env, tmp_path
):
    """The whole runner, on a project whose settings take REDIS_URL through runner_settings()
    (the demo): the line names REQUIRE_REDIS_SSL, the variable the user set (Render Key
    Value's internal URL with the blueprint's default), not the project's CELERY_BROKER_URL
    setting, which the user never wrote; nothing starts."""
    import subprocess
    import sys

    from tests.support.runner import REPO_ROOT

    env = runner_env | {"REDIS_URL": redis_plain_session.url(), "REQUIRE_REDIS_SSL": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "runner"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "set REQUIRE_REDIS_SSL=false (it turned redis:// into rediss://)" in output, output
    assert "CELERY_BROKER_URL" not in output, output
    assert "web starting" not in output
    assert redis_plain_session.password not in output
