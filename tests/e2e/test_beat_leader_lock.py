"""Two LeaderSchedulers (runner.worker.beat_leader) against one real redis-server: only the lock's
holder lets its inner scheduler tick; close() hands over at the standby's next try; a leader
that stops renewing is replaced once the lock expires, and steps down when it comes back;
a leader that cannot reach Redis stops before its lock could pass to another."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from celery import Celery
from celery.beat import Scheduler

from runner.config.settings import VARIABLES
from runner.worker.beat_leader import CLIENT_NAME, LeaderScheduler, lock_key
from tests.support.processes import wait_for
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

LOCK_SECONDS = 6
TRY_EVERY = LOCK_SECONDS / 3
# Ticks, Redis round trips and a busy 2-core machine, on top of the promised bounds.
MARGIN_SECONDS = 2.0
WAIT_COMMANDS = ("cmdstat_set", "cmdstat_pttl", "cmdstat_blpop")


class RecordingScheduler(Scheduler):
    """An inner scheduler that sends nothing and counts its ticks; ``built`` lists every one
    built, in order (each test starts it afresh)."""

    built: ClassVar[list[RecordingScheduler]] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ticks = 0
        self.closed = False
        RecordingScheduler.built.append(self)

    def tick(self, *args, **kwargs) -> float:
        self.ticks += 1
        return 300.0  # far longer than the lock: the leader must cap its sleep

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def lock_env(monkeypatch: pytest.MonkeyPatch, redis_plain: RedisServer) -> RedisServer:
    """This process's environment as the runner gives beat: REDIS_URL and a 6 s lock."""
    for variable in VARIABLES:
        monkeypatch.delenv(variable.name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_plain.url())
    monkeypatch.setenv("BEAT_LEADER_LOCK_SECONDS", str(LOCK_SECONDS))
    monkeypatch.setattr(RecordingScheduler, "built", [])
    return redis_plain


def make_app(name: str = "leader-test") -> Celery:
    app = Celery(name, set_as_current=False)
    app.conf.beat_scheduler = RecordingScheduler
    return app


@pytest.fixture
def schedulers(tmp_path: Path) -> Iterator[list[LeaderScheduler]]:
    """A factory's output list: every LeaderScheduler made is closed at the end."""
    made: list[LeaderScheduler] = []
    yield made
    for scheduler in made:
        scheduler.close()


def leader(made: list[LeaderScheduler], app: Celery, tmp_path: Path) -> LeaderScheduler:
    scheduler = LeaderScheduler(app, schedule_filename=str(tmp_path / "schedule"))
    made.append(scheduler)
    return scheduler


def tick_until_leading(scheduler: LeaderScheduler, timeout: float) -> float:
    """Tick ``scheduler`` (as beat would, only more often) until it leads; seconds it took."""
    started = time.monotonic()
    wait_for(lambda: (scheduler.tick(), scheduler.leading)[1], timeout, message="never led")
    return time.monotonic() - started


def test_only_the_lock_holder_ticks_its_scheduler(lock_env, schedulers, tmp_path, caplog):
    """One leads and ticks its inner scheduler; the other sends nothing and says once that
    it waits; both sleep no longer than a third of the lock's expiry."""
    caplog.set_level(logging.INFO, logger="runner.worker.beat_leader")
    app = make_app()
    first, second = leader(schedulers, app, tmp_path), leader(schedulers, app, tmp_path)
    sleeps = []
    for _ in range(4):
        sleeps += [first.tick(), second.tick()]
    assert first.leading and not second.leading
    (inner,) = RecordingScheduler.built
    assert inner.ticks == 4
    # Saved after every send, so that the next leader never sends the same run again.
    assert inner.sync_every_tasks == 1
    assert max(sleeps) <= TRY_EVERY
    ttl = lock_env.client().pttl(lock_key(app))
    assert 0 < ttl <= LOCK_SECONDS * 1000
    lines = [record.getMessage() for record in caplog.records]
    assert sum(line.startswith("leader: this instance sends") for line in lines) == 1
    assert sum(line.startswith("standby: another instance sends") for line in lines) == 1


def test_close_hands_over_at_the_next_try(lock_env, schedulers, tmp_path):
    """close() saves the schedule and frees the lock: the standby leads at its next try,
    with a new inner scheduler (which reads the entries the old leader saved)."""
    app = make_app()
    first, second = leader(schedulers, app, tmp_path), leader(schedulers, app, tmp_path)
    first.tick()
    second.tick()
    first.close()
    assert RecordingScheduler.built[0].closed
    assert lock_env.client().exists(lock_key(app)) == 0
    took = tick_until_leading(second, TRY_EVERY + MARGIN_SECONDS)
    assert took <= TRY_EVERY + MARGIN_SECONDS
    assert len(RecordingScheduler.built) == 2 and RecordingScheduler.built[1].ticks >= 1
    first.close()  # a second close (celery beat's SIGTERM handler, then its exit) is harmless
    assert second.leading


def test_a_leader_that_stops_renewing_is_replaced_once_the_lock_expires(
    lock_env, schedulers, tmp_path
):
    """A leader that stops ticking (killed, frozen) keeps the lock until it expires, then the
    standby leads; the old leader, ticking again, steps down without ticking its scheduler."""
    app = make_app()
    first, second = leader(schedulers, app, tmp_path), leader(schedulers, app, tmp_path)
    started = time.monotonic()
    first.tick()
    second.tick()
    tick_until_leading(second, LOCK_SECONDS + MARGIN_SECONDS)
    took = time.monotonic() - started
    # The standby's wait ends when the lock expires, not at a later try.
    assert LOCK_SECONDS - 0.05 <= took <= LOCK_SECONDS + MARGIN_SECONDS
    old = RecordingScheduler.built[0]
    first.tick()
    assert not first.leading and second.leading
    assert (old.ticks, old.closed) == (1, True)


