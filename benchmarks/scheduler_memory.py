"""What the scheduler keeps per trial: a study's trials in dasktune's scheduler-side storage
host against the same trials in Optuna's own ``InMemoryStorage``, in one process each.

``python -m benchmarks.scheduler_memory [--trials 200000] [--out DIR]`` writes N COMPLETE
trials of three float parameters, each reporting 10 intermediate values (the values drawn
from a seeded generator, as a ``RandomSampler`` study with a cheap objective would write
them):

- into ``optuna.storages.InMemoryStorage`` through its API, the peer;
- into a :class:`~dasktune.storage.host.StorageHost` over an in-memory backend, through the
  wire operations every ``DaskStorage`` sends (``create_new_trial``, then one request with
  the parameters, the intermediate values and the tell): what the storage plugin keeps on
  the scheduler for an in-memory ``DaskStorage`` (the backend, and the mirror with its
  change log that clients read from).

Each in a fresh process, measured with ``tracemalloc`` after a garbage collection: the
bytes allocated and still held, per trial. Also reported: the change log's entries against
the trials (compacted, :mod:`dasktune.storage.changelog`), and the time to write them.
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path
import random
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import optuna
from optuna.distributions import distribution_to_json
from optuna.distributions import FloatDistribution
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import TrialState

from dasktune.storage.host import StorageHost  # imported before measuring: not a trial's cost

PARAMS = ("x", "y", "z")
STEPS = 10
DISTRIBUTION = FloatDistribution(-5.0, 5.0)


def _optuna(n: int, rnd: random.Random) -> dict[str, Any]:
    storage = InMemoryStorage()
    study = storage.create_new_study([StudyDirection.MINIMIZE], "memory")
    for _ in range(n):
        trial = storage.create_new_trial(study)
        for name in PARAMS:
            storage.set_trial_param(trial, name, DISTRIBUTION.to_internal_repr(rnd.uniform(-5, 5)), DISTRIBUTION)
        for step in range(STEPS):
            storage.set_trial_intermediate_value(trial, step, rnd.random())
        storage.set_trial_state_values(trial, TrialState.COMPLETE, [rnd.random()])
    return {"kept": storage}


def _dasktune(n: int, rnd: random.Random) -> dict[str, Any]:
    def op(name: str, *args: Any) -> list[Any]:
        return [name, list(args), None]

    host = StorageHost(InMemoryStorage(), None)
    (study,), error = host.execute([op("create_new_study", [StudyDirection.MINIMIZE.value], "memory")])
    assert error is None, error
    encoded = distribution_to_json(DISTRIBUTION)
    for _ in range(n):
        (trial,), error = host.execute([op("create_new_trial", study, None)])
        ops = [op("set_trial_param", trial, name, rnd.uniform(-5, 5), encoded) for name in PARAMS]
        ops += [op("set_trial_intermediate_value", trial, step, rnd.random()) for step in range(STEPS)]
        ops.append(op("set_trial_state_values", trial, TrialState.COMPLETE.value, [rnd.random()]))
        _, error = host.execute(ops)
        assert error is None, error
    return {"kept": host, "sizes": host.sizes()}


def measure(kind: str, n: int) -> dict[str, Any]:
    """One storage's figures, in this process (run it in a fresh one)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fill = _optuna if kind == "optuna" else _dasktune
    gc.collect()
    tracemalloc.start()
    began = time.perf_counter()
    held = fill(n, random.Random(0))
    seconds = time.perf_counter() - began
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    result = {"kind": kind, "trials": n, "bytes_per_trial": current / n, "seconds": seconds}
    if "sizes" in held:
        result["log_entries"] = held["sizes"]["log entries"]
    return result


def run(n: int) -> list[dict[str, Any]]:
    """Both storages, each in a process of its own."""
    results = []
    for kind in ("optuna", "dasktune"):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.scheduler_memory", "--one", kind, "--trials", str(n)],
            capture_output=True, text=True, check=True,
        )
        results.append(json.loads(done.stdout.splitlines()[-1]))
    return results


def report(results: list[dict[str, Any]]) -> str:
    optuna_row, ours = results
    ratio = ours["bytes_per_trial"] / optuna_row["bytes_per_trial"]
    log_ratio = ours["log_entries"] / ours["trials"]
    return "\n".join([
        "# What the scheduler keeps per trial",
        "",
        f"Made by `python -m benchmarks.scheduler_memory` (see its docstring): {ours['trials']:,} COMPLETE "
        f"trials, 3 float parameters and {STEPS} intermediate values each, in-memory backend; "
        f"Optuna {optuna.__version__}. Bytes allocated and held after the writes (tracemalloc), per trial.",
        "",
        "| storage | bytes per trial | write time |",
        "|---|---:|---:|",
        f"| Optuna `InMemoryStorage`, in one process | {optuna_row['bytes_per_trial']:,.0f} | {optuna_row['seconds']:.1f} s |",
        f"| dasktune's scheduler side (backend + mirror + change log) | {ours['bytes_per_trial']:,.0f} | {ours['seconds']:.1f} s |",
        "",
        f"- dasktune / Optuna: **{ratio:.2f}x** (floor <= 1.5x: {'PASS' if ratio <= 1.5 else 'FAIL'}).",
        f"- Change log: {ours['log_entries']:,} entries for {ours['trials']:,} trials, **{log_ratio:.2f}x** "
        f"(floor <= 2x: {'PASS' if log_ratio <= 2 else 'FAIL'}).",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--one", choices=["optuna", "dasktune"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.trials)))
        return
    text = report(run(args.trials))
    (args.out / "scheduler-memory.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
