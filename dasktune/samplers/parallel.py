"""``ParallelSampler``: one Optuna sampler that chooses, trial by trial, how to sample for
the number of trials in flight, the search space and what sampling costs next to a trial.

The choice is made when a trial starts (``before_trial``) by the pure rules of
:mod:`dasktune.samplers.rules`, from a :class:`~dasktune.samplers.rules.StudyState` read here
from the study; the trial is then sampled by the method chosen: a start-up point
(:mod:`dasktune.samplers.startup`), Optuna's ``GPSampler`` on a view of the study
(:mod:`dasktune.samplers.view`), globally or in a trust region
(:mod:`dasktune.samplers.region`), or Optuna's ``TPESampler``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from collections.abc import Sequence
from datetime import datetime
import importlib
import importlib.util
import math
import sys
import threading
import time
from typing import Any
import warnings

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune.samplers import region
from dasktune.samplers import startup
from dasktune.samplers import view
from dasktune.samplers.rules import choose
from dasktune.samplers.rules import Decision
from dasktune.samplers.rules import Limits
from dasktune.samplers.rules import median_duration
from dasktune.samplers.rules import Method
from dasktune.samplers.rules import NO_GP
from dasktune.samplers.rules import StudyState

_logger = optuna.logging.get_logger("optuna.dasktune")

#: How many of the latest complete trials tell whether the study has constraints.
_RECENT = 25
#: How many of the latest trials give the typical trial duration.
_WINDOW = 200
#: At most this many other samplings at the same moment are made room for (each costs one more GP sampling).
_MAX_BLIND = 3

ConstraintsFunc = Callable[[FrozenTrial], Sequence[float]]

_warned_lock = threading.Lock()
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    """A warning once per process (every runner of a cluster has its own process)."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, UserWarning, stacklevel=3)


def gp_installed() -> bool:
    """Whether Optuna's ``GPSampler`` can sample here: it needs PyTorch and SciPy. Looked
    up without importing them (PyTorch takes seconds to import)."""
    for name in ("torch", "scipy"):
        if name in sys.modules:
            if sys.modules[name] is None:  # made unimportable on purpose
                return False
            continue
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


