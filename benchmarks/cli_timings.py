"""How long the ``dasktune`` command line makes a user wait: ``run() -> [(name, seconds)]``.

Each command runs as a fresh process, as typed in a shell:

- ``--help`` of every command, and a refused argument (``run --n-trials -3``): both answer
  from the parser alone, before Optuna or distributed is imported;
- *start of work* of every cluster command: launch to the first connection attempt,
  measured as the time to be told that nothing listens at an address (a refused connection
  is answered at once; ``--connect-timeout`` 0.05 s bounds it anyway);
- end to end on a live two-worker cluster: ``studies``, ``show``, ``best``, ``cancel``, and
  ``run --detach`` (until it returns);
- 1,000 studies of 3 trials each: ``optuna.get_all_study_summaries`` through a
  ``DaskStorage`` that has read nothing yet (a fresh process's) and through Optuna's
  ``InMemoryStorage`` holding the same studies, in this process, and ``dasktune studies``
  listing them end to end;
- ``export`` of a 300- and a 3,000-trial study to SQLite and to a journal file: the copy
  time the command reports (opening the target, one read from the scheduler, bulk writes),
  its wall time, and ``optuna.copy_study`` of the same study from the same scheduler to the
  same kind of URL, in-process (which opens the target, reads and writes);
- ``studies``, ``show``, ``best``, ``cancel`` and ``export`` end to end against a scheduler
  holding 100 studies of 20 trials (every tenth with two objectives), idle and with two
  busy-loop processes beside them (a laptop doing something else), next to what any command
  pays first in a fresh process: Python's start-up, and importing Optuna and distributed.

Figures are medians of ``repeat`` runs, exports and copies measured once (the 3,000-trial
``copy_study`` to SQLite alone takes minutes). ``python -m benchmarks.cli_timings`` prints them.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
import os
from pathlib import Path
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import optuna

from benchmarks.common import objective
from benchmarks.common import process_cluster
from benchmarks.common import quiet

DASKTUNE = shutil.which("dasktune", path=os.path.dirname(sys.executable)) or "dasktune"
COMMANDS = ["demo", "run", "studies", "show", "best", "export", "cancel", "delete"]
#: An address where nothing listens (port 9, discard, is closed on ordinary machines).
NOWHERE = "tcp://127.0.0.1:9"
_GIVE_UP = 0.05
_OBJECTIVES = """
import time

def objective(trial):
    return trial.suggest_float("x", 0, 1)

def sleepy(trial):
    time.sleep(0.5)
    return trial.suggest_float("x", 0, 1)
