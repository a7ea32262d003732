"""Redis URLs and TLS options, read once from the environment and shaped for each consumer.

This is the one place that understands the seed's Redis variables (``REDIS_URL``,
``REQUIRE_REDIS_SSL``, ``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``) and our TLS ones
(``REDIS_SSL_CERT_REQS``, ``REDIS_SSL_CA_CERTS``). Celery's broker, Celery's result backend,
the Django cache and the runner's own checks all take their options from here, so what the
user asked for is what every consumer does.

Traps this module exists for (found in the libraries' sources):
- kombu accepts a ``rediss://`` broker URL without TLS options and silently skips certificate
  checks (it only logs a warning), so we always pass ``broker_use_ssl`` explicitly;
- Celery's Redis result backend refuses a ``rediss://`` URL without ``ssl_cert_reqs``, so we
  always pass ``redis_backend_use_ssl``;
- redis-py (and so the Django cache) verifies certificates by default, so the seed's
  "encrypted, not verified" default must be passed to it explicitly too;
- TLS options in a URL's query string (``?ssl_cert_reqs=none``, Celery's documented form)
  are read by kombu and by Celery's result backend (which accept ``CERT_NONE`` as well as
  ``none``), but redis-py's own URL parser passes them through as strings and refuses
  ``CERT_NONE``. So the runner reads them here, once: for a URL they win over
  ``REDIS_SSL_*`` (as in Celery), and every consumer the runner configures gets the URL
  without them plus the same options as arguments (``client_args``, ``runner_settings``).
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from runner.config.environment import EnvironmentReader
from runner.errors import Problem

REDIS_SCHEMES = ("redis", "rediss")
# What Celery itself accepts that a user may reasonably point us at.
BROKER_SCHEMES = (*REDIS_SCHEMES, "amqp", "amqps", "pyamqp")
RESULT_SCHEMES = (*REDIS_SCHEMES, "django-db", "django-cache", "rpc", "file")

CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}
# The TLS options Celery's Redis result backend and kombu read from a rediss:// URL's query
# string (celery.backends.redis, kombu.utils.url.parse_url), and the values they take for
# ssl_cert_reqs (kombu.utils.url.parse_ssl_cert_reqs: both spellings, case as written).
URL_TLS_KEYS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
URL_CERT_REQS = {
    **{name: name for name in CERT_REQS},
    "CERT_REQUIRED": "required",
    "CERT_OPTIONAL": "optional",
    "CERT_NONE": "none",
}

# Redis Cloud's smallest plans cap a database at 30 connections.
DEFAULT_MAX_CONNECTIONS = 30

PEM_MARKER = "-----BEGIN CERTIFICATE-----"
# A bad %-escape ("%zz") is how a raw '%' in a password usually shows up.
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class TLSOptions:
    """How to check the server's certificate; the same for every consumer."""

    cert_reqs: str  # one of CERT_REQS
    ca_file: str | None = None  # a PEM bundle on disk
    ca_data: str | None = None  # PEM text given directly in the environment
    certfile: str | None = None  # a client certificate (ssl_certfile in a URL)
    keyfile: str | None = None  # its key (ssl_keyfile)

    @property
    def verified(self) -> bool:
        return self.cert_reqs == "required"

    @property
    def check_hostname(self) -> bool:
        # Hostname checking only makes sense when the certificate itself is required.
        return self.verified


@dataclass(frozen=True)
class RedisSettings:
    """Where Celery and the cache talk to Redis, and how."""

    url: str | None  # REDIS_URL after the TLS upgrade; None: no Redis (local default)
    broker_url: str | None
    result_backend: str | None
    upgraded_to_tls: bool  # REQUIRE_REDIS_SSL turned at least one redis:// into rediss://
    tls: TLSOptions
    max_connections: int
    require_tls: bool = False  # REQUIRE_REDIS_SSL
    tls_cert_reqs_given: bool = False  # REDIS_SSL_CERT_REQS set, not implied by a CA
    tls_variables_given: tuple[str, ...] = ()  # the REDIS_SSL_* variables that are set

    @property
    def urls(self) -> tuple[str, ...]:
        """REDIS_URL, the broker's and the results' URLs, each once, those that are set."""
        given = (self.url, self.broker_url, self.result_backend)
        return tuple(dict.fromkeys(u for u in given if u))

    @property
    def uses_tls(self) -> bool:
        return any(u.startswith("rediss://") for u in self.urls)

    @property
    def all_verified(self) -> bool:
        """Every rediss:// URL checks the server's certificate."""
        return all(self.tls_for(u).verified for u in self.urls if u.startswith("rediss://"))

    def tls_for(self, url: str) -> TLSOptions:
        """The TLS options for ``url``: REDIS_SSL_*, overridden by those in its query string."""
        return tls_for(self.tls, url)


