"""How :class:`~dasktune.ParallelSampler` chooses the way each trial is sampled: pure
functions of plain data, with no study, no cluster and no clock, so that every rule can be
tested on a made-up study state.

The rules, in the order they are applied (:func:`choose`), and the evidence for them
(``benchmarks/results/parallel-samplers.md`` measures them with P trials in flight):

1. **Start-up points** while fewer than ``n_startup`` trials are complete: nothing is known
   yet, and with P trials in flight the first P trials are sampled before any result exists,
   whatever the sampler. Uniform random points keyed by the trial number stay distinct
   across processes without coordination (:mod:`dasktune.samplers.startup`).
2. **TPE when trials are cheap**: when a GP sampling would cost more than
   ``max_sampling_share`` of the median trial's duration (before any GP sampling its cost
   is taken to be ``first_sampling_seconds``), Optuna's default ``TPESampler`` (with the
   constant liar): a worker spends its time on trials, not on sampling, and the time to a
   result is TPE's. Every worker samples its own trials, so the share is of its own time.
3. **Multivariate TPE for a conditional search space** (parameters that only some trials
   suggest): Optuna's GP models only the parameters every trial has and samples the others
   at random; ``TPESampler(multivariate=True, group=True, constant_liar=True)`` models each
   group.
4. **The Gaussian process** (Optuna's ``GPSampler``, fed a view of the study by
   :mod:`dasktune.samplers.view`) otherwise, while all of these hold:

   - PyTorch and SciPy are installed (the GP needs both);
   - fewer than ``max_gp_trials`` are complete (the GP's cost grows as the cube of that);
   - for several objectives: at most ``max_gp_objectives``, and no categorical parameter
     (OptunaHub's AutoSampler rules, which this follows there).

   With P trials in flight the GP takes the running trials into its acquisition (Optuna's
   qLogEI), so that the P trials in flight are P different bets: this is what keeps its
   result at P = 32 close to its result one trial at a time, where TPE's degrades. With
   ``local_every`` set (2 by default) and one objective, every ``local_every``-th trial
   (by number, so that as many of the trials in flight do each, in every process) is
   sampled by a **local GP** instead, in a trust region around the best trials
   (:mod:`dasktune.samplers.region`): the global GP's bets explore, the local GP's exploit,
   and with many trials in flight both are needed. Measured at P = 32 (3 seeds, median
   regret ratio to sequential TPE), half the trials local against none: Rosenbrock-10 1.5
   against 4.8 and SVR diabetes 1.7 against 3.9 (values with a heavy tail, shown capped to
   the GP in both runs, :mod:`dasktune.samplers.view`), Ackley-5 0.5 against 1.1, Hartmann-6
   1.1 against 0.02 (the one loss: the global GP alone ended within 1e-3 of the optimum on 2
   seeds of 3, the mixed one on 1; at P = 8 the mixed one does on 3 of 3, 0.0001). At P = 8
   (SVR 5 seeds, the others 3): 0.0001 / 0.45 / 0.68 / 0.0007 / 0.38 on Hartmann-6 /
   Ackley-5 / Rosenbrock-10 / GBM breast_cancer / SVR diabetes. 0 turns this off. Only
   once more trials are complete than in flight, though: until then most results of what is
   sampled now arrive after sampling ends, and exploiting a region known from a few results
   is a bad bet.
5. Otherwise **multivariate TPE** (as in 3). AutoSampler moves long multi-objective studies
   to NSGA-II instead, but Optuna's NSGA-II starts with a random generation of its own (it
   learns from no trial it did not sample), which only private internals can warm-start;
   TPE learns from every trial of the study.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import enum


#: Why a trial that the GP would sample is not: what it needs is missing.
NO_GP = "PyTorch or SciPy is not installed"


class Method(str, enum.Enum):
    """How one trial is sampled."""

    STARTUP = "start-up"
    GP = "gp"
    LOCAL_GP = "local gp"
    TPE = "tpe"
    MULTIVARIATE_TPE = "multivariate tpe"


@dataclass(frozen=True)
class StudyState:
    """What the rules look at, read from the study when a trial starts.

    Attributes:
        number: the number of the trial to sample.
        n_objectives: ``len(study.directions)``.
        constrained: whether any complete trial has constraints.
        kinds: the kinds of the parameters the complete trials have: ``"float"``,
            ``"int"``, ``"categorical"``.
        conditional: whether some parameter is in some complete trials but not in others.
        n_complete: trials in state ``COMPLETE``.
        n_running: other trials in state ``RUNNING``: how many are in flight beside this one.
        trial_seconds: the median duration of recent trials (:func:`median_duration`);
            ``None`` when none is known.
        sampling_seconds: how long this sampler's last GP sampling took; ``None`` before it
            has sampled with the GP.
        gp_installed: whether PyTorch and SciPy can be imported.
    """

    number: int = 0
    n_objectives: int = 1
    constrained: bool = False
    kinds: frozenset[str] = frozenset({"float"})
    conditional: bool = False
    n_complete: int = 0
    n_running: int = 0
    trial_seconds: float | None = None
    sampling_seconds: float | None = None
    gp_installed: bool = True


@dataclass(frozen=True)
class Limits:
    """The thresholds of the rules (see the module docstring)."""

    n_startup: int = 10
    max_sampling_share: float = 0.1
    first_sampling_seconds: float = 0.05
    max_gp_trials: int = 1000
    max_gp_trials_multi_objective: int = 250
    max_gp_objectives: int = 3
    local_every: int = 2

    def __post_init__(self) -> None:
        if self.n_startup < 1:
            raise ValueError(f"n_startup must be at least 1, got {self.n_startup}.")
        if not 0 < self.max_sampling_share:
            raise ValueError(f"max_sampling_share must be positive, got {self.max_sampling_share}.")
        if self.local_every < 0:
            raise ValueError(f"local_every must be 0 (never) or more, got {self.local_every}.")


@dataclass(frozen=True)
class Decision:
    """The method for one trial, and why (in words, for logs and tests)."""

    method: Method
    reason: str


def median_duration(finished: Sequence[float], running: Sequence[float]) -> float | None:
    """The median trial duration, from the durations of ``finished`` trials and the time
    ``running`` ones have run so far (Kaplan-Meier: a running trial will last at least that
    long). With many trials in flight the first to end are the shortest, so their median
    alone would be far too low (at P = 128, a third of the true one). When fewer than half
    the trials are known to have ended by some time, the median is beyond what was seen: the
    longest time seen, a lower bound. ``None`` when there is nothing to go on."""
    if not finished:
        return None
    at_risk, survival = len(finished) + len(running), 1.0
    # At equal times a trial that ended counts before one still running (the usual convention).
    for seconds, ended in sorted([(d, 0) for d in finished] + [(e, 1) for e in running]):
        if ended == 0:
            survival *= 1.0 - 1.0 / at_risk
            if survival <= 0.5:
                return seconds
        at_risk -= 1
    return max([*finished, *running])


def gp_affordable(state: StudyState, limits: Limits) -> bool:
    """Whether a GP sampling costs at most ``max_sampling_share`` of a trial's duration.

    An unknown trial duration counts as long: the first results decide."""
    if state.trial_seconds is None:
        return True
    cost = limits.first_sampling_seconds if state.sampling_seconds is None else state.sampling_seconds
    return cost <= limits.max_sampling_share * state.trial_seconds


def choose(state: StudyState, limits: Limits = Limits()) -> Decision:
    """The method for the next trial of a study in ``state``."""
    if state.n_complete < limits.n_startup:
        return Decision(Method.STARTUP, f"{state.n_complete} of {limits.n_startup} start-up trials complete")
    if not gp_affordable(state, limits):
        return Decision(Method.TPE, f"GP sampling ({_seconds(state.sampling_seconds, limits)}) costs more than "
                                    f"{limits.max_sampling_share:.0%} of a trial ({state.trial_seconds:.3g} s)")
    if state.conditional:
        return Decision(Method.MULTIVARIATE_TPE, "conditional search space")
    multi = state.n_objectives > 1
    cap = limits.max_gp_trials_multi_objective if multi else limits.max_gp_trials
    why_not_gp = None
    if not state.gp_installed:
        why_not_gp = NO_GP
    elif multi and state.n_objectives > limits.max_gp_objectives:
        why_not_gp = f"more than {limits.max_gp_objectives} objectives"
    elif multi and "categorical" in state.kinds:
        why_not_gp = "several objectives and a categorical parameter"
    elif state.n_complete >= cap:
        why_not_gp = f"{state.n_complete} complete trials, at least {cap}"
    if why_not_gp is not None:
        return Decision(Method.MULTIVARIATE_TPE, why_not_gp)
    pending = f", {state.n_running} in flight" if state.n_running else ""
    # Exploit locally only once more results are in than trials in flight: before that
    # (at P = 128 and N = 200, throughout), the trials sampled will mostly not have ended
    # when the last one is sampled, and a batch that explores is worth more.
    if (not multi and limits.local_every and state.number % limits.local_every == 0
            and state.n_complete > state.n_running):
        return Decision(Method.LOCAL_GP, f"trial {state.number} of every {limits.local_every}: trust region{pending}")
    return Decision(Method.GP, f"{state.n_complete} complete trials{pending}")


def _seconds(measured: float | None, limits: Limits) -> str:
    if measured is None:
        return f"about {limits.first_sampling_seconds:.3g} s, not yet measured"
    return f"{measured:.3g} s"