class ParallelSampler(BaseSampler):
    """A sampler that chooses, for each trial, how to sample it, from the number of trials
    in flight, the search space, the objectives and constraints, and what a sample costs
    next to a trial.

    Made for many trials at once (``dasktune.optimize(..., concurrency=P)``), where the
    running trials' parameters are known but not their results. Each trial is sampled by
    one of (the rules: :mod:`dasktune.samplers.rules`):

    - a uniform random point keyed by the trial number, until ``n_startup`` (10) trials are
      complete;
    - Optuna's ``GPSampler``, whose acquisition takes the running trials into account, while
      a sampling costs at most a tenth of a trial and fewer than 1,000 trials are complete
      (250 with several objectives). Every second trial of a single objective
      (``Limits(local_every=2)``; 0 for none) is sampled by a GP fit to, and searching, a
      trust region around the best trials instead, once more trials are complete than in
      flight;
    - Optuna's ``TPESampler(multivariate=True, group=True, constant_liar=True)``
      otherwise: conditional search spaces, cheap trials, long studies, PyTorch missing.

    Without PyTorch it warns once and samples with TPE where it would use the GP
    (``pip install "dasktune[gp]"`` installs what the GP needs). Which method samples each
    trial, and every change of method, is logged at DEBUG level by the ``optuna.dasktune``
    logger (every runner's copy logs its own: at INFO they would fill a notebook).

    Args:
        seed:
            Seed for every random choice. With the same seed, trials sampled one at a time
            are the same, given the same choices of method (those depend on measured times
            only near the cost threshold). ``reseed_rng`` (which ``dasktune.optimize``
            calls on every runner's copy but the first) gives a copy its own random state;
            the start-up points stay distinct across copies because they are keyed by the
            trial number.
        constraints_func:
            As Optuna's samplers' ``constraints_func``: a function of a
            :class:`~optuna.trial.FrozenTrial` returning the constraint values (feasible
            when all are ``<= 0``), evaluated after each trial. On Optuna 5, prefer
            :meth:`optuna.trial.Trial.set_constraint` in the objective; either way the
            constraints are taken into account.
        limits:
            The thresholds of the rules (:class:`~dasktune.samplers.rules.Limits`).
    """

    def __init__(
        self,
        seed: int | None = None,
        *,
        constraints_func: ConstraintsFunc | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
        self._limits = limits or Limits()
        self._rng = np.random.RandomState(self._seed)
        # Not reseeded: every copy of this sampler gives trial n the same start-up point.
        self._startup_seed = self._seed
        self._search_space = optuna.search_space.IntersectionSearchSpace()
        # Optuna's default TPE for cheap trials; multivariate, grouped TPE otherwise. Only the
        # first records constraints (after_trial); both take them into account.
        self._tpe = _tpe(self._seed + 1, constraints_func, multivariate=False)
        self._multivariate_tpe = _tpe(self._seed + 2, constraints_func, multivariate=True)
        self._shapes: dict[str, _Shape] = {}  # by study name: what its complete trials suggest
        self._gps: dict[str, BaseSampler] = {}  # "global" and "local", made when first needed
        self._gp_seed = self._seed
        self._gp_installed: bool | None = None  # checked when first needed
        # How long the last GP samplings took here: the longest of them is the cost (the
        # global GP fits more trials than the local one, and the cost grows with N).
        self._gp_seconds: collections.deque[float] = collections.deque(maxlen=4)
        self._decisions: dict[int, Decision] = {}  # by trial number, until the trial ends
        self._last_method: Method | None = None
        if not gp_installed():
            self._gp_installed = False

    # -- Optuna's sampler interface --------------------------------------------------------

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._gp_seed = int(self._rng.randint(2**31))  # for a GP this copy has yet to make
        self._tpe.reseed_rng()
        self._multivariate_tpe.reseed_rng()
        for gp in self._gps.values():
            gp.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        decision = choose(self._state(study, trial), self._limits)
        if decision.method in _GP and not self._gp_ready():
            decision = Decision(Method.MULTIVARIATE_TPE, NO_GP)
        elif decision.reason == NO_GP:
            _warn_once("gp", _NO_GP)  # the GP is wanted now, not before (cheap trials never want it)
        self._decisions[trial.number] = decision
        _logger.debug(f"Trial {trial.number}: {decision.method.value} ({decision.reason}).")
        if decision.method != self._last_method:
            self._last_method = decision.method
            _logger.debug(f"ParallelSampler samples with {_NAMES[decision.method]} from trial "
                         f"{trial.number} on: {decision.reason}.")
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        method = self._method(trial)
        if method in _TPE:
            return self._tpe_for(method).infer_relative_search_space(study, trial)
        if method in _GP:
            return {name: d for name, d in self._search_space.calculate(study).items() if not d.single()}
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        method = self._method(trial)
        if method in _TPE:
            return self._tpe_for(method).sample_relative(study, trial, search_space)
        if method in _GP:
            return self._sample_gp(study, trial, search_space, local=method == Method.LOCAL_GP)
        return {}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if self._method(trial) == Method.STARTUP:
            # The i-th parameter a trial suggests is dimension i of its point.
            return startup.point(self._startup_seed, trial.number, len(trial.params), param_distribution)
        # TPE's own, or a parameter outside the GP's search space (new in this trial).
        method = self._method(trial)
        return self._tpe_for(method if method in _TPE else Method.MULTIVARIATE_TPE).sample_independent(
            study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._decisions.pop(trial.number, None)
        # TPE records the constraints (constraints_func), once, whichever method sampled.
        self._tpe.after_trial(study, trial, state, values)

    # -- Pickling: dasktune sends the sampler to every runner --------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_decisions"] = {}  # the trials this process is sampling, not the copy's
        state["_shapes"] = {}  # a cache, rebuilt from the study
        return state

    # -- The choice --------------------------------------------------------------------------

    def _method(self, trial: FrozenTrial) -> Method:
        decision = self._decisions.get(trial.number)
        return Method.TPE if decision is None else decision.method

    def _tpe_for(self, method: Method) -> BaseSampler:
        return self._multivariate_tpe if method == Method.MULTIVARIATE_TPE else self._tpe

    def _gp_ready(self) -> bool:
        if self._gp_installed is None:
            self._gp_installed = gp_installed()
        if not self._gp_installed:
            _warn_once("gp", _NO_GP)
        return self._gp_installed

    def _state(self, study: Study, trial: FrozenTrial) -> StudyState:
        trials = study.get_trials(deepcopy=False)
        shape = self._shapes.setdefault(study.study_name, _Shape())
        complete: list[FrozenTrial] = []
        n_running = 0
        for t in trials:
            if t.state == TrialState.COMPLETE:
                complete.append(t)
                shape.add(t)
            elif t.state == TrialState.RUNNING and t.number != trial.number:
                n_running += 1
        return StudyState(
            number=trial.number,
            n_objectives=len(study.directions),
            constrained=any(view.constraint_values(t) is not None for t in complete[-_RECENT:]),
            kinds=frozenset(shape.kinds),
            conditional=len(shape.spaces) > 1,
            n_complete=len(complete),
            n_running=n_running,
            trial_seconds=_trial_seconds(trials),
            sampling_seconds=max(self._gp_seconds) if self._gp_seconds else None,
            gp_installed=self._gp_installed is not False,
        )

    # -- The GP ------------------------------------------------------------------------------

    def _sample_gp(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution],
                   local: bool) -> dict[str, Any]:
        """The GP's point for ``trial``: the global GP's, or with ``local`` the point of a
        GP fit to the trust region around the best trials and searching it (the global GP's
        when the region is the whole space or holds too few trials).

        With one objective the GP always samples on a copy of the study
        (:func:`dasktune.samplers.view.model_study`), which shows it a heavy tail of bad values
        capped at their median: on the study itself, one diverging trial of the SVR problem
        flattened every other value to noise and the GP stalled there (ratio 9.5 to
        sequential TPE at 8 in flight, 1.05 with the cap).

        Trials with a lower number that are running but have no parameters yet are being
        sampled by other processes at this moment, from the same results: each would get
        the GP's best point, the same for all. So, ranked by number, the k-th of them (up to
        ``_MAX_BLIND``) takes the k-th point of the greedy batch: the GP's point is taken as
        running and the GP samples again, k times. The first sampler of such a group pays
        nothing; where no two samplings overlap (trials long next to a sampling) nobody does."""
        try:
            importlib.import_module("torch")  # its first import takes seconds: not a sampling's cost
        except ImportError:  # found but broken: sample with TPE from now on
            self._gp_installed = False
            _warn_once("gp", _NO_GP)
            self._decisions[trial.number] = Decision(Method.MULTIVARIATE_TPE, "PyTorch cannot be imported")
            tpe = self._multivariate_tpe
            return tpe.sample_relative(study, trial, tpe.infer_relative_search_space(study, trial))
        # The cost is this thread's CPU time: what the sampling itself takes on a core of its
        # own, whatever else the machine runs meanwhile (a loaded machine doubles wall time).
        began = time.thread_time()
        region = self._trust_region(study, search_space) if local else None
        constrained = any(view.constraint_values(t) is not None
                          for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        gp = self._gp_sampler(local=region is not None, constrained=constrained)
        space = search_space if region is None else region
        blind = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    if t.number < trial.number and not search_space.keys() <= t.params.keys())
        assumed: list[dict[str, Any]] = []
        if region is None and not blind and not constrained and view.GP_MODELS_RUNNING and len(study.directions) > 1:
            # Optuna's GP on the study itself: it models the running trials as they are, and
            # a copy would show it nothing else (several objectives are never capped).
            assumed.append(gp.sample_relative(study, trial, space))
        else:
            for _ in range(min(blind, _MAX_BLIND) + 1):
                copied, copied_trial = view.model_study(study, trial, search_space, gp, assumed, region)
                assumed.append(gp.sample_relative(copied, copied_trial, space))
        params = self._distinct(study, trial, search_space, assumed[-1])
        self._gp_seconds.append((time.thread_time() - began) / len(assumed))
        return params

    def _trust_region(self, study: Study, search_space: dict[str, BaseDistribution]) -> dict[str, BaseDistribution] | None:
        """The trust region around the best (feasible) complete trials, if there is one."""
        sign = -1.0 if study.directions[0] == StudyDirection.MAXIMIZE else 1.0
        ranked = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            constraints = view.constraint_values(t)
            if search_space.keys() <= t.params.keys() and (constraints is None or max(constraints) <= 0.0):
                value = sign * float(t.values[0])
                if math.isfinite(value):
                    ranked.append((value, t.number, t.params))
        ranked.sort(key=lambda row: (row[0], row[1]))
        return region.trust_region([params for _, _, params in ranked], search_space)

    def _gp_sampler(self, local: bool, constrained: bool) -> BaseSampler:
        """The global GP, or the local one: each keeps its own kernel fit to start the next
        from, and they fit different trials."""
        # Before Optuna 5 the GP models constraints only when it has a constraints_func (the
        # view has written them: it is never called), and fails if it has one without them.
        constrained = constrained and not view.GP_READS_CONSTRAINTS
        key = ("local" if local else "global") + (" constrained" if constrained else "")
        if key not in self._gps:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                kwargs: dict[str, Any] = {"constraints_func": _constraints_written} if constrained else {}
                seed = self._gp_seed + (1 if local else 0)
                self._gps[key] = optuna.samplers.GPSampler(seed=seed, n_startup_trials=2,
                                                           warn_independent_sampling=False, **kwargs)
        return self._gps[key]

    def _distinct(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution],
                  params: dict[str, Any]) -> dict[str, Any]:
        """``params``, moved by a hair if they repeat a complete or running trial's.

        Optuna's GP can return a point it has already sampled (its acquisition search
        starts from the best trial), and a repeated point teaches nothing."""
        if not params or search_space.keys() - params.keys():
            return params
        taken = {view.to_internal(t.params, search_space)
                 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                 if t.number != trial.number and search_space.keys() <= t.params.keys()}
        if view.to_internal(params, search_space) not in taken:
            return params
        moved = dict(params)
        for name, distribution in search_space.items():
            if isinstance(distribution, FloatDistribution) and distribution.step is None:
                moved[name] = _nudge(params[name], distribution, self._rng)
        return moved