def url_tls_options(url: str) -> dict[str, str]:
    """The TLS options in ``url``'s query string, percent-decoded (as Celery decodes them)."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return {}
    return {key: value for key, value in parse_qsl(query) if key in URL_TLS_KEYS}


def without_tls_options(url: str) -> str:
    """``url`` without the TLS options of its query string (given to redis-py as arguments)."""
    parts = urlsplit(url)
    kept = [(key, value) for key, value in parse_qsl(parts.query) if key not in URL_TLS_KEYS]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def tls_for(base: TLSOptions, url: str) -> TLSOptions:
    """``base`` with the options written in ``url`` on top, meaning what they mean to Celery."""
    given = url_tls_options(url)
    if not given:
        return base
    cert_reqs = URL_CERT_REQS.get(given.get("ssl_cert_reqs", ""), base.cert_reqs)
    ca_file = given.get("ssl_ca_certs")
    return TLSOptions(
        cert_reqs=cert_reqs,
        ca_file=ca_file or base.ca_file,
        ca_data=None if ca_file else base.ca_data,
        certfile=given.get("ssl_certfile") or base.certfile,
        keyfile=given.get("ssl_keyfile") or base.keyfile,
    )


def mask_url(url: str | None) -> str | None:
    """``rediss://default:<password>@host:6379`` -> ``rediss://default:***@host:6379``.

    Whatever the password holds: everything between the scheme's ``//`` and the last ``@``
    after the user name is hidden, so a password with an unencoded ``/ # ? @ :`` (a URL
    that does not parse) is masked all the same.
    """
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
    if "/" in user or "?" in user or "#" in user:
        user = ""  # the "user" ran into a password's special characters: show none of it
    return f"{scheme}://{user}:***@{hostpart}" if userinfo else f"{scheme}://{hostpart}"


class SecretURL:
    """A URL that shows itself masked: ``str``, ``repr`` and JSON all give ``mask_url``.

    Held where a URL with its password travels inside objects that are printed (the plan,
    ``python -m runner plan --json``); ``reveal()`` is the only way to the password.
    """

    __slots__ = ("_url",)

    def __init__(self, url: str):
        self._url = url

    def reveal(self) -> str:
        return self._url

    def __str__(self) -> str:
        return mask_url(self._url) or ""

    def __repr__(self) -> str:
        return f"SecretURL({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretURL) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)

    def __deepcopy__(self, memo: dict) -> SecretURL:
        return self


def _unencoded_in_userinfo(url: str) -> str | None:
    """A ``/``, ``?`` or ``#`` before the last ``@`` (where a password is): a URL parser stops
    the host part there, so the password's rest becomes the host, the port or the path."""
    _scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    userinfo = rest.rpartition("@")[0]
    return next((c for c in userinfo if c in "/?#"), None)


