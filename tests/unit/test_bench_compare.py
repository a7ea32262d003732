"""The arithmetic and the table of bench/compare.py, on made-up figures (nothing is started)."""

from __future__ import annotations

from bench.compare import (
    FULL,
    METRICS,
    instance_hours,
    medians,
    ratio,
    report,
    table,
)


def row(text: str, label: str) -> list[str]:
    """The cells of the table row whose first cell is ``label``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in:\n{text}")


def test_ratio_is_runner_over_seed_and_missing_when_it_cannot_be_computed():
    """runner / seed; no ratio without both figures or against a zero."""
    assert ratio(180, 270) == 180 / 270
    assert ratio(0, 1488) == 0
    assert ratio(None, 270) is None
    assert ratio(180, None) is None
    assert ratio(5, 0) is None


def test_instance_hours_one_free_service_against_three_with_two_paid():
    """744 h in a 31-day month; only the seed's web may be free; 750 free hours in all."""
    assert instance_hours(1, 1) == {"hours": 744, "paid_hours": 0}
    assert instance_hours(3, 1) == {"hours": 2232, "paid_hours": 1488}
    # Two free web services always on: 1488 h, of which only 750 are free.
    assert instance_hours(2, 2) == {"hours": 1488, "paid_hours": 738}
    assert instance_hours(1, 1, days=30) == {"hours": 720, "paid_hours": 0}


def test_medians_per_figure_over_the_runs_that_have_it():
    """A run that failed part-way simply lacks some figures."""
    runs = [{"a": 1.0, "b": 10.0}, {"a": 3.0}, {"a": 2.0, "b": 20.0}]
    assert medians(runs) == {"a": 2.0, "b": 15.0}
    assert medians([]) == {}


def test_table_has_every_metric_with_its_ratio_then_the_hours():
    """One row per metric in order, figures rounded per metric, then the arithmetic."""
    figures = {
        "runner": {"idle_pss_mb": 180.4, "healthz_cpu_seconds": 1.5, "idle_connections": 4},
        "seed": {"idle_pss_mb": 270.0, "healthz_cpu_seconds": 2.0, "idle_connections": 10},
    }
    text = table(figures)
    labels = [line.split("|")[1].strip() for line in text.splitlines()[2:]]
    assert labels[: len(METRICS)] == [metric.label for metric in METRICS]
    assert row(text, "idle memory, total PSS (MB)") == ["180", "270", "0.67"]
    assert row(text, "cold start to /admin/login/ 200, CPU of the tree (s)") == [
        "1.50",
        "2.00",
        "0.75",
    ]
    assert row(text, "Redis connections at idle") == ["4", "10", "0.40"]
    assert row(text, "instance hours per month (31 days, always on)") == ["744", "2232", "0.33"]
    assert row(text, "of which beyond the 750 free hours (paid)") == ["0", "1488", "0.00"]


def test_a_figure_missing_on_either_side_reads_n_a():
    """A layout that failed leaves its cells, and the ratio, as n/a rather than a made-up 0."""
    text = table({"runner": {"idle_pss_mb": 180.0}, "seed": {}})
    assert row(text, "idle memory, total PSS (MB)") == ["180", "n/a", "n/a"]
    assert row(text, "peak memory under mixed load, total PSS (MB)") == ["n/a", "n/a", "n/a"]


def test_report_says_how_many_runs_where_and_when_above_the_table():
    """The heading names the runs, date, machine and the runner's layout; the table follows."""
    about = {"date": "2026-11-25", "machine": "2 cores, Python 3.11.7", "runner": "R"}
    text = report({"runner": {}, "seed": {}}, 3, FULL, about)
    heading, rest = text.split("\n\n", 1)
    assert heading.startswith("Medians of 3 run(s), 2026-11-25, 2 cores, Python 3.11.7.")
    assert "runner: R;" in heading
    assert rest.startswith("| | runner (1 service) | seed (3 services) | runner / seed |")


def test_the_exec_model_gets_its_own_columns_when_measured():
    """With RUNNER_FORK=false figures the table has both runner models, each with its ratio."""
    figures = {
        "runner": {"idle_pss_mb": 120.0},
        "runner-exec": {"idle_pss_mb": 180.0},
        "seed": {"idle_pss_mb": 300.0},
    }
    header, _rule, first, *_ = table(figures).splitlines()
    assert header == (
        "| | runner (1 service) | runner, RUNNER_FORK=false | seed (3 services) "
        "| runner / seed | RUNNER_FORK=false / seed |"
    )
    assert first == "| idle memory, total PSS (MB) | 120 | 180 | 300 | 0.40 | 0.60 |"
