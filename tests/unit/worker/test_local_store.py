"""The local broker and result files (runner.worker.local_store): written whole or not at all, and a
full disk is an error that says so. The disk is simulated: ``open`` creates the file, as a
full disk does, then fails with ENOSPC (tests/e2e/test_disk_faults.py fills a real one)."""

from __future__ import annotations

import builtins
import errno
import json
import os
import tempfile
from pathlib import Path
from queue import Empty

import pytest
from celery import Celery
from celery.exceptions import ImproperlyConfigured
from kombu import Connection
from kombu.exceptions import OperationalError

from runner.config.disk import FIX_SPACE
from runner.worker import local_store
from runner.worker.local_store import QueueWriteError, ResultFiles, ResultWriteError, install


def failing_open(code: int):
    """An ``open`` that leaves the (empty) file behind, then fails like a full disk."""

    def fake_open(path, mode="r", *args, **kwargs):
        builtins.open(path, mode, *args, **kwargs).close()
        raise OSError(code, errno.errorcode[code])

    return fake_open


@pytest.fixture
def channel(tmp_path: Path):
    install()
    options = {
        "data_folder_in": str(tmp_path / "queue"),
        "data_folder_out": str(tmp_path / "queue"),
        "control_folder": str(tmp_path / "control"),
        "processed_folder": str(tmp_path / "staging"),
    }
    for folder in ("queue", "control", "staging"):
        (tmp_path / folder).mkdir()
    with Connection("filesystem://", transport_options=options) as connection:
        yield connection.default_channel


def test_filesystem_urls_use_the_runners_classes(tmp_path: Path, channel):
    """After install(), the usual URLs give these classes: nothing else changes for Celery."""
    assert isinstance(channel, local_store.Channel)
    app = Celery(set_as_current=False, backend=f"file://{tmp_path}")
    assert isinstance(app.backend, ResultFiles)


def without_staging(payload: dict) -> dict:
    """A taken message's payload without the property that names its staged file."""
    properties = payload.get("properties", {})
    properties.pop(local_store.STAGED_PROPERTY)
    if not properties:
        payload.pop("properties")
    return payload


def test_a_queued_message_reads_back(channel):
    """The message is where kombu's own reader looks for it, whole."""
    channel._put("celery", {"body": "hello"})
    assert without_staging(channel._get("celery")) == {"body": "hello"}


def test_messages_are_taken_in_order_through_the_staging_folder_never_tmp(
    tmp_path: Path, channel, monkeypatch
):
    """Each message once; nothing passes through the system's temporary directory
    (kombu's own transport moves each message there)."""
    elsewhere = tmp_path / "system-tmp"
    elsewhere.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
    moved_to: list[str] = []
    real_rename = os.rename
    monkeypatch.setattr(
        os, "rename", lambda a, b: (moved_to.append(os.path.dirname(b)), real_rename(a, b))[1]
    )
    for n in range(3):
        channel._put("celery", {"n": n})
    channel._put("other", {"n": "other"})
    # Each once (the order is by millisecond of sending, as kombu names them; these share one).
    assert sorted(channel._get("celery")["n"] for _ in range(3)) == [0, 1, 2]
    with pytest.raises(Empty):
        channel._get("celery")
    assert set(moved_to) == {str(tmp_path / "staging")}
    assert list(elsewhere.iterdir()) == []
    assert len(list((tmp_path / "staging").iterdir())) == 3  # taken, not yet settled
    assert len(list((tmp_path / "queue").iterdir())) == 1  # the other queue's message stays


def test_a_message_another_worker_took_first_is_skipped(tmp_path: Path, channel, monkeypatch):
    """Listed, then taken by another worker before this one's rename: the next is taken."""
    channel._put("celery", {"n": 0})
    channel._put("celery", {"n": 1})
    listing = os.listdir(tmp_path / "queue")
    first = tmp_path / "queue" / sorted(listing)[0]  # the one _get tries first
    first.rename(tmp_path / "taken-by-another")  # another worker's rename, after the listing
    monkeypatch.setattr(local_store.os, "listdir", lambda _folder: list(listing))
    left = json.loads((tmp_path / "taken-by-another").read_text())["n"]
    assert without_staging(channel._get("celery")) == {"n": 1 - left}


