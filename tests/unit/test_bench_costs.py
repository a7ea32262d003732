"""The arithmetic of bench/process_costs.py: per-process costs from program totals, and the
ratio against the seed's layout, on made-up runs."""

from __future__ import annotations

from bench.process_costs import RunResult, derive_costs, ratios, summarise


def run(key: str, **programs: float) -> RunResult:
    """One made-up run whose after-work figures are the idle ones plus 10 MB per program."""
    return RunResult(
        scenario=key,
        round=1,
        total_mb=sum(programs.values()),
        programs=dict(programs),
        processes=[],
        settled=True,
        settle_seconds=2.0,
        sample_ms=5.0,
        warm_total_mb=sum(programs.values()) + 10 * len(programs),
        warm_programs={name: mb + 10 for name, mb in programs.items()},
    )


RUNS = [
    run("runner-sep-1", supervisord=18, web=50, worker=80, beat=65),
    run("runner-sep-3", supervisord=18, web=57, worker=102, beat=65),
    run("runner-emb-1", supervisord=18, web=50, worker=98),
    run("runner-emb-3", supervisord=18, web=57, worker=120),
    run("seed-web", web=108),
    run("seed-worker", worker=92),
    run("seed-beat", beat=66),
    run("runner-prefork", supervisord=18, web=54, worker=108),
    run("runner-default", supervisord=18, web=54, worker=80),
]


def test_costs_are_the_line_through_one_and_three_workers():
    """The slope is one more worker or child; the total for one minus it, the first process."""
    assert derive_costs(RUNS) == {
        "supervisord": 18.0,
        "web_master_and_gthread_worker": 46.5,
        "web_gthread_extra_thread": 3.5,
        "celery_prefork_main": 69.0,
        "celery_prefork_child": 11.0,
        "beat_embedded_prefork": 18.0,
        "beat_separate": 65.0,
    }


def test_after_work_costs_use_the_second_samples():
    """With warm=True the same arithmetic runs on the after-work figures."""
    assert derive_costs(RUNS, warm=True)["web_master_and_gthread_worker"] == 56.5


def test_ratio_is_against_the_three_seed_services_summed():
    """The seed's total is web + worker + beat, each measured alone."""
    compared = ratios(summarise(RUNS))
    assert compared["seed"] == {"total_mb": 266.0}
    assert compared["runner-default"] == {"total_mb": 152.0, "ratio": round(152 / 266, 3)}
    assert compared["runner-prefork"] == {"total_mb": 180.0, "ratio": round(180 / 266, 3)}


def test_the_beat_thread_is_the_workers_difference_with_and_without_beat():
    """runner-default's worker holds the beat thread; runner-nobeat's the same without."""
    costs = derive_costs([*RUNS, run("runner-nobeat", supervisord=18, web=54, worker=76.5)])
    assert costs["beat_thread"] == 3.5
    assert "beat_thread" not in derive_costs(RUNS)
