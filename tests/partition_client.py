"""The client of a partition test, run inside its own network namespace (see
``tests/test_partitions.py``): ``python partition_client.py SPEC_JSON``.

Modes (``spec["mode"]``):

- ``attached``: ``dasktune.optimize`` of ``n_trials`` trials of ``duration`` s; writes
  ``returned.json`` (when it returned, or the error it raised) the moment the call ends;
- ``detached``: starts the run detached, writes ``returned.json`` with its id at once;

then, in both, waits for the test to create ``check`` in the output directory (after it
restored every link and let late results arrive) and writes ``final.json``, read through a
client of its own: every trial of the study as the scheduler has it, and the runs with how
they ended.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
import sys
import time

from distributed import Client
import optuna

import dasktune
from dasktune import compat


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    time.sleep(trial.study.user_attrs["duration"])
    return x * x


def trials_of(study: optuna.Study) -> list[dict]:
    return [
        {"number": t.number, "state": t.state.name, "x": t.params.get("x"),
         "complete": t.datetime_complete.timestamp() if t.datetime_complete else None,
         "fail_reason": t.system_attrs.get("fail_reason")}
        for t in study.get_trials(deepcopy=False)
    ]


def publish(path: Path, text: str) -> None:
    """Write ``path`` whole: the test polls for it and must never read it half-written."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)


def main(spec: dict) -> None:
    out = Path(spec["out"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    client = Client(spec["address"], timeout=30)
    storage = dasktune.DaskStorage(name="partition", **spec.get("heartbeat", {}))
    study = optuna.create_study(storage=storage, study_name="partition", load_if_exists=True)
    study.set_user_attr("duration", spec["duration"])
    client.wait_for_workers(spec["workers"], timeout=60)
    publish(out / "started", str(time.time()))
    returned: dict = {"error": None}
    try:
        run = dasktune.optimize(study, objective, n_trials=spec["n_trials"], detach=spec["mode"] == "detached")
        returned["run_id"] = run.run_id
    except BaseException as error:  # what the caller sees is the point of the test
        returned["error"] = f"{type(error).__name__}: {error}"
    returned["returned"] = time.time()
    publish(out / "returned.json", json.dumps(returned))
    with contextlib.suppress(Exception):  # it may have lost the scheduler with its link
        client.close(timeout=10)

    deadline = time.monotonic() + 600
    while not (out / "check").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    # A client of its own: the run's may have lost the scheduler with its link.
    with Client(spec["address"], timeout=30, set_as_default=True) as reader:
        storage = dasktune.DaskStorage(name="partition", client=reader)
        study = optuna.load_study(study_name="partition", storage=storage)
        if spec["mode"] == "detached":
            dasktune.attach(study).wait()
        final = {"trials": trials_of(study),
                 "runs": storage.find_runs(compat.study_id(study))}
    publish(out / "final.json", json.dumps(final))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
