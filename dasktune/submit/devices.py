"""One device per trial: which of its worker's GPUs a trial holds.

With ``optimize(..., resources={"GPU": 1})``, Dask runs trials only on workers that
advertise ``GPU`` resources, and no more at once than those allow. It counts devices but
does not say which. dasktune does: every task of a run that holds ``GPU`` resources (a trial
runner, or a define-and-run trial) takes that many devices from its worker process's own
list when it starts and gives them back when it ends. No two tasks of one process hold the
same device at once; a task asking for a fraction (``{"GPU": 0.5}``) shares a device with
as many others as make it whole.

A worker's devices are the entries of ``CUDA_VISIBLE_DEVICES`` when it first runs such a
task (dask-cuda's ``dask cuda worker`` starts one worker per GPU with that GPU first in it),
or ``0 .. GPU-1`` without it. Inside the objective, :func:`devices` returns the ones its
trial holds: ``torch.device(f"cuda:{i}")`` for the i-th of them *among the process's
visible devices*, which is what CUDA numbers them by. A worker with one thread runs one
trial at a time, so there ``CUDA_VISIBLE_DEVICES`` itself is also set to the trial's
devices while it runs (for frameworks that read it, and subprocesses). A runner records its
trials' devices in their ``dasktune:devices`` system attribute.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
import contextlib
import math
import os
import threading

from distributed import get_worker

from dasktune import compat

#: The Dask worker resource that stands for GPUs.
RESOURCE = "GPU"
#: The trial's system attribute that records the devices it held.
DEVICES_ATTR = "dasktune:devices"
_VISIBLE = "CUDA_VISIBLE_DEVICES"

_lock = threading.Condition()
#: This process's devices -> the share of each now held (None until a task asks).
_load: dict[str, float] | None = None
_mine = threading.local()


def devices() -> list[str]:
    """The devices (GPU ids, as in ``CUDA_VISIBLE_DEVICES``) that the calling trial holds:
    inside an objective run by ``dasktune.optimize(..., resources={"GPU": n})``. Empty
    anywhere else."""
    return list(getattr(_mine, "devices", ()))


@contextlib.contextmanager
def holding(resources: Mapping[str, float] | None) -> Iterator[list[str]]:
    """Hold this worker's devices for a task that was given ``resources`` (nothing if they
    name no ``GPU``), for as long as the block runs; :func:`devices` returns them inside.

    If the devices are still held when Dask starts the task (a cancelled task whose thread
    is still inside an objective: Dask frees its resources at once, Python cannot stop the
    thread), it waits for them.

    Raises:
        ValueError: The task needs more devices than its worker has.
    """
    amount = float((resources or {}).get(RESOURCE, 0))
    if amount <= 0:
        yield []
        return
    worker = get_worker()
    held = _take(amount, worker.address)
    previous = os.environ.get(_VISIBLE)
    alone = compat.worker_threads_and_resources(worker)[0] == 1
    _mine.devices = held
    if alone:
        os.environ[_VISIBLE] = ",".join(held)
    try:
        yield held
    finally:
        _mine.devices = ()
        if alone:
            _restore(previous)
        _give(held, amount)


def _own_devices() -> dict[str, float]:
    """This process's devices (see the module docstring), read once."""
    visible = os.environ.get(_VISIBLE, "")
    if visible.strip():
        return {d.strip(): 0.0 for d in visible.split(",") if d.strip()}
    count = int(compat.worker_threads_and_resources(get_worker())[1].get(RESOURCE, 0))
    return {str(i): 0.0 for i in range(count)}


def _take(amount: float, where: str) -> list[str]:
    global _load
    whole = math.ceil(amount) if amount >= 1 else 1
    share = 1.0 if amount >= 1 else amount
    with _lock:
        if _load is None:
            _load = _own_devices()
        if whole > len(_load):
            raise ValueError(
                f"A task needs {whole} devices ({RESOURCE}={amount:g}) but worker {where} has "
                f"{len(_load)} ({_VISIBLE}={os.environ.get(_VISIBLE)!r}): start it with "
                f"--resources {RESOURCE}=<its number of devices>, and list them in {_VISIBLE}."
            )
        while True:
            free = [d for d, load in _load.items() if load + share <= 1.0 + 1e-9]
            if len(free) >= whole:
                # The least loaded first: fractions spread before they stack.
                held = sorted(free, key=lambda d: _load[d])[:whole]
                for d in held:
                    _load[d] += share
                return held
            _lock.wait()


def _give(held: list[str], amount: float) -> None:
    share = 1.0 if amount >= 1 else amount
    with _lock:
        assert _load is not None
        for d in held:
            _load[d] = max(_load[d] - share, 0.0)
        _lock.notify_all()


def _restore(previous: str | None) -> None:
    if previous is None:
        os.environ.pop(_VISIBLE, None)
    else:
        os.environ[_VISIBLE] = previous
