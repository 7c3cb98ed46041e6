"""What a user sees at a terminal: ``dasktune.optimize`` in a plain script, run with a
pseudo-terminal as its stdout and stderr, as a user runs it (issue 28, item 4)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time

import pytest

#: Printed by the script as its last line: nothing but blank space may follow it.
END = "the script ends here"

#: A new user's script: no ``with`` blocks, so the cluster closes at interpreter exit.
SCRIPT = textwrap.dedent(
    f"""
    import sys
    import traceback

    from distributed import Client, LocalCluster
    import optuna

    import dasktune


    def quadratic(trial):
        x = trial.suggest_float("x", -10, 10)
        return (x - 2) ** 2


    def broken(trial):
        trial.suggest_float("x", 0, 1)
        raise ValueError("the objective broke")


    if __name__ == "__main__":
        cluster = LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0")
        client = Client(cluster)
        storage = dasktune.DaskStorage(sys.argv[1] if len(sys.argv) > 1 else None)
        study = optuna.create_study(storage=storage)
        dasktune.optimize(study, quadratic, n_trials=30, show_progress_bar=True)
        try:
            dasktune.optimize(study, broken, n_trials=10, show_progress_bar=True)
        except ValueError:
            traceback.print_exc()
        print({END!r})
    """
)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_at_a_terminal(args: list[str], timeout: float = 180) -> str:
    """Everything ``python *args`` writes to its terminal (stdout and stderr, as a
    terminal shows them interleaved), read until it exits."""
    master, slave = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, and tqdm draws nothing in 0 columns.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    process = subprocess.Popen(
        [sys.executable, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                break
            if not data:
                break
            output += data
        else:
            raise AssertionError(f"the script did not end in {timeout}s:\n{output.decode(errors='replace')}")
        assert process.wait(timeout=30) == 0, output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return output.decode(errors="replace")


def screen_lines(output: str) -> list[str]:
    """The lines as the terminal leaves them: a carriage return starts its line again (a
    progress bar redraws itself so, and clears itself with blanks before a log line)."""
    return [_ANSI.sub("", line.rstrip("\r")).rsplit("\r", 1)[-1] for line in output.split("\n")]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_script_at_a_terminal_shows_bar_logs_and_one_traceback_and_nothing_at_exit(
    tmp_path: Path, backend: str
) -> None:
    script = tmp_path / "tune.py"
    script.write_text(SCRIPT)
    url = [f"sqlite:///{tmp_path / 'optuna.db'}"] if backend == "sqlite" else []
    output = run_at_a_terminal([str(script), *url])
    shown = output.replace("\r", "")

    # One traceback, at the caller, with the objective's error and where it was raised;
    # none logged by a worker for the task that ran it.
    assert shown.count("Traceback (most recent call last)") == 1, shown
    assert "Compute Failed" not in shown, shown
    traceback = shown[shown.index("Traceback (most recent call last)"):]
    assert "ValueError: the objective broke" in traceback and ", in broken" in traceback, shown
    # Nothing after the script's last line: the cluster closed at exit without a word.
    assert shown.count(END) == 1 and not shown.split(END)[1].strip(), shown

    # Optuna's log lines above the bar, each on a line of its own (the bar clears itself
    # for them, then is drawn again below), and the bar's final state after the last one.
    lines = screen_lines(output)
    trial_lines = [i for i, line in enumerate(lines) if re.search(r"\] Trial \d+ (finished|failed)", line)]
    assert len([i for i in trial_lines if "finished" in lines[i]]) == 30, shown
    for i in trial_lines:
        assert re.match(r"\[[IW] \d{4}-", lines[i]), f"a log line drawn on the bar: {lines[i]!r}"
    finished = [i for i in trial_lines if "finished" in lines[i]]
    final = [i for i, line in enumerate(lines) if "100%" in line and "30/30" in line]
    assert final and final[-1] > finished[-1], shown