def consume_one(channel) -> list:
    """Take one message of queue "celery" through kombu's channel, unacknowledged."""
    message = channel.basic_get("celery", no_ack=False)
    return [message] if message is not None else []


def publish(channel, body: str) -> None:
    """Queue ``body`` on "celery" as kombu's basic_publish does once it has routed it (the
    routing tables are kombu's shared state across connections: not this test's)."""
    message = channel.prepare_message(body)
    message["properties"]["delivery_info"] = {"exchange": "", "routing_key": "celery"}
    message["properties"]["delivery_tag"] = channel._next_delivery_tag()
    channel._put("celery", message)


@pytest.fixture
def declared(channel):
    channel.queue_declare("celery")
    return channel


@pytest.mark.parametrize("settle", ["ack", "reject", "requeue", "restore"])
def test_a_taken_message_stays_staged_until_it_is_settled(tmp_path: Path, declared, settle):
    """Acknowledged, rejected, given back or put back at close: the staged file goes, and a
    message put back is in the queue once."""
    publish(declared, "hi")
    (got,) = consume_one(declared)
    staging = tmp_path / "staging"
    assert len(list(staging.iterdir())) == 1
    if settle == "ack":
        declared.basic_ack(got.delivery_tag)
    elif settle in ("reject", "requeue"):
        declared.basic_reject(got.delivery_tag, requeue=settle == "requeue")
    else:
        declared.qos.restore_unacked()
    assert list(staging.iterdir()) == []
    queued = list((tmp_path / "queue").iterdir())
    assert len(queued) == (1 if settle in ("requeue", "restore") else 0)
    if queued:
        assert local_store.STAGED_PROPERTY not in json.loads(queued[0].read_text())["properties"]


def test_what_a_killed_worker_had_taken_goes_back_to_the_queue(tmp_path: Path, declared):
    """A worker dies holding a message (nothing settles it): the next worker to start puts it
    back, and it is consumed again."""
    publish(declared, "work")
    assert len(consume_one(declared)) == 1  # taken, and the worker dies here
    (tmp_path / "staging" / ".half-written.msg.tmp").write_text("")  # not a message: stays
    assert local_store.restore_taken(str(tmp_path / "queue"), str(tmp_path / "staging")) == 1
    assert [p.name for p in (tmp_path / "staging").iterdir()] == [".half-written.msg.tmp"]
    (again,) = consume_one(declared)
    assert again.body in (b"work", "work")


def test_a_message_on_a_full_disk_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, channel, monkeypatch
):
    monkeypatch.setattr(local_store, "open", failing_open(errno.ENOSPC), raising=False)
    with pytest.raises(QueueWriteError) as raised:
        channel._put("celery", {"body": "hello"})
    queue = tmp_path / "queue"
    assert str(raised.value) == f"no space left on {queue}: the message was not queued; {FIX_SPACE}"
    assert raised.value.errno == errno.ENOSPC
    assert isinstance(raised.value, OperationalError)  # what catches broker outages catches it
    assert list(queue.iterdir()) == []


def test_results_are_stored_whole_or_not_at_all(tmp_path: Path, monkeypatch):
    backend = ResultFiles(app=Celery(set_as_current=False), url=f"file://{tmp_path}")
    backend.set(b"celery-task-meta-1", b"done")
    assert backend.get(b"celery-task-meta-1") == b"done"

    monkeypatch.setattr(local_store, "open", failing_open(errno.ENOSPC), raising=False)
    with pytest.raises(ResultWriteError) as raised:
        backend.set(b"celery-task-meta-2", b"done")
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.strerror == (
        f"no space left on {tmp_path}: the result was not stored; {FIX_SPACE}"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["celery-task-meta-1"]


def test_a_full_disk_does_not_stop_the_backend_from_starting(tmp_path: Path, monkeypatch):
    """Full is a passing state: a worker restarted meanwhile must start. A folder that cannot
    be written for another reason is still refused, as Celery does."""
    monkeypatch.setattr(local_store, "open", failing_open(errno.ENOSPC), raising=False)
    ResultFiles(app=Celery(set_as_current=False), url=f"file://{tmp_path}")
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(local_store, "open", failing_open(errno.EACCES), raising=False)
    with pytest.raises(ImproperlyConfigured):
        ResultFiles(app=Celery(set_as_current=False), url=f"file://{tmp_path}")
