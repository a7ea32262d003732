"""Table-driven tests of environment parsing: defaults, strict flags, every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.redis import RedisSettings, TLSOptions
from runner.config.settings import VARIABLES, Settings, load_settings
from runner.errors import ConfigError

CWD = Path("/srv/project")

DEFAULTS = Settings(
    port=8000,
    run_web=True,
    run_worker=True,
    run_beat=True,
    beat_mode="embedded",
    run_migrations=True,
    web_concurrency=None,
    celery_concurrency=None,
    max_tasks_per_child=100,
    web_timeout=120,
    shutdown_grace=8,
    log_level="info",
    data_dir=CWD / ".runner-data",
    django_settings_module=None,
    celery_app=None,
    redis=RedisSettings(
        url=None,
        broker_url=None,
        result_backend=None,
        upgraded_to_tls=False,
        tls=TLSOptions("none"),
        max_connections=30,
    ),
)


def test_empty_environment_gives_documented_defaults():
    """With nothing set, every setting takes the default the README documents."""
    assert load_settings({}, CWD) == DEFAULTS


@pytest.mark.parametrize(
    ("environ", "field", "expected"),
    [
        ({"PORT": "10000"}, "port", 10000),
        ({"RUN_BEAT": "false"}, "run_beat", False),
        ({"RUN_BEAT": "FALSE"}, "run_beat", False),
        ({"RUN_WEB": "0"}, "run_web", False),
        ({"RUN_WORKER": "no"}, "run_worker", False),
        ({"RUN_MIGRATIONS": "off"}, "run_migrations", False),
        ({"BEAT_MODE": "separate"}, "beat_mode", "separate"),
        ({"WEB_CONCURRENCY": "3"}, "web_concurrency", 3),
        ({"CELERY_CONCURRENCY": " 4 "}, "celery_concurrency", 4),
        ({"SHUTDOWN_GRACE_SECONDS": "10"}, "shutdown_grace", 10),
        ({"LOG_LEVEL": "DEBUG"}, "log_level", "debug"),
        ({"BEAT_LEADER_LOCK_SECONDS": "60"}, "beat_leader_lock_seconds", 60),
        ({"RUNNER_DATA_DIR": "/var/data"}, "data_dir", Path("/var/data")),
        ({"RUNNER_DATA_DIR": "state"}, "data_dir", CWD / "state"),
        (
            {"DJANGO_SETTINGS_MODULE": "config.settings.production"},
            "django_settings_module",
            "config.settings.production",
        ),
    ],
)
def test_each_variable_is_read(environ, field, expected):
    """Each variable sets its field, with whitespace and case forgiven where harmless."""
    assert getattr(load_settings(environ, CWD), field) == expected


@pytest.mark.parametrize(
    ("environ", "variable", "words"),
    [
        ({"RUN_BEAT": "ture"}, "RUN_BEAT", "not a boolean"),
        ({"RUN_WEB": ""}, "RUN_WEB", "not a boolean"),
        ({"PORT": "http"}, "PORT", "not a whole number"),
        ({"PORT": "0"}, "PORT", "out of range"),
        ({"PORT": "70000"}, "PORT", "out of range"),
        ({"WEB_CONCURRENCY": "-1"}, "WEB_CONCURRENCY", "out of range"),
        ({"CELERY_CONCURRENCY": "1e3"}, "CELERY_CONCURRENCY", "not a whole number"),
        # Python's int() would read these as 3 and 10: not what a person reads.
        ({"PORT": "\u0663"}, "PORT", "not a whole number"),
        ({"WEB_CONCURRENCY": "1_0"}, "WEB_CONCURRENCY", "not a whole number"),
        ({"RUNNER_DATA_DIR": "data\nmore"}, "RUNNER_DATA_DIR", "control character"),
        ({"CELERY_CONCURRENCY": "99999999999999999999"}, "CELERY_CONCURRENCY", "out of range"),
        ({"SHUTDOWN_GRACE_SECONDS": "1"}, "SHUTDOWN_GRACE_SECONDS", "out of range"),
        ({"BEAT_MODE": "inside"}, "BEAT_MODE", "use one of embedded, separate"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL", "use one of"),
        ({"BEAT_LEADER_LOCK_SECONDS": "30s"}, "BEAT_LEADER_LOCK_SECONDS", "not a whole number"),
        ({"BEAT_LEADER_LOCK_SECONDS": "2"}, "BEAT_LEADER_LOCK_SECONDS", "out of range"),
        ({"RUNNER_DATA_DIR": " "}, "RUNNER_DATA_DIR", "empty"),
        (
            {"RUN_WEB": "false", "RUN_WORKER": "false", "RUN_BEAT": "false"},
            "RUN_WEB",
            "nothing to run",
        ),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(environ, variable, words):
    """A bad value is a ConfigError whose line names the variable and says what to use."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ, CWD)
    (line,) = caught.value.lines()
    assert line.startswith(variable)
    assert words in line


def test_all_problems_are_reported_at_once():
    """Three bad variables give three lines in one error, not one error per deploy."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"RUN_BEAT": "ture", "PORT": "x", "LOG_LEVEL": "loud"}, CWD)
    assert [line.split("=")[0] for line in caught.value.lines()] == [
        "PORT",
        "RUN_BEAT",
        "LOG_LEVEL",
    ]


def test_the_configuration_reference_is_the_variable_table():
    """docs/configuration.md holds `python -m runner variables`' table as it is today, so
    every variable the runner reads is documented with its default and meaning."""
    reference = (Path(__file__).parents[3] / "docs" / "configuration.md").read_text()
    table = "\n".join(
        ["| Variable | Default | Meaning |", "|---|---|---|"]
        + [f"| `{v.name}` | {v.default} | {v.meaning} |" for v in VARIABLES]
    )
    assert table in reference


def test_a_status_token_shorter_than_the_minimum_is_refused_without_being_shown():
    """RUNNER_STATUS_TOKEN under MIN_STATUS_TOKEN_LENGTH is bad input; the line masks it."""
    from runner.config.settings import MIN_STATUS_TOKEN_LENGTH

    short = "s3cr" * ((MIN_STATUS_TOKEN_LENGTH - 1) // 4) + "x" * (
        (MIN_STATUS_TOKEN_LENGTH - 1) % 4
    )
    assert len(short) == MIN_STATUS_TOKEN_LENGTH - 1
    with pytest.raises(ConfigError) as raised:
        load_settings({"RUNNER_STATUS_TOKEN": short}, Path("/srv"))
    (line,) = raised.value.lines()
    assert line.startswith("RUNNER_STATUS_TOKEN='***': too short") and short not in line
    long_enough = short + "y"
    assert load_settings({"RUNNER_STATUS_TOKEN": long_enough}, Path("/srv")).status_token == (
        long_enough
    )


def test_a_long_bad_value_is_echoed_cut_short():
    """A 100 KB value (a pasted file) is named by its start and length, not echoed whole."""
    with pytest.raises(ConfigError) as raised:
        load_settings({"PORT": "9" * 100_000}, CWD)
    (line,) = raised.value.lines()
    assert line.startswith("PORT='99999") and "... (100000 characters): out of range" in line
    assert len(line) < 200