"""


def run(sizes: Sequence[int] = (300, 3000), repeat: int = 3) -> list[tuple[str, float]]:
    """The CLI timings, in seconds, as ``(name, seconds)`` pairs in a stable order."""
    quiet()
    results: list[tuple[str, float]] = []
    work = Path(tempfile.mkdtemp(prefix="dasktune-cli-timings-"))
    try:
        (work / "objective.py").write_text(_OBJECTIVES)
        results += [(f"dasktune {c} --help".replace("  ", " "), _median(repeat, c, "--help")) for c in ["", *COMMANDS]]
        results.append(
            ("run --n-trials -3 (refused)", _median(repeat, "run", "x.py:f", "--study", "s",
                                                    "--scheduler", NOWHERE, "--n-trials", "-3", ok=2))
        )
        for command, extra in [
            ("run", [f"{work / 'objective.py'}:objective", "--study", "s"]),
            ("studies", []), ("show", ["s"]), ("best", ["s"]),
            ("export", ["s", "--to", str(work / "never.db")]), ("cancel", ["s"]), ("delete", ["s", "--yes"]),
        ]:
            seconds = _median(repeat, command, *extra, "--scheduler", NOWHERE,
                              "--connect-timeout", str(_GIVE_UP), ok=2)
            results.append((f"{command}: start of work", seconds))
        with process_cluster(n_workers=2) as cluster:
            results += _live(cluster.client, work, sizes, repeat)
        with process_cluster(n_workers=1) as cluster:
            results += _many_studies(cluster.client, repeat)
        with process_cluster(n_workers=1) as cluster:
            results += _held_studies(cluster.client, work, repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _live(client, work: Path, sizes: Sequence[int], repeat: int) -> list[tuple[str, float]]:
    import dasktune

    address = client.scheduler.address
    storage = dasktune.DaskStorage(name="dasktune", client=client)  # the CLI's default storage
    results = []
    for n in sizes:
        study = optuna.create_study(storage=storage, study_name=f"export-{n}")
        dasktune.optimize(study, objective, n_trials=n, client=client)
    name = f"export-{sizes[0]}"
    for command, extra in [("studies", []), ("show", [name]), ("best", [name])]:
        results.append((f"{command} (end to end)", _median(repeat, command, *extra, "--scheduler", address)))
    # The detached runs sleep, so they leave the CPUs to the commands measured after them.
    detach = _median(repeat, "run", f"{work / 'objective.py'}:sleepy", "--study", "detached",
                     "--timeout", "600", "--detach", "--scheduler", address)
    results.append(("run --detach (until it returns)", detach))
    results.append(("cancel (end to end)", _median(1, "cancel", "detached", "--scheduler", address)))
    for n in sizes:
        study = optuna.load_study(study_name=f"export-{n}", storage=storage)
        for kind, suffix in [("SQLite", "db"), ("journal file", "log")]:
            target = work / f"cli-{n}.{suffix}"
            started = time.perf_counter()
            out = _dasktune("export", study.study_name, "--scheduler", address, "--to", str(target))
            wall = time.perf_counter() - started
            copied = float(re.search(r"copied in ([\d.]+) s\.", out).group(1))  # type: ignore[union-attr]
            results.append((f"export {n} trials to {kind}: copy", copied))
            results.append((f"export {n} trials to {kind}: command, end to end", wall))
            to: str | optuna.storages.BaseStorage = (
                f"sqlite:///{work / f'optuna-{n}.db'}" if suffix == "db" else
                optuna.storages.JournalStorage(
                    optuna.storages.journal.JournalFileBackend(str(work / f"optuna-{n}.log")))
            )
            started = time.perf_counter()
            optuna.copy_study(from_study_name=study.study_name, from_storage=storage, to_storage=to)
            results.append((f"optuna.copy_study {n} trials to {kind}", time.perf_counter() - started))
    return results


#: Studies listed by the many-studies figures.
MANY_STUDIES = 1000


def _many_studies(client, repeat: int) -> list[tuple[str, float]]:
    import dasktune

    storage = dasktune.DaskStorage(name="dasktune", client=client)
    peer = optuna.storages.InMemoryStorage()
    for i in range(MANY_STUDIES):
        for into in (storage, peer):
            study = optuna.create_study(storage=into, study_name=f"many-{i}")
            study.optimize(objective, n_trials=3)
    results = []
    for label, make in [
        ("DaskStorage", lambda: dasktune.DaskStorage(name="dasktune", client=client, register=False)),
        ("InMemoryStorage", lambda: peer),
    ]:
        times = []
        for _ in range(repeat):
            reader = make()  # a DaskStorage that has read nothing: a fresh process's replica
            started = time.perf_counter()
            optuna.get_all_study_summaries(reader)
            times.append(time.perf_counter() - started)
        results.append((f"optuna.get_all_study_summaries, {MANY_STUDIES:,} studies: {label}",
                        statistics.median(times)))
    address = client.scheduler.address
    results.append((f"studies, {MANY_STUDIES:,} studies (end to end)", _median(repeat, "studies", "--scheduler", address)))
    return results


#: Studies the scheduler holds while the everyday commands are timed (the issue's floors:
#: each within 0.7 s idle, 1.5 s beside :data:`BUSY_LOOPS` busy loops).
HELD_STUDIES = 100
BUSY_LOOPS = 2
#: Seconds for `studies`, `show`, `best` and `cancel` against those studies, end to end: idle,
#: and beside the busy loops (issue 28).
HELD_IDLE_CEILING, HELD_LOADED_CEILING = 0.7, 1.5
HELD_FLOOR_COMMANDS = ("studies", "show", "best", "cancel")  # `export` is reported, without a floor
#: What every command pays before its own work, each timed in a fresh process.
FLOORS = [
    ("Python start-up (`python -c pass`)", "pass"),
    ("`import optuna, distributed`", "import optuna, distributed"),
    ("`import dasktune.cli.commands` (all a command imports)", "import dasktune.cli.commands"),
]


def _held_studies(client, work: Path, repeat: int) -> list[tuple[str, float]]:
    import dasktune

    storage = dasktune.DaskStorage(name="dasktune", client=client)  # the CLI's default storage
    for i in range(HELD_STUDIES):
        directions = ["minimize", "minimize"] if i % 10 == 0 else ["minimize"]
        study = optuna.create_study(storage=storage, study_name=f"held-{i}", directions=directions)
        study.optimize(lambda t: [objective(t)] * len(directions), n_trials=20)
    address = client.scheduler.address
    exports = iter(range(10**6))
    commands = [
        ("studies", lambda: []), ("show", lambda: ["held-1"]), ("best", lambda: ["held-0"]),
        ("cancel", lambda: ["held-1"]), ("export", lambda: ["held-1", "--to", str(work / f"held-{next(exports)}.db")]),
    ]
    results = []
    for label, loops in [("idle", 0), (f"{BUSY_LOOPS} busy loops beside it", BUSY_LOOPS)]:
        with _busy(loops):
            for what, code in FLOORS:
                results.append((f"{what}: {label}", _python(repeat, code)))
            for command, extra in commands:
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    _dasktune(command, *extra(), "--scheduler", address)
                    times.append(time.perf_counter() - started)
                results.append((f"{command}, {HELD_STUDIES} studies held: {label}", statistics.median(times)))
    return results


@contextlib.contextmanager
def _busy(n: int) -> Iterator[None]:
    """``n`` processes spinning a CPU each, for as long as the block lasts."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def _python(repeat: int, code: str) -> float:
    """Median wall time of ``python -c code`` in a fresh process."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _dasktune(*args: str, ok: int = 0) -> str:
    done = subprocess.run([DASKTUNE, *args], capture_output=True, text=True, timeout=1200,
                          stdin=subprocess.DEVNULL)
    if done.returncode != ok:
        raise RuntimeError(f"dasktune {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def _median(repeat: int, *args: str, ok: int = 0) -> float:
    """Median wall time of ``dasktune *args`` (empty arguments dropped) over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        _dasktune(*[a for a in args if a], ok=ok)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def held_report(repeat: int = 7) -> str:
    """The everyday commands against :data:`HELD_STUDIES` held studies, idle and beside
    :data:`BUSY_LOOPS` busy loops, with what every command pays first, as a Markdown report
    (``benchmarks/results/cli-held-studies.md``): the part of :func:`run` that the issue's
    floors are about, which takes a minute and a half rather than the whole run's minutes."""
    quiet()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="dasktune-cli-timings-"))
    try:
        with process_cluster(n_workers=1) as cluster:
            timings = _held_studies(cluster.client, work, repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# The everyday commands, against a scheduler holding 100 studies",
        "",
        f"Made by `python -m benchmarks.cli_timings --held` on {commit}: each command a fresh process, the median "
        f"of {repeat}; *busy loops*: that many `while True: pass` processes beside it. Load average (1, 5, 15 "
        f"min) before: {', '.join(f'{x:.2f}' for x in load_before)}. The import rows are what any command pays "
        "before its own work; a command is faster than a bare `import optuna, distributed` because it exits "
        "without Python's teardown.",
        "",
        "| command | seconds | floor | result |",
        "|---|---:|---:|---|",
    ]
    for name, seconds in timings:
        held = re.fullmatch(r"(\w+), (\d+) studies held: (.+)", name)
        floor = ""
        if held and held[1] in HELD_FLOOR_COMMANDS:
            ceiling = HELD_IDLE_CEILING if held[3] == "idle" else HELD_LOADED_CEILING
            floor = f"<= {ceiling:g} s | {'PASS' if seconds <= ceiling else '**FAIL**'}"
        lines.append(f"| {name} | {seconds:.3f} | {floor or ' | '} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--held"]:
        print(held_report(), end="")
    else:
        for label, seconds in run():
            print(f"{label:55s} {seconds:8.3f} s")