def _url_problem(
    name: str, url: str, schemes: tuple[str, ...], require_tls: bool = False
) -> Problem | None:
    masked = mask_url(url)
    # Celery takes some backends by bare name: CELERY_RESULT_BACKEND=django-db (the admin's
    # task results, django_celery_results), django-cache, rpc.
    if url in schemes and url not in REDIS_SCHEMES:
        return None
    if any(c.isspace() for c in url):
        return Problem(name, masked, "the URL contains a space; remove it or percent-encode it")
    if _BAD_PERCENT.search(url):
        return Problem(
            name,
            masked,
            "the URL has a '%' that is not a %XX escape; write a '%' in the password as %25",
        )
    unencoded = _unencoded_in_userinfo(url)
    if unencoded:
        return Problem(
            name,
            masked,
            f"the password holds a '{unencoded}' that is not percent-encoded, so the URL "
            f"does not parse; write it as {quote(unencoded, safe='')}",
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return Problem(name, masked, "the port is not a number between 0 and 65535")
    if parts.scheme not in schemes:
        return Problem(
            name,
            masked,
            f"unknown scheme '{parts.scheme}://'; use one of "
            + ", ".join(f"{s}://" for s in schemes),
        )
    if parts.scheme in REDIS_SCHEMES:
        if not parts.hostname:
            return Problem(name, masked, "no host; use redis[s]://user:password@host:port")
        if port is None:
            return Problem(name, masked, "no port; Redis Cloud URLs end with :<port>")
        return _url_tls_problem(name, masked, parts.scheme, parts.query, require_tls)
    return None


def _url_tls_problem(
    name: str, masked: str | None, scheme: str, query: str, require_tls: bool
) -> Problem | None:
    """TLS options in a URL's query string: the ones Celery reads, with values it accepts."""
    options = dict(parse_qsl(query))
    unknown = sorted(key for key in options if key.startswith("ssl") and key not in URL_TLS_KEYS)
    if unknown:
        return Problem(
            name,
            masked,
            f"unknown TLS option in the URL ({', '.join(unknown)}); Celery reads "
            + ", ".join(URL_TLS_KEYS),
        )
    given = [key for key in URL_TLS_KEYS if key in options]
    if given and scheme == "redis" and not require_tls:
        return Problem(
            name,
            masked,
            f"TLS options ({', '.join(given)}) on a redis:// URL: Celery refuses them; "
            "write rediss:// to use TLS, or remove them",
        )
    reqs = options.get("ssl_cert_reqs")
    if reqs is not None and reqs not in URL_CERT_REQS:
        return Problem(
            name,
            masked,
            f"ssl_cert_reqs={reqs!r} in the URL; use required, optional or none "
            "(or CERT_REQUIRED, CERT_OPTIONAL, CERT_NONE)",
        )
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if key in options and not os.path.isfile(options[key]):
            return Problem(name, masked, f"{key}={options[key]!r} in the URL: no such file")
    return None


def _upgrade(url: str | None, require_tls: bool) -> tuple[str | None, bool]:
    if require_tls and url and url.startswith("redis://"):
        return "rediss://" + url[len("redis://") :], True
    return url, False


def _read_ca(value: str) -> tuple[TLSOptions | None, str | None]:
    """Check a CA bundle (a path or PEM text); return (partial options, error)."""
    if PEM_MARKER in value:
        try:
            ssl.create_default_context(cadata=value)
        except (ssl.SSLError, ValueError):
            return None, "the PEM text is not a valid certificate; paste the whole redis_ca.pem"
        return TLSOptions("required", ca_data=value), None
    if not os.path.isfile(value):
        return None, "no such file; give the path of a PEM bundle, or the PEM text itself"
    try:
        ssl.create_default_context(cafile=value)
    except (ssl.SSLError, ValueError, OSError):
        return None, "the file is not a PEM certificate bundle"
    return TLSOptions("required", ca_file=value), None


def read_redis_settings(env: EnvironmentReader) -> RedisSettings:
    """Read the Redis variables; problems are recorded on ``env``."""
    environ = env.environ
    problems = env.problems

    require_tls = env.bool("REQUIRE_REDIS_SSL", False)
    max_connections = env.int(
        "REDIS_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, minimum=4, maximum=100_000
    )

    url = environ.get("REDIS_URL")
    if url is not None and not url.strip():
        problems.append(
            Problem(
                "REDIS_URL",
                url,
                "empty; give your Redis URL "
                "(rediss://default:PASSWORD@host:port) or unset it to use "
                "the local default",
            )
        )
        url = None
    if url is not None and (p := _url_problem("REDIS_URL", url, REDIS_SCHEMES, require_tls)):
        problems.append(p)

    # The seed documents these as "leave empty": empty means derive from REDIS_URL.
    broker = environ.get("CELERY_BROKER_URL") or None
    backend = environ.get("CELERY_RESULT_BACKEND") or None
    if broker is not None and (
        p := _url_problem("CELERY_BROKER_URL", broker, BROKER_SCHEMES, require_tls)
    ):
        problems.append(p)
    if backend is not None and (
        p := _url_problem("CELERY_RESULT_BACKEND", backend, RESULT_SCHEMES, require_tls)
    ):
        problems.append(p)

    if require_tls and url is None and broker is None:
        problems.append(
            Problem(
                "REQUIRE_REDIS_SSL",
                environ.get("REQUIRE_REDIS_SSL"),
                "is true but REDIS_URL is not set; set REDIS_URL or remove REQUIRE_REDIS_SSL",
            )
        )

    url, up1 = _upgrade(url, require_tls)
    broker, up2 = _upgrade(broker or url, require_tls)
    backend, up3 = _upgrade(backend or url, require_tls)

    tls = TLSOptions("none")
    ca_value = environ.get("REDIS_SSL_CA_CERTS")
    if ca_value is not None:
        ca_tls, error = _read_ca(ca_value)
        if error:
            shown = ca_value if PEM_MARKER not in ca_value else "<PEM text>"
            problems.append(Problem("REDIS_SSL_CA_CERTS", shown[:80], error))
        else:
            tls = ca_tls
    reqs = environ.get("REDIS_SSL_CERT_REQS")
    if reqs is not None:
        if reqs.strip().lower() not in CERT_REQS:
            problems.append(Problem("REDIS_SSL_CERT_REQS", reqs, "use required, optional or none"))
        else:
            tls = TLSOptions(reqs.strip().lower(), tls.ca_file, tls.ca_data)

    return RedisSettings(
        url=url,
        broker_url=broker,
        result_backend=backend,
        upgraded_to_tls=up1 or up2 or up3,
        tls=tls,
        max_connections=max_connections,
        require_tls=require_tls,
        tls_cert_reqs_given=reqs is not None,
        tls_variables_given=tuple(
            name for name in ("REDIS_SSL_CA_CERTS", "REDIS_SSL_CERT_REQS") if name in environ
        ),
    )


# --- The same TLS choice, in the form each consumer takes -------------------------------


def redis_py_ssl_kwargs(tls: TLSOptions) -> dict[str, object]:
    """Keyword arguments for redis-py's SSLConnection (the cache, our checks, the backend)."""
    kwargs: dict[str, object] = {
        "ssl_cert_reqs": CERT_REQS[tls.cert_reqs],
        "ssl_check_hostname": tls.check_hostname,
    }
    if tls.ca_file:
        kwargs["ssl_ca_certs"] = tls.ca_file
    if tls.ca_data:
        kwargs["ssl_ca_data"] = tls.ca_data
    if tls.certfile:
        kwargs["ssl_certfile"] = tls.certfile
    if tls.keyfile:
        kwargs["ssl_keyfile"] = tls.keyfile
    return kwargs


def broker_use_ssl(tls: TLSOptions) -> dict[str, object]:
    """Celery's ``broker_use_ssl`` for the Redis transport (kombu passes it to redis-py)."""
    return redis_py_ssl_kwargs(tls)


def redis_backend_use_ssl(tls: TLSOptions) -> dict[str, object]:
    """Celery's ``redis_backend_use_ssl``; it must hold ``ssl_cert_reqs`` or Celery refuses."""
    return redis_py_ssl_kwargs(tls)


def client_args(settings: RedisSettings, url: str) -> tuple[str, dict[str, object]]:
    """``(url, kwargs)`` for ``redis.Redis.from_url(url, **kwargs)``: the URL without its TLS
    options, and those options (``tls_for``) as redis-py's keyword arguments."""
    if not url.startswith("rediss://"):
        return url, {}
    return without_tls_options(url), redis_py_ssl_kwargs(settings.tls_for(url))


def broker_redis_url(settings: RedisSettings) -> str | None:
    """The broker's URL when the broker is Redis, else REDIS_URL; None without Redis.

    Where the beat leader lock lives (runner.worker.beat_leader): every instance of a scaled
    service shares its broker.
    """
    for url in (settings.broker_url, settings.url):
        if url and url.startswith(("redis://", "rediss://")):
            return url
    return None