def test_a_waiting_standby_leads_as_soon_as_the_leader_lets_go(lock_env, schedulers, tmp_path):
    """The standby waits in a BLPOP on the lock's released list, inside its tick; the leader's
    close() pushes onto it: the standby leads within a fraction of a second, not at its next
    try, and a standby's wait costs Redis three commands a try (SET NX, PTTL, BLPOP)."""
    app = make_app()
    first, second = leader(schedulers, app, tmp_path), leader(schedulers, app, tmp_path)
    first.tick()
    counter = lock_env.client()
    counter.config_resetstat()
    second.tick()  # one try, then a whole wait: nobody lets go
    stats = {name: entry["calls"] for name, entry in counter.info("commandstats").items()}
    assert {k: v for k, v in stats.items() if k in WAIT_COMMANDS} == dict.fromkeys(WAIT_COMMANDS, 1)
    assert not second.leading
    led_after: list[float] = []

    def standby() -> None:
        while not second.leading:
            second.tick()
        led_after.append(time.monotonic())

    waiting = threading.Thread(target=standby, daemon=True)
    waiting.start()
    time.sleep(TRY_EVERY / 2)  # the standby is inside its wait by now (a scenario, not a sync)
    released = time.monotonic()
    first.close()
    waiting.join(TRY_EVERY + MARGIN_SECONDS)
    assert led_after, "the standby never led"
    assert led_after[0] - released < 0.5, led_after[0] - released
    counter.close()


def test_a_standby_stops_waiting_when_woken(lock_env, schedulers, tmp_path):
    """wake() (beat stopping, from another thread) ends the standby's wait at once."""
    app = make_app()
    first, second = leader(schedulers, app, tmp_path), leader(schedulers, app, tmp_path)
    first.tick()
    second.tick()
    done: list[float] = []
    waiting = threading.Thread(target=lambda: (second.tick(), done.append(time.monotonic())))
    waiting.start()
    time.sleep(TRY_EVERY / 2)  # the standby is inside its wait by now (a scenario, not a sync)
    woken = time.monotonic()
    second.wake()
    waiting.join(TRY_EVERY + MARGIN_SECONDS)
    assert done and done[0] - woken < 0.5
    assert not second.leading


def test_a_leader_without_redis_stops_before_its_lock_could_pass(lock_env, schedulers, tmp_path):
    """Redis gone: the leader keeps sending while its lock surely lasts, and stops before
    the last third of it, when another instance could take it over."""
    first = leader(schedulers, make_app(), tmp_path)
    started = time.monotonic()
    first.tick()
    lock_env.stop()
    wait_for(lambda: (first.tick(), not first.leading)[1], LOCK_SECONDS, message="still leads")
    stopped_after = time.monotonic() - started
    assert TRY_EVERY <= stopped_after <= LOCK_SECONDS - TRY_EVERY + 0.5
    assert RecordingScheduler.built[0].closed


def test_two_apps_on_one_redis_each_have_their_leader(lock_env, schedulers, tmp_path):
    """The lock's key carries the app's name: another project on the same Redis has its own."""
    one = leader(schedulers, make_app("one"), tmp_path)
    other = leader(schedulers, make_app("other"), tmp_path)
    one.tick()
    other.tick()
    assert one.leading and other.leading
    assert lock_key(make_app("one")) == "runner:beat-leader:one"


def test_the_lock_holds_one_named_connection_and_the_banner_none(lock_env, schedulers, tmp_path):
    """Beat's banner builds a lazy scheduler: no connection. A working one holds exactly one
    connection, named for CLIENT LIST, whatever its role."""
    app = make_app()
    probe = lock_env.client()

    def ours() -> int:
        return sum(c.get("name") == CLIENT_NAME for c in probe.client_list())

    banner = LeaderScheduler(app, lazy=True)
    assert "runner:beat-leader:leader-test" in banner.info and ours() == 0
    first, second = leader(schedulers, app, tmp_path), leader(schedulers, app, tmp_path)
    for _ in range(3):
        first.tick()
        second.tick()
    assert ours() == 2


def test_a_renewal_is_one_command_and_a_lock_taken_over_is_noticed(lock_env, schedulers, tmp_path):
    """The leader pushes its lock's expiry back with one GETEX; finding another holder's
    token there, it steps down at that renewal."""
    app = make_app()
    first = leader(schedulers, app, tmp_path)
    tick_until_leading(first, MARGIN_SECONDS)
    counter = lock_env.client()
    counter.pexpire(lock_key(app), 1000)  # nearly expired: the renewal must restore it
    counter.config_resetstat()
    first._renew_at = 0.0  # due now
    first.tick()
    stats = {name: entry["calls"] for name, entry in counter.info("commandstats").items()}
    assert stats.get("cmdstat_getex") == 1
    assert set(stats) <= {"cmdstat_getex", "cmdstat_config|resetstat", "cmdstat_info"}
    assert counter.pttl(lock_key(app)) > (LOCK_SECONDS - 1) * 1000
    assert first.leading

    counter.set(lock_key(app), "another-instance", px=LOCK_SECONDS * 1000)
    first._renew_at = 0.0
    first.tick()
    assert not first.leading
    assert counter.get(lock_key(app)) == b"another-instance"
    counter.close()
