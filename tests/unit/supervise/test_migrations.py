"""migrate's output as the runner reads it in process (runner.supervise.migrations)."""

from runner.supervise.migrations import MigrateOutput


def test_lines_end_at_newlines_not_at_flushes():
    """Django writes "Applying x..." and flushes, then " OK": one line, counted once."""
    relayed: list[str] = []
    output = MigrateOutput(relayed.append)
    output.write("Running migrations:\n  Applying app.0001_initial...")
    output.flush()
    output.write(" OK\n  Applying app.0002_more...")
    output.flush()
    output.write(" OK\n")
    output.write("no newline at the end")
    output.finish()
    assert relayed == [
        "Running migrations:\n",
        "  Applying app.0001_initial... OK\n",
        "  Applying app.0002_more... OK\n",
        "no newline at the end\n",
    ]
    assert output.applied == 2 and list(output.tail) == relayed


def test_the_tail_keeps_the_last_lines_only():
    output = MigrateOutput()
    for number in range(100):
        output.write(f"line {number}\n")
    assert len(output.tail) == 40 and output.tail[-1] == "line 99\n"
