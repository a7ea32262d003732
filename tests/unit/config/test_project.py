"""Tests of what the runner makes of a project's own Celery configuration, and of finding a
settings module without running it."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import pytest

from runner.config.environment import EnvironmentReader
from runner.config.plan import make_plan
from runner.config.project import (
    CeleryConfig,
    Project,
    RedisConsumer,
    celery_config,
    celery_notes,
    celery_problems,
    cert_check,
)
from runner.config.redis import RedisSettings, SecretURL, TLSOptions, read_redis_settings
from runner.config.settings import load_settings
from runner.supervise.discover import module_file

SEED_ENV = {"REDIS_URL": "redis://default:pw@redis.example:12345", "REQUIRE_REDIS_SSL": "true"}
SEED_BROKER = "rediss://default:pw@redis.example:12345"
MASKED_BROKER = "rediss://default:***@redis.example:12345"
# What the seed's base.py gives Celery (its own code, not the runner's).
SEED_CONF = {
    "broker_url": SEED_BROKER,
    "result_backend": "django-db",
    "broker_use_ssl": {"ssl_cert_reqs": ssl.CERT_NONE},
}


def redis_for(environ: dict[str, str]) -> RedisSettings:
    env = EnvironmentReader(environ)
    settings = read_redis_settings(env)
    assert env.problems == []
    return settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (ssl.CERT_NONE, "none"),
        (ssl.CERT_REQUIRED, "required"),
        ("CERT_OPTIONAL", "optional"),
        ("none", "none"),
        (" Required ", "required"),
        ("sometimes", None),
        (None, None),
    ],
)
def test_cert_check_names(value, expected):
    """ssl constants and the strings Celery accepts map to REDIS_SSL_CERT_REQS's words."""
    assert cert_check(value) == expected


def test_seed_settings_agree_with_the_seed_variables():
    """The seed's own Redis code gives the broker the runner derives, encrypted and not
    verified as the runner's variables say; its results stay in the database."""
    redis = redis_for(SEED_ENV)
    config = celery_config("config.celery:app", SEED_CONF, redis)
    assert config == CeleryConfig(
        app="config.celery:app",
        broker=MASKED_BROKER,
        result_backend="django-db",
        broker_from_environment=True,
        results_from_environment=False,
        consumers=(
            RedisConsumer(
                "broker", "CELERY_BROKER_URL", SecretURL(SEED_BROKER), TLSOptions("none")
            ),
        ),
    )
    assert config.broker_cert_check == "none"
    assert celery_problems(config, redis) == []
    assert celery_notes(config, redis) == ()


@pytest.mark.parametrize(
    ("broker", "use_ssl", "expected"),
    [
        ("redis://h:1/0", None, None),
        ("rediss://h:1/0", None, "none"),  # kombu's own default, see runner.config.project
        ("rediss://h:1/0", {}, "none"),
        ("rediss://h:1/0?ssl_cert_reqs=required", None, "required"),
        ("rediss://h:1/0?ssl_cert_reqs=CERT_OPTIONAL", None, "optional"),
        # kombu: options in the URL replace broker_use_ssl as a whole
        ("rediss://h:1/0?ssl_cert_reqs=none", {"ssl_cert_reqs": ssl.CERT_REQUIRED}, "none"),
        ("rediss://h:1/0", {"ssl_cert_reqs": "CERT_REQUIRED"}, "required"),
        ("rediss://h:1/0", {"ssl_cert_reqs": ssl.CERT_OPTIONAL}, "optional"),
        ("rediss://h:1/0", {"ssl_ca_certs": "/ca.pem"}, "required"),  # redis-py's default
    ],
)
def test_broker_certificate_check_is_read_like_kombu(broker, use_ssl, expected):
    """The broker's certificate check is what kombu will do with that URL and broker_use_ssl."""
    conf = {"broker_url": broker, "result_backend": None, "broker_use_ssl": use_ssl}
    assert celery_config("a", conf, redis_for({})).broker_cert_check == expected


@pytest.mark.parametrize(
    ("backend", "use_ssl", "expected", "refused"),
    [
        ("rediss://h:1/0?ssl_cert_reqs=CERT_NONE", None, "none", False),
        ("rediss://h:1/0?ssl_cert_reqs=required", None, "required", False),
        ("rediss://h:1/0", {"ssl_cert_reqs": ssl.CERT_REQUIRED}, "required", False),
        # Celery's backend: the URL's options on top of redis_backend_use_ssl
        ("rediss://h:1/0?ssl_cert_reqs=none", {"ssl_cert_reqs": ssl.CERT_REQUIRED}, "none", False),
        ("rediss://h:1/0", None, "required", True),  # Celery refuses: no ssl_cert_reqs
        ("redis://h:1/0", {"ssl_cert_reqs": ssl.CERT_NONE}, None, True),
    ],
)
def test_result_backend_is_read_like_celery(backend, use_ssl, expected, refused):
    """The results' TLS is what Celery's Redis backend does, and what it refuses is a problem."""
    conf = {"broker_url": "redis://h:1/0", "result_backend": backend}
    conf["redis_backend_use_ssl"] = use_ssl
    config = celery_config("a", conf, redis_for({}))
    (results,) = (c for c in config.consumers if c.use == "results")
    assert (results.tls.cert_reqs if results.tls else None, results.problem is not None) == (
        expected,
        refused,
    )


