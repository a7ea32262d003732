"""The local default's broker and result files, written so that a full disk is a clear error.

kombu's filesystem transport and Celery's file result backend write each file in place. On
a full or read-only disk the file is created, the write fails, and the empty file stays.
Measured with a full disk under a running service: the sender got "Cannot add file ... to
directory"; the empty message left in the queue stopped the worker's consumer (kombu
cannot decode it); the restarted worker could not even start, because Celery's file backend
writes a test file whenever it is created ("The configured path for the file-system backend
does not work correctly, please make sure that it exists and has the correct
permissions"); supervisord gave up on it and the runner stopped the whole service, web
included.

Here both write every file under a hidden temporary name in its folder and rename it into
place (atomic: a reader sees the whole file or nothing), remove the temporary file when the
write fails, and raise an error that names the folder and the fix. The backend's start-up
test lets a full disk pass, so a worker restarted while the disk is full starts and waits:
the runner checked the folder at start (``runner.supervise.launch``), and storing a result says so
when the disk is full.

A worker takes a message by renaming it into the staging folder beside the queue (kombu
moves it through ``/tmp``), so that taking it is atomic and private too. The file stays there
until the message is acknowledged, rejected or given back: kombu keeps a message it has
taken only in the worker's memory, so a worker killed (SIGKILL, the OOM killer, a platform's
stop that came too soon) lost the task it was running, its state STARTED for ever. Here the
next worker to start moves every staged file back into the queue (``restore_taken``), as
Redis's visibility timeout brings back what a dead worker had taken: at least once, never
lost. One worker consumes a data directory at a time (the runner's lock), so a staged file
at a worker's start belongs to no live worker.

``install()`` makes ``filesystem://`` and ``file://`` mean these classes in this process.
``runner.web.django_settings`` calls it when it chooses the local default, so every process that
loads
the project's settings uses them; the URLs stay the same.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from queue import Empty
from time import monotonic

from celery.backends.filesystem import FilesystemBackend
from celery.exceptions import ImproperlyConfigured
from kombu.exceptions import ChannelError, OperationalError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, ensure_bytes, str_to_bytes
from kombu.utils.json import dumps, loads

from runner.config.disk import NO_SPACE, write_failed

TRANSPORT_PATH = "runner.worker.local_store:Transport"
BACKEND_PATH = "runner.worker.local_store:ResultFiles"


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all; OSError when it cannot be written."""
    folder, name = os.path.split(path)
    # A leading dot: kombu's queue listing and Celery's result clean-up skip the name.
    temporary = os.path.join(folder, f".{name}.tmp")
    try:
        with open(temporary, "wb") as out:  # buffered: a short write raises, never truncates
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def explain(folder: str, error: OSError, consequence: str) -> str:
    return write_failed(folder, error, consequence) or (
        f"cannot write to {folder} ({error.strerror}): {consequence}"
    )


class QueueWriteError(OperationalError):
    """A message could not be written to the local broker's folder (disk full, read-only).

    kombu's OperationalError, as the transport's own failure was: code that catches broker
    outages around ``delay()`` catches this too. kombu does not retry it.
    """

    def __init__(self, message: str, errno: int | None) -> None:
        super().__init__(message)
        self.errno = errno


class ResultWriteError(OSError):
    """A result could not be stored in the local results folder (disk full, read-only)."""


