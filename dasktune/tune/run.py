"""``tune.run``: FLAML's run-style API, built on ``dasktune.optimize``."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import contextlib
import os
from typing import Any
import uuid
import warnings
import weakref

from distributed import Client
from distributed import get_client
import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune.samplers import ParallelSampler
from dasktune.storage import DaskStorage
from dasktune.storage.wire import FAIL_REASON
from dasktune.submit import optimize
from dasktune.tune import reporting
from dasktune.tune.analysis import Constraint
from dasktune.tune.analysis import ExperimentAnalysis
from dasktune.tune.analysis import OPERATORS
from dasktune.tune.space import SearchSpace
from dasktune.tune.typed import domains
from dasktune.tune.typed import is_typed_space

#: Why a trial was not run: its config broke a config constraint (a user attr).
INFEASIBLE = "dasktune:infeasible"


class Trainable:
    """The Optuna objective ``tune.run`` gives ``dasktune.optimize``: sample a config,
    skip it if infeasible, run the training function, and return its metric."""

    def __init__(
        self,
        training_function: Callable[[Any], Any],
        space: SearchSpace,
        typed: type | None,
        metric: str,
        prune_attr: str | None,
        early_stopping: bool,
        config_constraints: Sequence[Constraint],
    ) -> None:
        self.training_function, self.space, self.typed = training_function, space, typed
        self.metric, self.prune_attr, self.early_stopping = metric, prune_attr, early_stopping
        self.config_constraints = list(config_constraints)

    def build(self, config: dict[str, Any]) -> Any:
        return self.typed(**config) if self.typed is not None else config

    def __call__(self, trial: optuna.Trial) -> float:
        config = self.space.sample(trial)
        for func, op, bound in self.config_constraints:
            value = func(self.build(config))
            if not OPERATORS[op](value, bound):
                reason = f"{getattr(func, '__name__', func)}(config) = {value!r}, not {op} {bound!r}"
                trial.set_user_attr(INFEASIBLE, reason)
                raise optuna.TrialPruned(f"infeasible config, not run: {reason}")
        session = reporting.Session(trial, self.metric, self.prune_attr, self.early_stopping)
        reporting.activate(session)
        try:
            returned = self.training_function(self.build(config))
        except optuna.TrialPruned:
            trial.set_user_attr(reporting.RESULT, session.last_result)
            raise
        finally:
            reporting.activate(None)
        result = session.last_result
        if isinstance(returned, Mapping):
            result = {k: reporting.plain(v) for k, v in returned.items()}
        elif returned is not None:
            result = {**result, self.metric: reporting.plain(returned)}
        trial.set_user_attr(reporting.RESULT, result)
        return metric_value(result, self.metric)


def metric_value(result: Mapping[str, Any], metric: str) -> float:
    """The value of ``metric`` in a training function's ``result``.

    Raises:
        ValueError: ``result`` has no ``metric``, or its value is not a number; the message
            names the metrics ``result`` has.
    """
    if metric not in result and result:
        raise ValueError(
            f"metric={metric!r}: the training function reported {sorted(result)}, not "
            f"{metric!r}. Pass metric= one of those, or return / tune.report() {metric!r}."
        )
    if metric not in result:
        raise ValueError(
            f"metric={metric!r}: the training function reported nothing. Return a number or a "
            "dict of metrics, or call tune.report(...)."
        )
    value = result[metric]
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"metric={metric!r}: the training function gave {metric!r} = {value!r} "
            f"({type(value).__name__}), not a number. Return a number, or a dict of metrics "
            f"whose {metric!r} is a number."
        ) from None


def run(
    training_function: Callable[[Any], Any],
    config: Mapping[str, Any] | type | None = None,
    *,
    metric: str | None = None,
    mode: str | None = None,
    time_budget_s: float | None = None,
    num_samples: int = 1,
    points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
    evaluated_rewards: Sequence[float] | None = None,
    low_cost_partial_config: Mapping[str, Any] | None = None,
    cat_hp_cost: Mapping[str, Any] | None = None,
    prune_attr: str | None = None,
    min_resource: float | None = None,
    max_resource: float | None = None,
    reduction_factor: float | None = None,
    report_intermediate_result: bool = False,
    search_alg: optuna.samplers.BaseSampler | None = None,
    verbose: int = 2,
    local_dir: str | None = None,
    config_constraints: Sequence[Constraint] | None = None,
    metric_constraints: Sequence[Constraint] | None = None,
    max_failure: int = 100,
    resources_per_trial: Mapping[str, float] | None = None,
    client: Client | None = None,
    name: str | None = None,
    storage: DaskStorage | None = None,
) -> ExperimentAnalysis:
    """Tune ``training_function(config)`` on the Dask cluster, as FLAML's ``tune.run``.

    Every argument means what it means in FLAML; the README's ``tune.run`` section has the
    table of how each maps onto Optuna and ``dasktune.optimize`` (and which are accepted
    only for compatibility). The trials run through :func:`dasktune.optimize`, so fault
    tolerance, durability and the Tuning page apply.

    Returns:
        An :class:`~dasktune.tune.analysis.ExperimentAnalysis` of the study's trials.

    Raises:
        ValueError: An argument is invalid (the message names it), or a domain of
            ``config`` is (naming its key); or, when the first such trial ends, a trial's
            result has no ``metric`` or a value of it that is not a number (naming the
            metrics it reported). Its trials stay in the study.
        RuntimeError: ``max_failure`` consecutive trials failed; the message has the last
            error.
    """
    metric, mode = metric or "_metric", mode or "min"
    points = [dict(p) for p in points_to_evaluate or ()]
    _check_arguments(
        training_function, mode, num_samples, time_budget_s, points, evaluated_rewards,
        (("config_constraints", config_constraints), ("metric_constraints", metric_constraints)),
        max_failure, cat_hp_cost,
    )
    typed = config if isinstance(config, type) and is_typed_space(config) else None
    if typed is None and config is not None and not isinstance(config, Mapping):
        raise TypeError(
            f"config must be a dict of domains and constants or a @typed_space class, not {config!r}."
        )
    space = SearchSpace(domains(typed) if typed is not None else dict(config or {}))  # type: ignore[arg-type]
    early_stopping = bool(report_intermediate_result or prune_attr or min_resource or max_resource or reduction_factor)
    trainable = Trainable(
        training_function, space, typed, metric, prune_attr, early_stopping, config_constraints or ()
    )

    if storage is None:
        url = None
        if local_dir is not None:
            os.makedirs(local_dir, exist_ok=True)
            url = f"journal://{os.path.abspath(os.path.join(local_dir, (name or 'tune') + '.log'))}"
        storage = _default_storage(client or get_client(), url)
    study = optuna.create_study(
        storage=storage,
        study_name=name or ("tune" if local_dir is not None else f"tune-{uuid.uuid4().hex[:8]}"),
        direction="minimize" if mode == "min" else "maximize",
        sampler=search_alg or ParallelSampler(),
        pruner=_pruner(early_stopping, min_resource, max_resource, reduction_factor),
        load_if_exists=True,
    )
    if not study.get_trials(deepcopy=False):  # a study resumed keeps what it has
        _seed(study, space, metric, points, evaluated_rewards, low_cost_partial_config)

    failures = _Failures(metric, max_failure)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose >= 2 else optuna.logging.WARNING)
    try:
        optimize(
            study,
            trainable,
            n_trials=None if num_samples == -1 else num_samples,
            timeout=time_budget_s,
            client=client,
            callbacks=[failures],
            catch=(Exception,),
            show_progress_bar=verbose >= 1,
            resources=resources_per_trial,
        )
    finally:
        optuna.logging.set_verbosity(level)
    if failures.error is not None:
        raise failures.error

    def config_of(trial: FrozenTrial) -> Any:
        with contextlib.suppress(ValueError):  # a trial that failed before it was sampled
            return trainable.build(space.sample(optuna.trial.FixedTrial(trial.params)))
        return None

    return ExperimentAnalysis(study, metric, mode, config_of, metric_constraints or ())


def _check_arguments(
    training_function: Callable[[Any], Any],
    mode: str,
    num_samples: int,
    time_budget_s: float | None,
    points: Sequence[Mapping[str, Any]],
    evaluated_rewards: Sequence[float] | None,
    constraint_lists: Sequence[tuple[str, Sequence[Constraint] | None]],
    max_failure: int,
    cat_hp_cost: Mapping[str, Any] | None,
) -> None:
    """Refuse, before anything starts, the arguments of :func:`run` that cannot work."""
    if not callable(training_function):
        raise TypeError(f"training_function must be callable, not {type(training_function).__name__}.")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', not {mode!r}.")
    if not isinstance(num_samples, int) or not (num_samples == -1 or num_samples >= 1):
        raise ValueError(f"num_samples must be a positive int, or -1 with time_budget_s, not {num_samples!r}.")
    if num_samples == -1 and time_budget_s is None:
        raise ValueError("num_samples=-1 runs until time_budget_s is spent: pass time_budget_s too.")
    if evaluated_rewards is not None and len(evaluated_rewards) != len(points):
        raise ValueError(
            f"evaluated_rewards has {len(evaluated_rewards)} values for {len(points)} "
            "points_to_evaluate: give one reward per point."
        )
    for kind, constraints in constraint_lists:
        for constraint in constraints or ():
            if len(constraint) != 3 or constraint[1] not in OPERATORS:
                raise ValueError(
                    f"{kind} entries are (what, op, bound) with op one of {sorted(OPERATORS)}, "
                    f"not {constraint!r}."
                )
    if not isinstance(max_failure, int) or max_failure < 1:
        raise ValueError(f"max_failure must be a positive int, not {max_failure!r}.")
    if cat_hp_cost:
        warnings.warn(
            "tune.run: cat_hp_cost is FLAML's cost model for BlendSearch; Optuna's samplers "
            "do not use it and it is ignored.",
            stacklevel=3,
        )


def _seed(
    study: optuna.Study,
    space: SearchSpace,
    metric: str,
    points: Sequence[Mapping[str, Any]],
    evaluated_rewards: Sequence[float] | None,
    low_cost_partial_config: Mapping[str, Any] | None,
) -> None:
    """A new study's first trials, as FLAML starts: the low-cost configuration, then the
    given points (already evaluated ones added as finished trials with their rewards)."""
    if low_cost_partial_config:
        study.enqueue_trial(space.to_params(low_cost_partial_config))
    if evaluated_rewards is None:
        for point in points:
            study.enqueue_trial(space.to_params(point))
        return
    for point, reward in zip(points, evaluated_rewards):
        fixed = optuna.trial.FixedTrial(space.to_params(point))
        space.sample(fixed)  # records the distributions of the point's parameters
        study.add_trial(optuna.trial.create_trial(
            params=fixed.params, distributions=fixed.distributions, value=float(reward),
            user_attrs={reporting.RESULT: {metric: float(reward)}},
        ))


def _pruner(
    early_stopping: bool,
    min_resource: float | None,
    max_resource: float | None,
    reduction_factor: float | None,
) -> optuna.pruners.BasePruner:
    """Successive halving (asynchronous, as ASHA) on the reported steps; Hyperband when
    both resource bounds are known."""
    if not early_stopping:
        return optuna.pruners.NopPruner()
    factor = int(reduction_factor or 4)
    if min_resource is not None and max_resource is not None:
        return optuna.pruners.HyperbandPruner(
            min_resource=int(min_resource), max_resource=int(max_resource), reduction_factor=factor
        )
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=int(min_resource) if min_resource is not None else "auto",
        reduction_factor=factor,
    )


class _Failures:
    """Stops the study on failures that would go on: at the first trial whose result has
    no usable ``metric`` (every trial would fail alike), or after ``limit`` failed trials
    in a row (FLAML's ``max_failure``). ``error`` is then what ``tune.run`` raises."""

    def __init__(self, metric: str, limit: int) -> None:
        self.metric, self.limit, self.count = metric, limit, 0
        self.error: Exception | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.FAIL:
            self.count = 0
            return
        self.count += 1
        if self.error is not None:
            return
        result = trial.user_attrs.get(reporting.RESULT)  # set only once the function returned
        if result is not None:
            try:
                metric_value(result, self.metric)
            except ValueError as e:
                self.error = ValueError(f"tune.run stopped at trial #{trial.number}: {e}")
        if self.error is None and self.count >= self.limit:
            reason = trial.system_attrs.get(FAIL_REASON, "unknown error")
            self.error = RuntimeError(
                f"tune.run stopped after {self.limit} consecutive failed trials; the last one "
                f"(#{trial.number}) failed with: {reason}"
            )
        if self.error is not None:
            study.stop()


#: The storage ``tune.run`` keeps its studies in when given none, one per client and URL: a
#: notebook that calls it a thousand times opens one storage on the scheduler, not a
#: thousand, and the scheduler drops it when the client leaves.
_storages: weakref.WeakKeyDictionary[Client, dict[str | None, DaskStorage]] = (
    weakref.WeakKeyDictionary()
)


def _default_storage(client: Client, url: str | None) -> DaskStorage:
    # Each storage refers to its client, so the weak keys alone never let go of one:
    # clients that closed are dropped here.
    for closed in [c for c in _storages if c.status in ("closing", "closed")]:
        del _storages[closed]
    by_url = _storages.setdefault(client, {})
    if url not in by_url:
        by_url[url] = DaskStorage(url, client=client)
    return by_url[url]
