"""The start-up check: does Redis answer the way the broker, results and cache will talk to it?

Before any program starts, the runner connects once to every Redis URL it was given, with
redis-py and exactly the TLS options each consumer will use (the project's own settings as
read by ``runner.config.project``, or the runner's variables),
a short timeout and no retries, and turns a failure into one line that names the cause and
the fix. Two kinds of failure are told apart:

- **configuration** errors, which waiting cannot fix: the wrong scheme (``redis://`` against
  a TLS port, or ``rediss://`` against a plain one), a certificate that does not verify, a
  refused password, something that is not Redis. The runner refuses to start (exit 1);
- Redis **not reachable yet**: connection refused, no answer, host name not found, no free
  connection (max number of clients). The runner says so and starts anyway: the web serves,
  the worker keeps retrying until Redis answers.

``python -m runner check`` runs the same check and exits non-zero in both cases.

A wrong scheme looks like other failures from the client's side (a plain client against a
TLS port sees the connection reset; a TLS client against a plain port waits for a handshake
that never comes), so after such a failure the port is probed once the other way: a TLS
handshake, or a plain ``PING``. No password is ever sent by a probe, and every line has the
URL masked (``runner.config.redis.mask_url``) and any password scrubbed from quoted messages.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from runner.config.project import RedisConsumer
from runner.config.redis import (
    REDIS_SCHEMES,
    RedisSettings,
    TLSOptions,
    broker_redis_url,
    mask_url,
    redis_py_ssl_kwargs,
    without_tls_options,
)
from runner.errors import PreflightError

# One connection attempt, and each of its replies, may take this long (Render to a managed
# Redis in another region answers in well under a second).
CHECK_TIMEOUT_SECONDS = 5.0
# A probe for the other scheme after a failure: one TLS handshake or one PING.
PROBE_TIMEOUT_SECONDS = 2.0
# The first bytes of a probe's answer that are read to recognise plain Redis.
PROBE_READ_BYTES = 64
# Longest server or library message quoted in a line.
MAX_QUOTED_CHARS = 160

STARTING_ANYWAY = "starting anyway"
WORKER_WILL_WAIT = ", the worker will wait for it"

Say = Callable[[str], None]


class RedisCheckFailed(PreflightError):
    """One or more Redis URLs failed the check; one line each."""

    def __init__(self, lines: list[str]):
        super().__init__("; ".join(lines))
        self._lines = list(lines)

    def lines(self) -> list[str]:
        return list(self._lines)


@dataclass(frozen=True)
class Target:
    """One Redis URL to check, what uses it and which variable it came from."""

    url: str
    uses: tuple[str, ...]  # "broker", "results", "cache", "locks"
    variable: str  # REDIS_URL, CELERY_BROKER_URL, ... or "the project's CACHES setting"
    upgraded: bool = False  # REQUIRE_REDIS_SSL turned redis:// into rediss://
    # How the consumers connect: None for redis://; for rediss://, the options they use.
    tls_options: TLSOptions | None = None
    project: bool = False  # read from the project's own settings, not the runner's variables

    @property
    def masked(self) -> str:
        return mask_url(self.url) or ""

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 6379

    @property
    def tls(self) -> bool:
        return self.url.startswith("rediss://")


@dataclass(frozen=True)
class Outcome:
    """The result of checking one target: fine, not reachable yet, or misconfigured."""

    target: Target
    ok: bool
    fatal: bool  # a configuration error: starting would not help
    line: str


def targets(
    settings: RedisSettings, consumers: Sequence[RedisConsumer] | None = None
) -> list[Target]:
    """The distinct Redis connections of broker, results and cache, each with its users.

    With ``consumers`` (the project's own settings, read by ``runner.supervise.discover``)
    each is checked as its library will connect; the runner's own locks follow its variables.
    """
    if consumers is not None:
        return _project_targets(settings, consumers)
    found: dict[str, tuple[list[str], str]] = {}

    def add(url: str | None, use: str, variable: str) -> None:
        if not url or url.split("://", 1)[0] not in REDIS_SCHEMES:
            return
        found.setdefault(url, ([], variable))[0].append(use)

    # A derived URL is REDIS_URL's; an explicit one is its own variable's.
    add(
        settings.broker_url,
        "broker",
        "REDIS_URL" if settings.broker_url == settings.url else "CELERY_BROKER_URL",
    )
    add(
        settings.result_backend,
        "results",
        "REDIS_URL" if settings.result_backend == settings.url else "CELERY_RESULT_BACKEND",
    )
    add(settings.url, "cache", "REDIS_URL")
    return [
        Target(
            url,
            tuple(uses),
            variable,
            upgraded=settings.upgraded_to_tls,
            tls_options=settings.tls_for(url) if url.startswith("rediss://") else None,
        )
        for url, (uses, variable) in found.items()
    ]


def _project_targets(settings: RedisSettings, consumers: Sequence[RedisConsumer]) -> list[Target]:
    found: dict[tuple[str, TLSOptions | None], tuple[list[str], str]] = {}
    for consumer in consumers:
        key = (consumer.url.reveal(), consumer.tls)
        found.setdefault(key, ([], f"the project's {consumer.setting} setting"))[0].append(
            consumer.use
        )
    # A setting that holds REDIS_URL as the runner read it (runner_settings() puts it there,
    # REQUIRE_REDIS_SSL's upgrade included) is fixed in REDIS_URL, the variable the user set.
    from_environment = {
        without_tls_options(url) if url.startswith("rediss://") else url
        for url in (settings.url, settings.broker_url, settings.result_backend)
        if url
    }
    listed = []
    for (url, tls), (uses, variable) in found.items():
        if url in from_environment:
            listed.append(Target(url, tuple(uses), "REDIS_URL", settings.upgraded_to_tls, tls))
        else:
            listed.append(Target(url, tuple(uses), variable, tls_options=tls, project=True))
    # The migration and beat leader locks are the runner's, on its own variables.
    lock_url = broker_redis_url(settings)
    if lock_url and not any(t.url == lock_url for t in listed):
        tls = settings.tls_for(lock_url) if lock_url.startswith("rediss://") else None
        listed.append(Target(lock_url, ("locks",), "REDIS_URL", settings.upgraded_to_tls, tls))
    return listed


def _uses_text(uses: tuple[str, ...]) -> str:
    return uses[0] if len(uses) == 1 else ", ".join(uses[:-1]) + " and " + uses[-1]


def _security(target: Target) -> str:
    tls = target.tls_options
    if not target.tls or tls is None:
        return "no TLS"
    if tls.verified:
        return "TLS, certificate verified"
    return "TLS, encrypted but the server is NOT verified"


def _secrets(url: str) -> list[str]:
    password = urlsplit(url).password
    if not password:
        return []
    return sorted({password, unquote(password)}, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL's password (as written and percent-decoded), on one line."""
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    if len(text) > MAX_QUOTED_CHARS:
        text = text[: MAX_QUOTED_CHARS - 3] + "..."
    return text


def _chain(error: BaseException) -> list[BaseException]:
    """The error and its causes, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _find(
    error: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """The first error of ``kind`` in ``error``'s chain, or None."""
    return next((e for e in _chain(error) if isinstance(e, kind)), None)


# --- probes for the other scheme ---------------------------------------------------------


def _speaks_tls(host: str, port: int) -> bool:
    """Whether a TLS handshake with ``host:port`` completes (nothing is verified or sent)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def _speaks_plain_redis(host: str, port: int) -> bool:
    """Whether ``host:port`` answers an unauthenticated plain-text ``PING`` like Redis."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS) as raw:
            raw.sendall(b"PING\r\n")
            reply = raw.recv(PROBE_READ_BYTES)
    except OSError:
        return False
    # +PONG, or -NOAUTH / -ERR from a server that wants a password first.
    return reply.startswith((b"+PONG", b"-NOAUTH", b"-ERR", b"-WRONGPASS"))


# --- turning an error into a line ------------------------------------------------------


def _certificate_line(
    target: Target, tls: TLSOptions, failure: ssl.SSLCertVerificationError
) -> str:
    reason = failure.verify_message or failure.reason or str(failure)
    head = f"certificate verification failed for Redis at {target.masked} ({reason}): "
    if "hostname mismatch" in str(reason).lower() or "ip address mismatch" in str(reason).lower():
        return head + (
            f"the certificate is not valid for {target.host}; use the host name your provider "
            f"gives in {target.variable}, or REDIS_SSL_CERT_REQS=optional to check the CA "
            "but not the name"
        )
    if tls.ca_file or tls.ca_data:
        where = "the CA in REDIS_SSL_CA_CERTS did not sign the server's certificate"
    else:
        where = "REDIS_SSL_CA_CERTS is not set, so the system's CAs were used"
    return head + (
        f"{where}; set REDIS_SSL_CA_CERTS to your provider's CA (e.g. Redis Cloud's "
        "redis_ca.pem, as a path or the PEM text), or REDIS_SSL_CERT_REQS=none to encrypt "
        "without verifying"
    )


def _auth_line(target: Target, error: BaseException) -> str:
    message = _scrub(str(error), target.url)
    if urlsplit(target.url).password is None:
        return (
            f"authentication failed at Redis at {target.masked}: it requires a password and "
            f"{target.variable} has none; write it as rediss://default:PASSWORD@host:port"
        )
    return (
        f"authentication failed at Redis at {target.masked} ({message}): check the user and "
        f"password in {target.variable} (Redis Cloud and Upstash: user default and the "
        "password shown on the database's page; percent-encode @ : / % in it)"
    )


def _max_clients_cause(budget_total: int | None) -> str:
    """Why Redis has no free connection, and how many this service takes."""
    ours = (
        f"this service opens up to {budget_total} (REDIS_MAX_CONNECTIONS)"
        if budget_total is not None
        else "see REDIS_MAX_CONNECTIONS"
    )
    return (
        "another instance (the one a deploy replaces) or another app holds its connections; " + ours
    )


def _not_reachable(target: Target, cause: str) -> tuple[bool, str]:
    return False, f"Redis at {target.masked} is not reachable yet ({cause})"


def diagnose(
    target: Target, tls: TLSOptions, error: BaseException, budget_total: int | None = None
) -> tuple[bool, str]:
    """(fatal, line) for the error a connection to ``target`` raised; may probe the port."""
    if isinstance(error, redis.AuthenticationError) or any(
        word in str(error) for word in ("WRONGPASS", "NOAUTH", "invalid username-password")
    ):
        return True, _auth_line(target, error)
    failure = _find(error, ssl.SSLCertVerificationError)
    if isinstance(failure, ssl.SSLCertVerificationError):
        return True, _certificate_line(target, tls, failure)
    if "max number of clients" in str(error):
        return _not_reachable(
            target, "max number of clients reached: " + _max_clients_cause(budget_total)
        )
    if _find(error, ConnectionRefusedError):
        return _not_reachable(
            target, f"connection refused: nothing listens on {target.host}:{target.port}"
        )
    gai = _find(error, socket.gaierror)
    if isinstance(gai, socket.gaierror):
        return _not_reachable(target, f"host name {target.host} not found: {gai.strerror}")
    if isinstance(error, redis.ResponseError):
        return True, (
            f"Redis at {target.masked} refused the connection's set-up "
            f"({_scrub(str(error), target.url)}): check {target.variable} (managed plans "
            "have database 0 only: end the URL with /0 or nothing)"
        )
    if isinstance(error, redis.exceptions.InvalidResponse):
        return True, (
            f"{target.host}:{target.port} is not a Redis server "
            f"({_scrub(str(error), target.url)}): check the host and port in {target.variable}"
        )

    if not target.tls and _speaks_tls(target.host, target.port):
        return True, (
            f"Redis at {target.masked} speaks TLS but the URL says redis://: write rediss:// "
            f"in {target.variable}" + ("" if target.project else ", or set REQUIRE_REDIS_SSL=true")
        )
    if target.tls and _find(error, (ssl.SSLError, TimeoutError)):
        if _speaks_plain_redis(target.host, target.port):
            fix = (
                "set REQUIRE_REDIS_SSL=false (it turned redis:// into rediss://)"
                if target.upgraded
                else f"write redis:// in {target.variable}"
            )
            return True, (
                f"Redis at {target.masked} does not speak TLS on port {target.port}, plain "
                f"Redis answers there: {fix}, or use your provider's TLS port"
            )
        if _find(error, ssl.SSLEOFError):
            return _not_reachable(
                target,
                "it closed the connection during the TLS handshake, as Redis does when it "
                "has no free connection (max number of clients): "
                + _max_clients_cause(budget_total),
            )
    if isinstance(error, redis.TimeoutError) or _find(error, TimeoutError):
        return _not_reachable(target, f"no answer within {CHECK_TIMEOUT_SECONDS:g} s")
    return _not_reachable(target, f"{type(error).__name__}: {_scrub(str(error), target.url)}")


# --- the check itself -------------------------------------------------------------------


def check_target(
    target: Target,
    settings: RedisSettings,
    budget_total: int | None = None,
    timeout: float = CHECK_TIMEOUT_SECONDS,
) -> Outcome:
    """Connect to ``target`` as the consumers would (same TLS options) and PING it once."""
    tls = target.tls_options
    client = redis.Redis.from_url(
        without_tls_options(target.url) if target.tls else target.url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        # redis-py retries with backoff by default; a check wants the first failure.
        retry=Retry(NoBackoff(), 0),
        **(redis_py_ssl_kwargs(tls) if target.tls and tls is not None else {}),
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        fatal, line = diagnose(target, tls or settings.tls, error, budget_total)
        return Outcome(target, ok=False, fatal=fatal, line=line)
    finally:
        client.close()
    line = f"Redis at {target.masked} answers ({_uses_text(target.uses)}; {_security(target)})"
    return Outcome(target, ok=True, fatal=False, line=line)


def check_redis(
    settings: RedisSettings,
    budget_total: int | None = None,
    consumers: Sequence[RedisConsumer] | None = None,
) -> list[Outcome]:
    """Check every Redis URL of broker, results and cache; no URL (local default): []."""
    return [check_target(target, settings, budget_total) for target in targets(settings, consumers)]


def preflight(
    settings: RedisSettings,
    say: Say,
    budget_total: int | None = None,
    worker: bool = True,
    consumers: Sequence[RedisConsumer] | None = None,
) -> None:
    """The start-up check: say what answers, warn when Redis is not reachable yet, and raise
    RedisCheckFailed (nothing started) on a configuration error."""
    outcomes = check_redis(settings, budget_total, consumers)
    fatal = [outcome.line for outcome in outcomes if outcome.fatal]
    if fatal:
        raise RedisCheckFailed(fatal)
    anyway = STARTING_ANYWAY + (WORKER_WILL_WAIT if worker else "")
    for outcome in outcomes:
        say(outcome.line if outcome.ok else f"{outcome.line}; {anyway}")


def check_now(
    settings: RedisSettings,
    say: Say,
    budget_total: int | None = None,
    consumers: Sequence[RedisConsumer] | None = None,
) -> None:
    """``python -m runner check``: say what answers; raise RedisCheckFailed if anything does
    not, whether misconfigured or not reachable yet."""
    outcomes = check_redis(settings, budget_total, consumers)
    if not outcomes:
        say("no Redis URL is set (local default): nothing to check")
    failed = [outcome.line for outcome in outcomes if not outcome.ok]
    if failed:
        raise RedisCheckFailed(failed)
    for outcome in outcomes:
        say(f"ok: {outcome.line}")