def _nudge(value: float, distribution: FloatDistribution, rng: np.random.RandomState) -> float:
    """``value`` moved by about a thousandth of the range (of its logarithm on a log scale),
    inwards from a bound (where the GP's acquisition search often stops)."""
    low, high = distribution.low, distribution.high
    if distribution.log:
        low, high, value = math.log(low), math.log(high), math.log(value)
    step = abs(rng.normal(0.0, 1e-3)) * (high - low)
    direction = -1.0 if value >= high else 1.0 if value <= low else rng.choice([-1.0, 1.0])
    moved = float(np.clip(value + direction * step, low, high))
    return math.exp(moved) if distribution.log else moved


class _Shape:
    """The parameter names and kinds the complete trials of a study have, kept up to date
    one new trial at a time (reading them all again for every trial is quadratic)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.spaces: set[frozenset[str]] = set()
        self.kinds: set[str] = set()

    def add(self, trial: FrozenTrial) -> None:
        if trial.number not in self.seen:
            self.seen.add(trial.number)
            self.spaces.add(frozenset(trial.distributions))
            self.kinds.update(_kind(d) for d in trial.distributions.values())


def _trial_seconds(trials: list[FrozenTrial]) -> float | None:
    """The median duration of the latest ``_WINDOW`` trials, those running counted as lasting
    at least until now: the latest time any trial started or ended (the clock of the
    trials' own datetimes, which is what a simulation of long trials sets too)."""
    spans: list[tuple[datetime, datetime | None, bool]] = [
        (t.datetime_start, t.datetime_complete, t.state == TrialState.COMPLETE)
        for t in trials[-_WINDOW:] if t.datetime_start is not None]
    if not spans:
        return None
    now = max(end or start for start, end, _ in spans)
    finished = [(end - start).total_seconds() for start, end, complete in spans if complete and end is not None]
    running = [(now - start).total_seconds() for start, end, _ in spans if end is None]
    return median_duration(finished, running)


def _kind(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return "categorical"
    if isinstance(distribution, IntDistribution):
        return "int"
    return "float"


def _constraints_written(trial: FrozenTrial) -> Sequence[float]:
    raise AssertionError("The GP's copy of the study has its constraints written already.")


def _tpe(seed: int, constraints_func: ConstraintsFunc | None, multivariate: bool) -> optuna.samplers.TPESampler:
    kwargs: dict[str, Any] = {}
    if not view.GP_MODELS_RUNNING:  # deprecated (and always quiet) from Optuna 4.9
        kwargs["warn_independent_sampling"] = False
    if multivariate:
        kwargs.update(multivariate=True, group=True)
    with warnings.catch_warnings():
        # multivariate, group and (before Optuna 5) constant_liar are experimental options.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constraints_func: deprecated in Optuna 5 (FutureWarning), the only way before.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, constraints_func=constraints_func, **kwargs)


_GP = (Method.GP, Method.LOCAL_GP)
_TPE = (Method.TPE, Method.MULTIVARIATE_TPE)
_NAMES = {Method.STARTUP: "start-up points", Method.GP: "a Gaussian process",
          Method.LOCAL_GP: "a Gaussian process in a trust region", Method.TPE: "TPE",
          Method.MULTIVARIATE_TPE: "multivariate TPE"}

_NO_GP = ("ParallelSampler: PyTorch or SciPy is not installed, so it samples with TPE where it "
          "would use a Gaussian process, which gives up more to many trials in flight. "
          'Install them with `pip install "dasktune[gp]"`.')
