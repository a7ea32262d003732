"""What of Celery's command line the worker and beat load, shared by the supervising
process (which loads it before forking them, in the fork model) and the worker's entry
(``runner.worker.entry``, in either model)."""

from __future__ import annotations

import sys
import types


def without_amqp_shell() -> None:
    """Celery's command line imports every subcommand, and ``celery amqp``'s interactive
    shell imports ``click_repl`` and ``prompt_toolkit`` with it: 0.07 s of CPU and 16 MB of
    RSS here, in every worker and beat, for a shell they never open. A stand-in
    ``click_repl`` whose ``register_repl`` does nothing is put in its place first (only in
    the worker's and beat's processes; ``celery amqp`` run by hand keeps its shell)."""
    if "click_repl" in sys.modules:
        return
    stand_in = types.ModuleType("click_repl", "Not loaded by the runner's worker and beat.")
    stand_in.register_repl = lambda group, name="repl": None
    sys.modules["click_repl"] = stand_in
