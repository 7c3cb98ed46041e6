"""``dasktune.optimize``: one call that fans an Optuna study's trials across a Dask cluster.

``optimize`` checks its arguments, opens a *run* on the scheduler (the budget) and drives
it (``watch.py``): one trial runner per worker thread (``runner.py``) as the cluster grows or
shrinks, and every finished trial reaching the calling process, in finishing order, for
logging, the progress bar and callbacks. What to do next is decided by ``policy.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from collections.abc import Sequence
import re
from typing import Any
from typing import cast
import uuid

import dask.config
from distributed import Client
from distributed import fire_and_forget
from distributed import get_client
from distributed import secede
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from dasktune import compat
from dasktune.storage import DaskStorage
from dasktune.storage import wire
from dasktune.submit.runner import Objective
from dasktune.submit.runner import dask_storage
from dasktune.submit.runner import RunSpec
from dasktune.submit.runner import SealedSpec
from dasktune.submit.pruning import first_wave_warning
from dasktune.submit.pruning import RECORD_CONFIG
from dasktune.submit.tasks import RunnerTasks
from dasktune.submit.tasks import submit
from dasktune.submit.tasks import Tasks
from dasktune.submit.tasks import TrialTasks
from dasktune.submit.watch import Callback
from dasktune.submit.watch import drive
from dasktune.submit.watch import follow

class Run:
    """One ``dasktune.optimize`` call: its budget lives on the scheduler.

    Returned by :func:`optimize` once the run has ended (or at once with ``detach=True``)
    and by :func:`attach` for a run started elsewhere.

    Attributes:
        study: The study the run optimizes.
        run_id: Identifies the run on the scheduler.
        trials: The trials this run finished, in finishing order, as far as this process
            has watched them (all of them after :meth:`wait`).
    """

    def __init__(self, study: optuna.Study, run_id: str) -> None:
        self.study = study
        self.run_id = run_id
        self.trials: list[FrozenTrial] = []

    @property
    def storage(self) -> DaskStorage:
        return dask_storage(self.study)

    def status(self) -> wire.RunStatus:
        """The run's progress on the scheduler: ``n_trials``, ``claimed``, ``finished``,
        ``running``, ``lost`` (trials whose worker died), ``undecided`` (lost trials whose
        retry the storage's stale-trial callback has yet to decide), ``end_reason`` (why the
        run ended, if something but its budget ended it: ``study.stop()``, an error, a
        cancel), ``outcome`` (how it ended: ``finished``, ``stopped``, ``failed``,
        ``cancelled``, ``aborted``, ``deleted``, ``orphaned``), ``time_left`` (seconds, with
        a timeout), ``can_claim`` and ``done``."""
        return self.storage.run_status(self.run_id)

    def done(self) -> bool:
        """Whether the run has ended: no trial running and none may start."""
        return bool(self.status()["done"])

    def wait(
        self,
        callbacks: Sequence[Callback] | None = None,
        show_progress_bar: bool = False,
    ) -> Run:
        """Watch the run until it ends; collects its trials into :attr:`trials`."""
        return follow(self, list(callbacks or ()), show_progress_bar)

    def cancel(self, reason: str = "cancelled by the user") -> wire.RunStatus:
        """Stop the run now: no trial starts any more, running ones become FAIL with
        ``reason``, and its runners leave the workers. The call that drives the run (its
        ``optimize``, or ``wait``) returns."""
        return self.storage.end_run(self.run_id, "cancelled", reason)

    @property
    def best_trial(self) -> FrozenTrial:
        """The study's best trial (Optuna's ``study.best_trial``)."""
        return self.study.best_trial

    def __repr__(self) -> str:
        return f"<dasktune.Run {self.run_id} of study {self.study.study_name!r}>"


def optimize(
    study: optuna.Study,
    objective: Objective,
    n_trials: int | None = None,
    timeout: float | None = None,
    *,
    client: Client | None = None,
    concurrency: int | None = None,
    callbacks: Sequence[Callback] | None = None,
    catch: Sequence[type[Exception]] | type[Exception] = (),
    show_progress_bar: bool = False,
    retries: int = 1,
    detach: bool = False,
    search_space: dict[str, BaseDistribution] | type | None = None,
    resources: Mapping[str, float] | None = None,
    max_resource: int | None = None,
) -> Any:
    """Optimize ``study`` with ``objective`` on the Dask cluster.

    The words mirror :meth:`optuna.Study.optimize`. Trials run on the workers, one trial
    runner per worker thread, each claiming trials from the scheduler until the budget is
    spent, so exactly ``n_trials`` trials are finished by the call.

    Args:
        study: A study whose storage is a :class:`dasktune.DaskStorage`.
        objective: ``objective(trial) -> value(s)``, run on the workers.
        n_trials: Trials to finish; ``None`` runs until ``timeout`` or an interrupt.
        timeout: Seconds after which no trial starts; the call returns once running trials
            end.
        client: The Dask client; the current one by default.
        concurrency: Most trials to run at once; by default one per worker thread,
            following the cluster as workers join or leave. Each runner samples with its
            own copy of the study's sampler (reseeded, so seeded runs stay distinct), from
            every finished result and every running trial's parameters; past a few
            trials at once the result after ``n_trials`` is worse than one at a time, by
            what the sampler itself gives up with that many trials in flight (see the
            README's "Parallel quality").
        callbacks: ``callback(study, frozen_trial)``, called in this process as each trial
            finishes, in finishing order.
        catch: Exception types of the objective that fail the trial but let the
            optimization go on; any other exception fails its trial, stops the run and is
            raised here with its original type and traceback.
        show_progress_bar: Show a tqdm bar (a widget in notebooks).
        retries: How many times a trial lost with its worker (dead, removed by Dask, or
            silent past the storage's heartbeat grace period) is retried with the same
            parameters (recorded in its ``failed_trial`` / ``retry_history`` system attrs).
        detach: Hand the whole optimization to the cluster and return at once; the client
            may close, and :func:`attach` finds the run again from any process.
        search_space: Define-and-run: a dict of Optuna distributions. Trials are then asked
            here, from the study's sampler (which keeps its state in one place), and
            ``objective(params)`` receives the sampled parameters as a dict on a worker, one
            task per trial. Prefer it for expensive or stateful samplers (CMA-ES, GP) and
            costly objectives; it does not support pruning (the objective has no trial).
            A typed search space class (:func:`dasktune.tune.typed_space`) works too: the
            objective then receives an instance of it.
        resources: Dask worker resources each trial needs, e.g. ``{"GPU": 1}``: trials run
            only on workers started with them (``dask worker --resources "GPU=1"``,
            ``LocalCluster(resources={"GPU": 1})``), and as many at once per worker as its
            resources allow.
        max_resource: The step of a trial's last report (its number of epochs, say), for
            the study's pruner. ``SuccessiveHalvingPruner(min_resource="auto")`` and
            ``HyperbandPruner(max_resource="auto")`` learn it from the first trial to
            complete, and prune nothing before: with many trials at once, the whole first
            wave would run to its end. Given, they get from the first trial what they
            would infer from a complete one (see the README's "Pruning across workers");
            without it, such a pruner draws a warning unless ``concurrency=1``.

    Returns:
        The :class:`Run`, ended (its ``trials`` are those this call ran) — or still going
        with ``detach=True``. With an asynchronous client, an awaitable of it.

    Raises:
        ValueError: The storage is not a DaskStorage, or an argument is out of range.
        TypeError: The objective cannot be sent to the workers, or an argument has the
            wrong type.
    """
    storage = dask_storage(study)
    catches = _check_arguments(
        objective, n_trials, timeout, concurrency, catch, retries, callbacks, resources
    )
    if isinstance(search_space, type):
        # Imported here: the tune API builds on this module, not the other way round.
        from dasktune.tune.typed import TypedObjective

        typed = TypedObjective(objective, search_space)
        objective, search_space = cast(Objective, typed), typed.distributions
    _check_search_space(search_space)
    if client is not None:
        storage.use_client(client)
    client = storage.client
    run_id = f"{_key_name(study.study_name)}-{uuid.uuid4().hex[:12]}"
    callbacks = list(callbacks or ())
    # Define-and-run claims in this process, after the callbacks: no gate needed (or held).
    gated = bool(callbacks) and search_space is None
    if max_resource is not None and (not isinstance(max_resource, int) or max_resource < 1):
        raise ValueError(f"max_resource must be a positive int or None, not {max_resource!r}.")
    if search_space is None:
        first_wave_warning(study, max_resource, concurrency)
    record = bool(dask.config.get(RECORD_CONFIG, False))
    spec = RunSpec(
        study, run_id, objective, catches, resources, search_space, gated, max_resource, record
    )

    # A stale-trial callback of the storage (a RetryFailedTrialCallback, say) decides what
    # happens to a trial lost with its worker, as it does for a trial whose heartbeat stopped.
    deciding = storage.get_heartbeat_stale_trial_callback() is not None

    def start() -> Run:
        terms: wire.RunTerms = {
            "n_trials": n_trials, "timeout": timeout, "retries": None if deciding else retries,
            "client": None if detach else client.id, "gated": spec.gated,
        }
        storage.open_run(run_id, compat.study_id(study), terms)
        if not detach:
            return drive(Run(study, run_id), _tasks(client, spec), callbacks, concurrency, show_progress_bar)
        future = submit(client, _drive_detached, spec, callbacks, concurrency, key=f"dasktune-{run_id}-driver")
        fire_and_forget(future)
        return Run(study, run_id)

    if client.asynchronous:
        # One synchronous core: an asynchronous client gets it on a thread, so the event
        # loop stays free while the driver waits.
        return asyncio.get_running_loop().run_in_executor(None, start)
    return start()


def attach(study: optuna.Study, run_id: str | None = None) -> Run:
    """The ``optimize`` run ``run_id`` of ``study`` (by default its latest), started by
    this or any other process; :meth:`Run.wait` follows it, :meth:`Run.cancel` stops it.

    Raises:
        KeyError: The study has no such run.
    """
    storage = dask_storage(study)
    ids = [r["run_id"] for r in storage.find_runs(compat.study_id(study))]
    if not ids or (run_id is not None and run_id not in ids):
        raise KeyError(
            f"No optimize run {run_id or ''} of study {study.study_name!r} on storage "
            f"{storage.name!r}; runs: {ids}."
        )
    return Run(study, run_id or ids[-1])


def _tasks(client: Client, spec: RunSpec) -> Tasks:
    return RunnerTasks(client, spec) if spec.search_space is None else TrialTasks(client, spec)


def _drive_detached(sealed: RunSpec | SealedSpec, callbacks: list[Callback], concurrency: int | None) -> int:
    """The driver of a detached run, as a task on the cluster."""
    spec = sealed.open()
    secede()  # a driver waits; it must not hold a worker thread that a runner could use
    client = get_client()
    dask_storage(spec.study).use_client(client)
    return len(drive(Run(spec.study, spec.run_id), _tasks(client, spec), callbacks, concurrency, False).trials)


def _check_arguments(
    objective: Objective,
    n_trials: int | None,
    timeout: float | None,
    concurrency: int | None,
    catch: Sequence[type[Exception]] | type[Exception],
    retries: int,
    callbacks: Sequence[Callback] | None,
    resources: Mapping[str, float] | None,
) -> tuple[type[BaseException], ...]:
    if not callable(objective):
        raise TypeError(f"objective must be callable, not {type(objective).__name__}.")
    if n_trials is not None and (not isinstance(n_trials, int) or n_trials < 1):
        raise ValueError(f"n_trials must be a positive int or None, not {n_trials!r}.")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}.")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise ValueError(f"concurrency must be a positive int or None, not {concurrency!r}.")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, not {retries!r}.")
    catches = tuple(catch) if isinstance(catch, (list, tuple)) else (catch,)
    if not all(isinstance(c, type) and issubclass(c, BaseException) for c in catches):
        raise TypeError(f"catch must be exception types, not {catch!r}.")
    for callback in callbacks or ():
        if not callable(callback):
            raise TypeError(f"callbacks must be callables, not {callback!r}.")
    if resources is not None and not (
        isinstance(resources, Mapping)
        and resources
        and all(isinstance(k, str) and isinstance(v, (int, float)) and v > 0 for k, v in resources.items())
    ):
        raise ValueError(
            f"resources must map Dask worker resource names to positive amounts, e.g. "
            f"{{'GPU': 1}}, not {resources!r}."
        )
    return catches


def _check_search_space(search_space: dict[str, BaseDistribution] | None) -> None:
    if search_space is not None and not (
        isinstance(search_space, dict)
        and search_space
        and all(isinstance(d, BaseDistribution) for d in search_space.values())
    ):
        raise TypeError(
            "search_space must be a non-empty dict of parameter name -> Optuna distribution "
            f"(e.g. optuna.distributions.FloatDistribution(0, 1)), not {search_space!r}."
        )


def _key_name(study_name: str) -> str:
    """The study's name as it may appear in a Dask key (readable on the dashboard)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", study_name)[:40] or "study"
