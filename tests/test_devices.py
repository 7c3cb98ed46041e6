"""One device per trial (``optimize(..., resources={"GPU": n})``, ``dasktune.devices()``):
which of its worker's devices a trial holds, never shared by two trials of a process at
once, with workers dying. This machine has no GPU: workers advertise ``GPU`` resources and
list fake devices in ``CUDA_VISIBLE_DEVICES``; the last test runs only where CUDA is."""

from __future__ import annotations

import os
import random
import signal
import time

from distributed import Client
from distributed import LocalCluster
import optuna
from optuna.trial import TrialState
import pytest

from conftest import wait_for
import dasktune
from dasktune.submit.devices import DEVICES_ATTR

FAKE = ["3", "5", "7", "9"]


def _holder(trial: optuna.Trial) -> float:
    """Record what the trial was told, in which process, and when it held it."""
    trial.set_user_attr("seen", dasktune.devices())
    trial.set_user_attr("visible", os.environ.get("CUDA_VISIBLE_DEVICES"))
    trial.set_user_attr("pid", os.getpid())
    began = time.time()
    time.sleep(random.uniform(0.05, 0.25))
    trial.set_user_attr("held", [began, time.time()])
    return trial.suggest_float("x", 0, 1)


def _most_at_once(trials: list[optuna.trial.FrozenTrial], per_device: bool) -> int:
    """The most objectives that ran at once in one process (on one device of it)."""
    events = []
    for t in trials:
        where = (t.user_attrs["pid"], tuple(t.user_attrs["seen"]) if per_device else ())
        began, ended = t.user_attrs["held"]
        events += [(began, 1, where), (ended, -1, where)]
    running: dict[tuple, int] = {}
    most = 0
    for _, change, where in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts
        running[where] = running.get(where, 0) + change
        most = max(most, running[where])
    return most


def test_32_trials_at_once_never_share_a_device_while_workers_die() -> None:
    with LocalCluster(n_workers=8, threads_per_worker=4, resources={"GPU": 4}, env={"CUDA_VISIBLE_DEVICES": ",".join(FAKE)},
                      host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        study = optuna.create_study(storage=dasktune.DaskStorage())
        run = dasktune.optimize(study, _holder, n_trials=400, resources={"GPU": 1}, retries=3, detach=True)
        wait_for(lambda: len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) > 60, timeout=120)
        pids = client.run(os.getpid)
        for victim in list(pids)[:2]:  # die mid-trial (SIGKILL); their nannies start new ones
            os.kill(pids[victim], signal.SIGKILL)
        run.wait()
        trials = study.get_trials(deepcopy=False)

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 400
    assert any(t.state == TrialState.FAIL for t in trials)  # the kill did hit running trials
    for t in complete:
        (device,) = t.system_attrs[DEVICES_ATTR]
        assert t.user_attrs["seen"] == [device] and device in FAKE  # told, and one of its worker's
        assert t.user_attrs["visible"] == ",".join(FAKE)  # 4 threads: the process's list stays
    assert _most_at_once(complete, per_device=True) == 1  # no device ever held twice
    assert _most_at_once(complete, per_device=False) == 4  # while all of a worker's were busy


@pytest.mark.parametrize("search_space", [None, {"x": optuna.distributions.FloatDistribution(0, 1)}])
def test_a_one_thread_worker_sets_cuda_visible_devices_to_the_trials_device(search_space) -> None:
    def define_and_run(params: dict) -> float:
        assert dasktune.devices() == [os.environ["CUDA_VISIBLE_DEVICES"]]
        return params["x"]

    with LocalCluster(n_workers=2, threads_per_worker=1, resources={"GPU": 1}, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        study = optuna.create_study(storage=dasktune.DaskStorage())
        objective = _holder if search_space is None else define_and_run
        dasktune.optimize(study, objective, n_trials=6, resources={"GPU": 1}, search_space=search_space)
        trials = study.get_trials(deepcopy=False)
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 6
    if search_space is None:
        assert {(tuple(t.user_attrs["seen"]), t.user_attrs["visible"]) for t in trials} == {(("0",), "0")}


def test_half_a_gpu_each_shares_a_device_between_two_trials() -> None:
    with LocalCluster(n_workers=1, threads_per_worker=4, resources={"GPU": 2}, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        study = optuna.create_study(storage=dasktune.DaskStorage())
        dasktune.optimize(study, _holder, n_trials=24, resources={"GPU": 0.5})
        trials = study.get_trials(deepcopy=False)
    assert _most_at_once(trials, per_device=True) == 2  # two on a device, never three
    assert {d for t in trials for d in t.user_attrs["seen"]} == {"0", "1"}


def test_more_devices_asked_than_listed_raises_naming_the_worker_and_the_fix() -> None:
    with LocalCluster(n_workers=1, threads_per_worker=1, resources={"GPU": 2}, env={"CUDA_VISIBLE_DEVICES": "0"},
                      host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster):
        study = optuna.create_study(storage=dasktune.DaskStorage())
        with pytest.raises(ValueError, match=r"needs 2 devices .* has 1 .*--resources GPU="):
            dasktune.optimize(study, _holder, n_trials=2, resources={"GPU": 2})


def test_real_gpus_get_one_trial_each() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        pytest.skip("no CUDA device on this machine: the real-GPU check runs only where one is")
    count = torch.cuda.device_count()

    def on_gpu(trial: optuna.Trial) -> float:
        (device,) = dasktune.devices()
        index = os.environ["CUDA_VISIBLE_DEVICES"].split(",").index(device)
        x = torch.ones(1, device=f"cuda:{index}")
        return float(x.sum()) * trial.suggest_float("x", 0, 1)

    with LocalCluster(n_workers=1, threads_per_worker=count, resources={"GPU": count}, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        study = optuna.create_study(storage=dasktune.DaskStorage())
        dasktune.optimize(study, on_gpu, n_trials=4 * count, resources={"GPU": 1})
        trials = study.get_trials(deepcopy=False)
    assert len({tuple(t.system_attrs[DEVICES_ATTR]) for t in trials}) == count
