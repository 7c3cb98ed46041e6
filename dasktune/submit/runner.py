"""The trial runner: a long-lived Dask task that runs trials of one ``optimize`` call.

One runner occupies one worker thread and loops: take the next trial it claimed from the
scheduler (the claim enforces ``n_trials`` and ``timeout`` there), make Optuna's ``Trial``
for it, run the objective, tell the result; until a claim is refused. The tell travels with
the next claim, so a trial costs at most one round trip to the scheduler; for cheap
objectives trials are claimed in batches and the next batch is asked for while the current
trial runs (see :mod:`dasktune.storage.session`), so a runner does not wait on the scheduler.

Every way out of the loop leaves nothing behind: an objective's error fails its trial and,
unless listed in ``catch``, ends the run (the error is raised at the caller); an error of
the sampler or of Optuna's tell does the same; a ``BaseException`` (``SystemExit``,
``KeyboardInterrupt``) aborts the run, failing its running trials, and reaches the caller
with its type. The runner returns that error rather than raise it (see
:mod:`dasktune.submit.errors`): the caller gets it once, and the worker stays up.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
import contextlib
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
import threading
from typing import Any

from distributed import get_worker
import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from dasktune import compat
from dasktune.storage import DaskStorage
from dasktune.storage.runs import GRACEFUL
from dasktune.storage.runs import Outcome
from dasktune.storage.session import RunnerSession
from dasktune.storage.wire import FAIL_REASON
from dasktune.submit import devices
from dasktune.submit import pickling
from dasktune.submit import pruning
from dasktune.submit.errors import RemoteError
from dasktune.submit.policy import invalid_values

Objective = Callable[[optuna.Trial], Any]


@dataclass(frozen=True)
class RunSpec:
    """What every task of one run needs. One object, so that Dask passes it to a task as
    it is (a tuple argument such as ``catch=(ValueError,)`` would be read as a task by
    older distributed releases).

    It is pickled once, when made (see :mod:`dasktune.submit.pickling`): every runner gets
    the same bytes, and what cannot be sent to the workers fails here, naming it.

    Raises:
        TypeError: The objective or the study's sampler cannot be pickled.
    """

    study: optuna.Study
    run_id: str
    objective: Objective
    catch: tuple[type[BaseException], ...]
    resources: Mapping[str, float] | None = None
    search_space: dict[str, BaseDistribution] | None = None
    #: The caller runs callbacks: each runner claims a trial when it needs one, never ahead,
    #: and the scheduler grants it once the callbacks have seen the trials before it.
    gated: bool = False
    #: For the study's pruner (see :mod:`dasktune.submit.pruning`): the step of a trial's
    #: last report, and whether to log each decision.
    max_resource: int | None = None
    record_pruning: bool = False
    _pickled: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            pickled = pickling.dumps(tuple(getattr(self, f.name) for f in fields(self) if f.init))
        except Exception as e:
            try:
                pickling.dumps(self.objective)
                what = f"The study's sampler {self.study.sampler!r}"
                hint = "every runner needs its own copy of it; keep them out of the sampler"
            except Exception:
                what = f"The objective {self.objective!r}"
                hint = "define it at module level, or keep them out of what it refers to"
            raise TypeError(
                f"{what} cannot be sent to the workers: {e}. Unpicklable objects (open files, "
                f"clients, sockets) cannot travel: {hint}."
            ) from e
        object.__setattr__(self, "_pickled", pickled)

    def __reduce__(self) -> tuple[Any, ...]:
        return (SealedSpec, (self._pickled,))

    def open(self) -> RunSpec:
        return self


class SealedSpec:
    """A :class:`RunSpec` on its way to a worker: its bytes, and nothing else.

    The scheduler unpickles every task's arguments, and keeps those of the last messages to
    each worker (Dask's ``admin.low-level-log-length``, 1,000 by default). Sealed, a run's
    study, sampler and objective are built nowhere but on the workers: the scheduler needs
    none of the user's modules, and keeps a few kilobytes per message, not every object of a
    sampler's state (77 KiB per ``tune.run`` call, measured)."""

    __slots__ = ("pickled",)

    def __init__(self, pickled: bytes) -> None:
        self.pickled = pickled

    def __reduce__(self) -> tuple[Any, ...]:
        return (SealedSpec, (self.pickled,))

    def open(self) -> RunSpec:
        """The RunSpec, keeping its bytes (a detached driver sends it on as it got it)."""
        spec = object.__new__(RunSpec)
        names = [f.name for f in fields(RunSpec) if f.init]
        for name, value in zip(names, pickling.loads(self.pickled)):
            object.__setattr__(spec, name, value)
        object.__setattr__(spec, "_pickled", self.pickled)
        return spec


@dataclass
class StopRun(Exception):
    """Ends the run: ``error`` is raised at the caller, after the run ``outcome``."""

    error: BaseException
    outcome: Outcome


def run_trials(sealed: RunSpec | SealedSpec) -> int | RemoteError:
    """Run trials of the run until its claims are refused; how many this runner ran, or
    the error that must stop the run (see the module docstring), returned once the run is
    ended on the scheduler, for the driver to raise."""
    spec = sealed.open()
    study, objective, run_id, catch = spec.study, spec.objective, spec.run_id, spec.catch
    storage = dask_storage(study)
    key = str(get_worker().get_current_task())
    if storage.register_runner(run_id, key) > 0:
        # Each runner got the study pickled with the same sampler state: without this,
        # a seeded sampler would sample the same points in every runner.
        study.sampler.reseed_rng()
    if spec.max_resource is not None:  # see dasktune.submit.pruning
        compat.resolve_pruner_resources(study.pruner, spec.max_resource)
    trial_class = pruning.RecordingTrial if spec.record_pruning else pruning.Trial
    ran, stop = 0, None

    def stopping(e: StopRun) -> None:
        nonlocal stop
        if stop is None:  # the first error is the one the caller gets
            stop = e
            reason = f"{type(e.error).__name__} in a trial: {e.error}"
            storage.end_run(run_id, e.outcome, reason)

    # study.stop() in an objective ends the run then and there, not once its trial is over:
    # the other runners of this process stop before their next trial (end_run marks the run
    # ended here first), as Study.optimize(n_jobs=...)'s threads do, and those of other
    # processes within the scheduler's announcement.
    compat.on_stop(study, lambda: storage.end_run(run_id, "stopped", "study.stop() was called"))
    with storage.runner(run_id, key, ahead=not spec.gated) as session, devices.holding(spec.resources):
        with compat.optimize_loop(study):
            for trial_id in session:
                try:
                    run_trial(study, session, objective, trial_id, catch, trial_class)
                    report_refused(session.take_refused(), catch)  # this or earlier trials'
                except StopRun as e:
                    stopping(e)
                    if e.outcome not in GRACEFUL:
                        break  # an abort failed every trial this runner holds
                ran += 1
    try:
        report_refused(session.take_refused(), catch)  # met by leaving (its last writes)
    except StopRun as e:
        stopping(e)
    return ran if stop is None else RemoteError(stop.error)


def report_refused(refused: dict[int, Exception], catch: tuple[type[BaseException], ...]) -> None:
    """Report a runner's trials that the scheduler failed because it refused a write of
    theirs made earlier (see :meth:`RunnerSession.take_refused`) as their objectives'
    errors: as ``Study.optimize`` does when ``suggest`` raises, one in ``catch`` lets the
    run go on, any other ends it (raises :class:`StopRun`)."""
    for error in refused.values():
        if not isinstance(error, catch):
            raise StopRun(error, "failed") from error


def run_trial(
    study: optuna.Study,
    session: RunnerSession,
    objective: Objective,
    trial_id: int,
    catch: tuple[type[BaseException], ...],
    trial_class: type[optuna.Trial] = pruning.Trial,
) -> None:
    """Run one claimed trial to its end, as ``Study.optimize`` would, as a ``trial_class``;
    raise :class:`StopRun` if the run must end for what happened."""
    if not session.adopt(trial_id):
        return  # failed on the scheduler before it started (its run was aborted)
    storage = session.storage
    held = devices.devices()
    if held:  # which of its worker's devices the trial ran on, for whoever looks later
        storage.set_trial_system_attr(trial_id, devices.DEVICES_ATTR, held)
    try:
        trial = compat.new_trial(study, trial_id, trial_class)  # the sampler's before_trial runs here
    except BaseException as e:
        fail_trial(study, storage, trial_id, f"the sampler raised {type(e).__name__}: {e}")
        raise StopRun(e, "failed" if isinstance(e, Exception) else "aborted") from e
    with heartbeat(storage, trial_id):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            tell(study, storage, trial, state=TrialState.PRUNED)
            return
        except UpdateFinishedTrialError:
            return  # its trial was failed elsewhere while it ran (its run was aborted)
        except BaseException as e:
            fail_trial(study, storage, trial_id, f"{type(e).__name__}: {e}")
            if isinstance(e, Exception) and isinstance(e, catch):
                return
            raise StopRun(e, "failed" if isinstance(e, Exception) else "aborted") from e
    tell(study, storage, trial, values)


def tell(
    study: optuna.Study,
    storage: DaskStorage,
    trial: optuna.Trial,
    values: Any = None,
    state: TrialState | None = None,
) -> None:
    """Tell a trial's outcome as ``Study.optimize`` does: values Optuna cannot take FAIL
    the trial (with Optuna's message as its reason) rather than raise. Raises
    :class:`StopRun` if the sampler or Optuna raises."""
    trial_id = compat.trial_id(trial)
    if state is None:
        reason = invalid_values(values, len(study.directions))
        if reason is not None:
            fail_trial(study, storage, trial_id, reason)
            return
    try:
        if not storage.get_trial(trial_id).state.is_finished():
            compat.tell(study, trial, values, state=state)
    except UpdateFinishedTrialError:
        pass  # failed elsewhere meanwhile (its run was aborted): nothing to tell
    except Exception as e:  # the sampler's after_trial, or Optuna's own checks
        raise StopRun(e, "failed") from e


def fail_trial(study: optuna.Study, storage: DaskStorage, trial_id: int, reason: str) -> None:
    """FAIL a trial this process runs, recording ``reason`` (the one way to fail a trial on
    a worker; the scheduler records its own reasons the same way)."""
    frozen = storage.get_trial(trial_id)
    if frozen.state.is_finished():
        return  # failed elsewhere meanwhile
    try:
        storage.set_trial_system_attr(trial_id, FAIL_REASON, reason)
        compat.tell(study, frozen.number, state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        pass  # failed elsewhere meanwhile
    except Exception as e:  # the sampler's after_trial: the trial is FAIL all the same
        optuna.logging.get_logger("optuna.dasktune").warning(
            f"Failing trial {frozen.number} ({reason}) raised {e!r} in the sampler."
        )


@contextlib.contextmanager
def heartbeat(storage: DaskStorage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat every ``heartbeat_interval`` while it runs, as Optuna's
    ``Study.optimize`` does, if the storage has heartbeats."""
    interval = storage.get_heartbeat_interval()
    if interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is what the grace period is for
                storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"dasktune-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def dask_storage(study: optuna.Study) -> DaskStorage:
    """The study's DaskStorage; ``ValueError`` saying how to get one if it has another."""
    storage = compat.study_storage(study)
    if not isinstance(storage, DaskStorage):
        raise ValueError(
            f"dasktune.optimize needs a study stored in a dasktune.DaskStorage, not "
            f"{type(storage).__name__}: create it with optuna.create_study(storage="
            "dasktune.DaskStorage(), ...), or copy it there with optuna.copy_study(..., "
            "to_storage=dasktune.DaskStorage())."
        )
    return storage
