"""Where a trial's time goes: py-spy samples of the worker, scheduler and driver processes
while ``dasktune.optimize`` runs N trials, folded into a few categories per process.

Run: ``python -m benchmarks.profile [--sampler Random|TPE] [--trials N] [--out DIR]`` (needs
``py-spy``, and permission to attach to child processes, as root or with ptrace allowed).
A ``dask scheduler`` and 2 single-thread ``dask worker`` processes (as in
:mod:`benchmarks.common`); the driver is this process. Each process is sampled at 200 Hz for
the whole run; a sample counts toward the first category (in the order of
:data:`CATEGORIES`) whose function is on its stack, else "other", and idle samples (a
thread waiting on a lock, a socket or a sleep) are left out. The table gives CPU
milliseconds per trial: samples x 5 ms / trials, per process and category. A thread that is
ready to run but waits for a core counts as running: on a machine with fewer cores than
busy processes, every figure includes that wait.

What it does not tell: time a thread spends waiting (e.g. a runner for its claim) is not
CPU, so it is not here; the trial rate is in the overhead figures.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections import Counter
from pathlib import Path
import os
import shutil
import subprocess
import sys
import tempfile
import time

import optuna

from benchmarks.cheap import Busy
from benchmarks.common import make_sampler
from benchmarks.common import objective
from benchmarks.common import ProcessCluster
from benchmarks.common import quiet

RATE = 200  # samples per second
#: (category, function names any of which on the stack puts a sample there), first match wins.
CATEGORIES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "worker": [
        ("replica: apply deltas", ("Replica.apply",)),
        ("claim: ask the scheduler", ("Claims._refill", "Claims._ask", "DaskStorage.claim_trials")),
        ("tell", ("tell", "_tell_with_warning", "fail_trial")),
        ("storage writes (params)", ("DaskStorage.set_trial_param", "DaskStorage._trial_write")),
        ("sampling", ("sample_independent", "sample_relative", "before_trial", "infer_relative_search_space",
                      "Trial.__init__", "new_trial")),
        ("objective (incl. Optuna's suggest)", ("objective", "Busy.__call__", "Trial._suggest")),
        ("flusher", ("Flusher._loop",)),
        ("comms (Dask)", ("TCP.write", "TCP.read", "BaseIOStream", "send_recv", "loads", "dumps")),
    ],
    "scheduler": [
        ("refresh mirror (re-read, encode, pack)", ("Store.refresh",)),
        ("apply operations (backend)", ("StorageHost.execute",)),
        ("deltas (replies)", ("Store.deltas", "StoragePlugin._reply")),
        ("watch", ("StoragePlugin.watch",)),
        ("comms (Dask)", ("TCP.write", "TCP.read", "BaseIOStream", "send_recv", "loads", "dumps",
                          "Server._handle_comm")),
        ("Dask scheduling", ("Scheduler.",)),
    ],
    "driver": [
        ("replica: apply deltas", ("Replica.apply",)),
        ("watch", ("DaskStorage.watch_run", "SchedulerProtocol._watch")),
        ("report trials (log, callbacks)", ("_log", "ProgressBar", "DaskStorage.get_trial")),
        ("comms (Dask)", ("TCP.write", "TCP.read", "BaseIOStream", "send_recv", "loads", "dumps")),
    ],
}
_IDLE = ("Condition.wait", "Event.wait", "EpollSelector.select", "sleep", "Thread.join", "_worker thread.py")


def _category(stack: list[str], kind: str) -> str | None:
    top = stack[-1]
    if any(idle in top for idle in _IDLE):
        return None
    for name, functions in CATEGORIES[kind]:
        if any(f in frame for frame in stack for f in functions):
            return name
    return "other"


def fold(raw: Path, kind: str) -> Counter[str]:
    """Samples per category from a py-spy ``--format raw`` file."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        category = _category(stack.split(";"), kind)
        if category is not None:
            counts[category] += int(n)
    return counts


def run(sampler: str, n_trials: int, busy: bool = False) -> dict[str, Counter[str]]:
    """Samples per process and category; ``busy``: the ~10 ms objective of
    :mod:`benchmarks.cheap` instead of the trivial one."""
    quiet()
    function = Busy.calibrated() if busy else objective
    out = Path(tempfile.mkdtemp(prefix="dasktune-profile-"))
    cluster = ProcessCluster(2, 1)
    try:
        import dasktune

        study = optuna.create_study(storage=dasktune.DaskStorage(client=cluster.client),
                                    sampler=make_sampler(sampler))
        dasktune.optimize(study, function, n_trials=50, client=cluster.client)  # warm
        targets = {"scheduler": cluster.scheduler.pid, "worker": cluster.workers[0].pid}
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        spies = {
            kind: subprocess.Popen([py_spy, "record", "-p", str(pid), "-r", str(RATE), "-f", "raw",
                                    "-o", str(out / f"{kind}.txt"), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for kind, pid in {**targets, "driver": os.getpid()}.items()
        }
        time.sleep(1.0)  # py-spy attaches
        dasktune.optimize(study, function, n_trials=n_trials, client=cluster.client)
        for spy in spies.values():
            spy.send_signal(2)  # SIGINT: py-spy writes what it has
        for spy in spies.values():
            spy.wait(30)
        return {kind: fold(out / f"{kind}.txt", kind) for kind in spies}
    finally:
        cluster.close()
        if not os.environ.get("DASKTUNE_PROFILE_KEEP"):
            shutil.rmtree(out, ignore_errors=True)
        else:
            print(f"raw samples kept in {out}")


def table(samples: dict[str, Counter[str]], n_trials: int, title: str) -> str:
    """Markdown: CPU ms per trial by process and category (the worker row is one of two)."""
    ms = 1000.0 / RATE / n_trials
    lines = [f"### {title}", "", "| process | category | CPU ms / trial |", "|---|---|---:|"]
    for kind, counts in samples.items():
        share = 2 if kind == "worker" else 1  # one worker sampled, two share the trials
        for name, n in counts.most_common():
            lines.append(f"| {kind} | {name} | {n * ms * share:.3f} |")
        lines.append(f"| {kind} | **all** | **{sum(counts.values()) * ms * share:.3f}** |")
    return "\n".join(lines)


def tables(log: Callable[[str], None]) -> str:
    """The tables of the benchmark report: Random and TPE at N = 1000 (trivial objective)
    and TPE at N = 300 with the ~10 ms objective; a note instead if py-spy is missing."""
    if shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists():
        return "(not measured: py-spy is not installed; `pip install -e \".[bench]\"` installs it)"
    parts = []
    for sampler, n, busy in (("Random", 1000, False), ("TPE", 1000, False), ("TPE", 300, True)):
        log(f"profile: {sampler}, N={n}" + (", ~10 ms objective" if busy else ""))
        title = f"{sampler}, N = {n}" + (", ~10 ms objective" if busy else ", trivial objective")
        parts.append(table(run(sampler, n, busy), n, title))
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", default="Random", choices=["Random", "TPE"])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--busy", action="store_true", help="the ~10 ms objective, not the trivial one")
    parser.add_argument("--out", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args()
    title = f"{args.sampler}, N = {args.trials}" + (", ~10 ms objective" if args.busy else "")
    text = table(run(args.sampler, args.trials, args.busy), args.trials, title)
    print(text)
    if args.out is not None:
        with args.out.open("a") as f:
            f.write(text + "\n\n")


if __name__ == "__main__":
    main()