def test_a_redis_cache_is_read_like_redis_py():
    """django-redis's pool arguments and Django's own OPTIONS give the cache's TLS; CERT_NONE,
    which Celery reads but redis-py refuses, is a problem for the cache."""
    conf = {
        "broker_url": "redis://h:1/0",
        "caches": {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "rediss://h:2/0",
                "OPTIONS": {"CONNECTION_POOL_KWARGS": {"ssl_cert_reqs": None}},
            }
        },
    }
    (_, cache) = celery_config("a", conf, redis_for({})).consumers
    assert (cache.use, cache.tls, cache.problem) == ("cache", TLSOptions("none"), None)
    conf["caches"] = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "rediss://h:2/0?ssl_cert_reqs=CERT_NONE",
        }
    }
    (_, cache) = celery_config("a", conf, redis_for({})).consumers
    assert "redis-py takes only" in cache.problem


def test_an_empty_broker_is_refused_not_left_to_amqp():
    """CELERY_BROKER_URL set but empty leaves the project on Celery's amqp default: one problem
    naming the variable, instead of a worker looping on a broker nobody runs."""
    conf = {"broker_url": "", "result_backend": None}
    config = celery_config("a", conf, redis_for({"REDIS_URL": "redis://h:1/0"}))
    (problem,) = celery_problems(config, redis_for({"REDIS_URL": "redis://h:1/0"}))
    assert problem.variable == "CELERY_BROKER_URL" and "amqp://guest@localhost//" in problem.fix


def test_require_redis_ssl_and_a_project_that_connects_without_tls_is_refused():
    """REQUIRE_REDIS_SSL cannot upgrade a URL the project reads itself: one problem saying so."""
    redis = redis_for(SEED_ENV)
    conf = {"broker_url": "redis://default:pw@redis.example:12345", "result_backend": None}
    (problem,) = celery_problems(celery_config("a", conf, redis), redis)
    assert problem.variable == "REQUIRE_REDIS_SSL"
    assert "CELERY_BROKER_URL" in problem.fix and "pw" not in str(problem)


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"REDIS_SSL_CERT_REQS": "required"}, "REDIS_SSL_CERT_REQS"),
        ({"REDIS_SSL_CERT_REQS": "optional"}, "REDIS_SSL_CERT_REQS"),
    ],
)
def test_a_certificate_check_the_project_does_not_do_is_refused(extra, variable):
    """The runner's variables ask for a check the seed's CERT_NONE does not do: one problem
    naming the variable and the URL option that fixes it."""
    redis = redis_for(SEED_ENV | extra)
    (problem,) = celery_problems(celery_config("config", SEED_CONF, redis), redis)
    assert problem.variable == variable
    assert "'none'" in problem.fix and "?ssl_cert_reqs=" in problem.fix


def test_a_project_stricter_than_the_runner_is_fine():
    """The project verifies Redis and the runner's variables do not: nothing to refuse, and the
    start-up check connects as the project does (its consumers carry 'required')."""
    redis = redis_for(SEED_ENV)
    conf = SEED_CONF | {"broker_use_ssl": {"ssl_cert_reqs": ssl.CERT_REQUIRED}}
    config = celery_config("config", conf, redis)
    assert celery_problems(config, redis) == []
    assert config.broker_cert_check == "required"


def test_a_broker_of_the_projects_own_is_shown_and_is_no_local_default(tmp_path: Path):
    """Without REDIS_URL but with a broker in the project's settings, the plan shows that broker
    and does not claim the local default."""
    settings = load_settings({}, tmp_path)
    conf = {"broker_url": "redis://localhost:6379/0", "result_backend": "django-db"}
    project = Project(
        "config.settings.production",
        "DJANGO_SETTINGS_MODULE",
        "config",
        "CELERY_APP",
        celery=celery_config("config.celery:app", conf, settings.redis),
    )
    plan = make_plan(settings, project)
    assert (plan.broker, plan.result_backend, plan.local_default) == (
        "redis://localhost:6379/0",
        "django-db",
        False,
    )
    assert not any("local default" in note for note in plan.notes)
    assert any("choose Celery's broker themselves" in note for note in plan.notes)


def test_the_runners_own_settings_keep_the_local_default(tmp_path: Path):
    """A project using runner_settings without REDIS_URL gets the local default, as planned."""
    settings = load_settings({}, tmp_path)
    conf = {"broker_url": "filesystem://", "result_backend": f"file://{tmp_path}/results"}
    project = Project(
        "app.settings",
        "manage.py",
        "app",
        "CELERY_APP",
        celery=celery_config("a", conf, settings.redis),
    )
    plan = make_plan(settings, project)
    assert plan.local_default and plan.broker.startswith("filesystem://")
    assert not any("themselves" in note for note in plan.notes)


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder on sys.path whose package would fail if it were executed."""
    settings = tmp_path / "seedcfg" / "settings"
    settings.mkdir(parents=True)
    (tmp_path / "seedcfg" / "__init__.py").write_text("raise RuntimeError('executed')\n")
    (settings / "__init__.py").write_text("raise RuntimeError('executed')\n")
    (settings / "production.py").write_text("raise RuntimeError('executed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_module_file_finds_settings_without_running_them(project_dir: Path):
    """A settings module is found in its package's folder; nothing of the package is executed."""
    found = module_file("seedcfg.settings.production")
    assert found == str(project_dir / "seedcfg" / "settings" / "production.py")
    assert "seedcfg" not in sys.modules


@pytest.mark.parametrize(
    "name", ["seedcfg.settings.prod", "seedcfg.nothing.production", "noseedcfg.settings"]
)
def test_module_file_is_none_for_what_is_not_there(project_dir: Path, name: str):
    """A missing module, at any depth, is None (and still nothing is executed)."""
    assert module_file(name) is None
    assert "seedcfg" not in sys.modules