# The message property that names a taken message's file in the staging folder.
STAGED_PROPERTY = "runner_staged"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put ``payload`` onto ``queue``: the same file name as kombu's, written atomically."""
        payload.get("properties", {}).pop(STAGED_PROPERTY, None)  # a message put back
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        try:
            write_atomically(os.path.join(self.data_folder_out, name), str_to_bytes(dumps(payload)))
        except OSError as error:
            message = explain(self.data_folder_out, error, "the message was not queued")
            raise QueueWriteError(message, error.errno) from error

    def _get(self, queue):
        """Take the oldest message of ``queue``: kombu's order and file names, but moved by
        one ``rename`` into the staging folder beside the queue, read, and kept there until
        the message is settled (``_settle``).

        kombu moves it into ``tempfile.gettempdir()``: world-writable ``/tmp``, where another
        user could read task arguments or squat a message's name, and, when the data
        directory is on another filesystem, a copy that is not atomic (tasks were lost and
        workers crashed on half-written JSON). A rename either takes the whole file or, when
        another worker took it first, fails and the next file is tried.
        """
        staging = self.processed_folder
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != f"{queue}.msg":  # kombu's own test
                continue
            taken = os.path.join(staging, filename)
            try:
                os.rename(os.path.join(self.data_folder_in, filename), taken)
            except OSError:  # another worker took it meanwhile
                continue
            try:
                with open(taken, "rb") as message:
                    payload = loads(bytes_to_str(message.read()))
            except (OSError, ValueError) as error:
                with contextlib.suppress(OSError):
                    os.unlink(taken)
                raise ChannelError(f"Cannot read file {taken!r} from queue.") from error
            payload.setdefault("properties", {})[STAGED_PROPERTY] = filename
            return payload
        raise Empty()

    def _staged(self, message) -> str | None:
        """The staged file of a taken ``message`` (read before it is put back: putting it
        back drops the property)."""
        filename = (getattr(message, "properties", None) or {}).get(STAGED_PROPERTY)
        return os.path.join(self.processed_folder, filename) if filename else None

    def _settled(self, staged: str | None) -> None:
        """The message is acknowledged, rejected or back in the queue: its staged file goes."""
        if staged:
            with contextlib.suppress(OSError):
                os.unlink(staged)

    def basic_ack(self, delivery_tag, multiple=False):
        staged = self._staged(self.qos._delivered.get(delivery_tag))
        try:
            return super().basic_ack(delivery_tag, multiple=multiple)
        finally:
            self._settled(staged)

    def basic_reject(self, delivery_tag, requeue=False):
        staged = self._staged(self.qos._delivered.get(delivery_tag))
        super().basic_reject(delivery_tag, requeue=requeue)  # a failed requeue keeps the file
        self._settled(staged)

    def _restore(self, message):
        """Put an unacknowledged message back (kombu, as the channel closes)."""
        staged = self._staged(message)
        super()._restore(message)
        self._settled(staged)


class Transport(filesystem.Transport):
    Channel = Channel


class ResultFiles(FilesystemBackend):
    def set(self, key, value):
        filename = os.fsdecode(self._filename(key))
        try:
            write_atomically(filename, ensure_bytes(value))
        except OSError as error:
            message = explain(os.path.dirname(filename), error, "the result was not stored")
            raise ResultWriteError(error.errno, message) from error

    def _do_directory_test(self, key):
        try:
            super()._do_directory_test(key)
        except ImproperlyConfigured as error:
            cause = error.__context__
            if isinstance(cause, OSError) and cause.errno in NO_SPACE:
                return  # full now, maybe not in a minute: not a wrong path
            raise


def restore_taken(queue_folder: str, staging_folder: str) -> int:
    """Move every message a dead worker had taken back into the queue; how many. Call it in
    a worker as it starts, before it consumes."""
    try:
        names = sorted(os.listdir(staging_folder))
    except FileNotFoundError:
        return 0
    restored = 0
    for name in names:
        if name.startswith(".") or not name.endswith(".msg"):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.rename(os.path.join(staging_folder, name), os.path.join(queue_folder, name))
            restored += 1
    return restored


def restore_taken_for(app) -> int:
    """``restore_taken`` for ``app``'s broker, when it is the local default's."""
    options = app.conf.broker_transport_options or {}
    url = str(app.conf.broker_url or "")
    if not url.startswith("filesystem:") or "processed_folder" not in options:
        return 0
    return restore_taken(options["data_folder_in"], options["processed_folder"])


def install() -> None:
    """Use these classes for ``filesystem://`` and ``file://`` in this process."""
    from celery.app.backends import BACKEND_ALIASES
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES["filesystem"] = TRANSPORT_PATH
    BACKEND_ALIASES["file"] = BACKEND_PATH
