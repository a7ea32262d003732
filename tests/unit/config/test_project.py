"""Tests of what the runner makes of a project's own Celery configuration, and of finding a
settings module without running it."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import pytest

from runner.config.environment import EnvironmentReader
from runner.config.plan import make_plan
from runner.config.project import CeleryConfig, Project, celery_config, celery_notes, cert_check
from runner.config.redis import RedisSettings, read_redis_settings
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
    """The seed's own Redis code gives the broker the runner derives and the same certificate
    check; its results stay in the database."""
    config = celery_config("config.celery:app", SEED_CONF, redis_for(SEED_ENV))
    assert config == CeleryConfig(
        app="config.celery:app",
        broker=MASKED_BROKER,
        result_backend="django-db",
        broker_from_environment=True,
        results_from_environment=False,
        broker_cert_check="none",
    )
    assert celery_notes(config, redis_for(SEED_ENV)) == ()


@pytest.mark.parametrize(
    ("broker", "use_ssl", "expected"),
    [
        ("redis://h:1/0", None, None),
        ("rediss://h:1/0", None, "none"),  # kombu's own default, see runner.config.redis
        ("rediss://h:1/0?ssl_cert_reqs=required", None, "required"),
        ("rediss://h:1/0", {"ssl_cert_reqs": "CERT_REQUIRED"}, "required"),
        ("rediss://h:1/0", {"ssl_cert_reqs": ssl.CERT_OPTIONAL}, "optional"),
    ],
)
def test_broker_certificate_check_is_read_like_kombu(broker, use_ssl, expected):
    """The certificate check comes from broker_use_ssl, else the URL, else kombu's default."""
    conf = {"broker_url": broker, "result_backend": None, "broker_use_ssl": use_ssl}
    assert celery_config("a", conf, redis_for({})).broker_cert_check == expected


def test_a_ca_the_project_does_not_use_is_reported():
    """REDIS_SSL_CA_CERTS asks for verification but the seed passes CERT_NONE: one note, with
    the line that fixes it."""
    redis = redis_for(SEED_ENV | {"REDIS_SSL_CERT_REQS": "required"})
    notes = celery_notes(celery_config("config", SEED_CONF, redis), redis)
    assert len(notes) == 1
    assert "ask for 'required'" in notes[0] and "'none'" in notes[0]
    assert "globals().update(runner_settings(BASE_DIR))" in notes[0]


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


def test_a_project_stricter_than_the_runner_is_reported():
    """The project verifies Redis but the runner's variables do not: the note says which
    variables make the runner's own check match."""
    redis = redis_for(SEED_ENV)
    conf = SEED_CONF | {"broker_use_ssl": {"ssl_cert_reqs": ssl.CERT_REQUIRED}}
    (note,) = celery_notes(celery_config("config", conf, redis), redis)
    assert "ask for 'none'" in note and "set REDIS_SSL_CERT_REQS=required" in note


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
