"""The threads pool's check after each task (runner.worker.memory_check), on fed figures and
on this very process."""

import pytest

from runner.worker.memory_check import MemoryShareRestart, OwnMemory


def run(figures: list[float], share: float = 242) -> tuple[int, list[int]]:
    """Feed one memory figure per finished task; which task's end restarted, if any."""
    restarts: list[int] = []
    feed = iter(figures)
    check = MemoryShareRestart(share, measure=lambda: next(feed), restart=lambda: None)
    for index in range(len(figures)):
        if check.restarting:
            break
        check()
        if check.restarting:
            restarts.append(index)
    return check.largest_growth_mb, restarts


def test_a_fast_leak_restarts_before_the_task_that_would_pass_the_share():
    """40 MB a task from 90 MB: after 130, 170, 210 the next (250) would pass 242."""
    growth, restarts = run([90 + 40 * n for n in range(1, 10)])
    assert growth == 40 and restarts == [2]  # at 210 MB, before reaching 250


def test_a_steady_worker_never_restarts():
    assert run([95, 97, 96, 98, 97, 96] * 5)[1] == []


def test_the_first_task_over_the_share_restarts_even_without_a_growth_seen():
    assert run([250])[1] == [0]


def test_one_restart_only_however_many_tasks_end_meanwhile():
    calls = []
    check = MemoryShareRestart(100, measure=lambda: 200, restart=lambda: calls.append(1))
    for _ in range(5):
        check()
    assert calls == [1]


def test_own_memory_is_near_this_process_pss():
    import psutil

    estimate = OwnMemory()()
    pss = psutil.Process().memory_full_info().pss / 1024 / 1024
    assert estimate == pytest.approx(pss, rel=0.2)
