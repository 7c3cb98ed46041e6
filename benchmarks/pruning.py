"""Pruning at P trials at once (issue 29): does stopping bad trials early keep its value
when many trials run together?

``python -m benchmarks pruning [--seeds N] [--levels 1,8,32] [--problems ...] [--out DIR]``
runs real ``dasktune.optimize`` on the learning-curve problems of :mod:`benchmarks.curves`.
Each trial reports its curve step by step (steps ``1 .. 27``), sleeping a simulated step
duration before each report, and asks ``trial.should_prune()`` after each. For each problem,
seed and P, it runs:

- ``none``: ``NopPruner()``;
- ``median``: ``MedianPruner()``;
- ``SHA``: ``SuccessiveHalvingPruner()``;
- ``Hyperband``: ``HyperbandPruner()``.

Each is set up with Optuna's defaults, as a user would. ``SHA`` and ``Hyperband`` run twice:
once as Optuna alone would run them (their resources ``"auto"``, learnt from the first trial
to complete), and once with ``optimize(max_resource=27)``, dasktune's fix for the first wave
(:mod:`dasktune.submit.pruning`). The sampler is ``RandomSampler(seed)`` everywhere, as in
the ASHA paper, so that the figures are the pruner's alone, not those of a sampler that
learns worse with many trials in flight (issue 25).

The clock and the budget:

- A step sleeps ``d = P x STEP_MS`` milliseconds, so that every P asks the scheduler for the
  same number of decisions per second (about 400 on these 2 cores). Figures are therefore
  given in *trial lengths*, the time of one trial that runs all 27 steps (``27 d``); with
  that unit P = 8 and P = 32 are comparable.
- The budget is the same number of steps for every run, :data:`BUDGET_STEPS` (128 trials'
  worth). At P > 1 it is a ``timeout`` of ``BUDGET_STEPS x d / P`` seconds (P runners
  stepping without pause spend it); the steps actually spent are reported.
- At P = 1, one runner, no sleep: the clock is virtual, each step counts ``d``, and the run
  stops (``study.stop()`` in a callback) once the budget is spent. Sequential pruning
  decisions do not depend on time, so this is what the run would do with real steps, minus
  dasktune's own time per step, which the P > 1 runs include.

Reported per problem, pruner and P (median over seeds, with a bootstrap range):

- the time to the target: the end of the first trial that COMPLETEs with a final value at
  or below the problem's target (:func:`target`: the 98th percentile of the final
  values of the problem's configurations), in trial lengths; not reached counts as
  infinite;
- the speed-up over no pruning at the same P, and its ratio to the same pruner's speed-up at
  P = 1 (the issue asks >= 0.9);
- the share of steps saved: 1 - steps per trial / 27;
- the share of the first wave pruned before its last step (the first P trials; at P = 1,
  the first 32), and the share of their steps they ran: pruned after the first trial
  completed, a first-wave trial was still pruned, but had run most of its steps;
- the final regret: best final value within the budget minus the problem's best.

The P = 32 runs also record every pruning decision (Dask config
``distributed.dasktune.record-pruning``); :func:`dasktune.submit.pruning.replay` checks a
sample of them against the pruner's rule and measures how stale their data was.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Iterator
import contextlib
import gzip
from dataclasses import asdict
from dataclasses import dataclass
import json
import math
from pathlib import Path
import statistics
import time
import warnings

import dask
from distributed import Client
from distributed import LocalCluster
import numpy as np
import optuna

import dasktune
from benchmarks.curves import PROBLEMS
from dasktune import compat
from dasktune.submit import pruning

#: Milliseconds of a simulated step per trial in flight (d = P x STEP_MS).
STEP_MS = 2.5
#: The steps every run may spend: 128 trials run to their end.
BUDGET_STEPS = 128 * 27
#: Steps of a curve, and the max_resource dasktune's fix is given.
STEPS = 27
#: Decisions replayed per recorded run (evenly spaced): each rebuilds the study.
REPLAYED = 50
#: The pruners, as a user would set them up: (label, factory, max_resource given).
PRUNERS: list[tuple[str, Callable[[], optuna.pruners.BasePruner], int | None]] = [
    ("none", optuna.pruners.NopPruner, None),
    ("median", optuna.pruners.MedianPruner, None),
    ("SHA, Optuna alone", optuna.pruners.SuccessiveHalvingPruner, None),
    ("SHA, max_resource", optuna.pruners.SuccessiveHalvingPruner, STEPS),
    ("Hyperband, Optuna alone", optuna.pruners.HyperbandPruner, None),
    ("Hyperband, max_resource", optuna.pruners.HyperbandPruner, STEPS),
]


@dataclass
class Run:
    problem: str
    pruner: str
    p: int
    seed: int
    #: Per finished trial, in finishing order: (end time in trial lengths, final value or
    #: None if not COMPLETE, steps spent, trial number, state name).
    trials: list[tuple[float, float | None, int, int, str]]
    elapsed: float  # in trial lengths
    #: From the replay of the recorded decisions (P = 32 only).
    replayed: int = 0
    contradictions: int = 0
    differ_informed: int = 0
    staleness: list[float] | None = None


class Curve:
    """The objective: a problem's learning curve, reported step by step."""

    def __init__(self, problem: str, step_seconds: float) -> None:
        self.problem, self.step_seconds = problem, step_seconds

    def __call__(self, trial: optuna.Trial) -> float:
        problem = PROBLEMS[self.problem]
        curve = problem.curve(problem.suggest(trial))
        for step in range(1, STEPS + 1):
            if self.step_seconds:
                time.sleep(self.step_seconds)
            trial.report(float(curve[step - 1]), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(curve[-1])


class StepBudget:
    """Callback of the P = 1 runs: stop once the budget of steps is spent."""

    def __init__(self) -> None:
        self.spent = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.spent += len(trial.intermediate_values)
        if self.spent >= BUDGET_STEPS:
            study.stop()


@contextlib.contextmanager
def cluster(p: int, record: bool) -> Iterator[Client]:
    # Dask keeps the last low-level-log-length events of a topic: room for every decision.
    config = {pruning.RECORD_CONFIG: record, "distributed.admin.low-level-log-length": 4 * BUDGET_STEPS}
    with dask.config.set(config):
        with LocalCluster(n_workers=2 if p > 1 else 1, threads_per_worker=max(p // 2, 1),
                          dashboard_address=None) as c, Client(c) as client:
            yield client


def run_one(client: Client, problem: str, label: str, p: int, seed: int, record: bool) -> Run:
    _, make, max_resource = next(x for x in PRUNERS if x[0] == label)
    d = p * STEP_MS / 1000
    length = STEPS * d
    storage = dasktune.DaskStorage()
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed), pruner=make(),
                                study_name=f"{problem}-{label}-{p}-{seed}")
    began = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the first-wave warning: measured here
        if p == 1:
            dasktune.optimize(study, Curve(problem, 0.0), concurrency=1, callbacks=[StepBudget()],
                              max_resource=max_resource)
        else:
            dasktune.optimize(study, Curve(problem, d), timeout=BUDGET_STEPS * d / p, concurrency=p,
                              max_resource=max_resource)
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    rows = []
    if p == 1:  # the virtual clock: each step counts d
        clock = 0
        for t in sorted(finished, key=lambda t: t.number):
            clock += len(t.intermediate_values)
            rows.append((clock / STEPS, t.value, len(t.intermediate_values), t.number, t.state.name))
        elapsed = clock / STEPS
    else:
        for t in sorted(finished, key=lambda t: t.datetime_complete):
            end = (t.datetime_complete.timestamp() - began) / length
            rows.append((end, t.value, len(t.intermediate_values), t.number, t.state.name))
        elapsed = (time.time() - began) / length
    run = Run(problem, label, p, seed, rows, elapsed)
    if record and make is not optuna.pruners.NopPruner:
        records = [m for _, m in client.get_events(pruning.TOPIC) if m["study"] == study.study_name]
        every = max(len(records) // REPLAYED, 1)
        replayed = pruning.replay(records, study, make, max_resource, every=every)
        run.replayed = len(replayed)
        run.contradictions = int(sum(r.contradicts for r in replayed))
        run.differ_informed = int(sum(r.rule != r.informed for r in replayed))
        run.staleness = [float(r.staleness) for r in replayed]
    optuna.delete_study(study_name=study.study_name, storage=storage)
    return run


def simulate(problem: str, label: str, p: int, seed: int) -> Run:
    """The pruner's own figures at P in flight, with nothing in the way: the same run on a
    virtual clock in this process (``InMemoryStorage``), every step one unit long, P trials
    always running (a pruned or finished one is replaced at once), steps taken one at a
    time in clock order so that each decision sees every report made before it. Trials that
    start together reach their rungs together, as in the real runs. Deterministic."""
    import heapq

    _, make, max_resource = next(x for x in PRUNERS if x[0] == label)
    curves = PROBLEMS[problem]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed), pruner=make(),
                                storage=optuna.storages.InMemoryStorage(),
                                study_name=f"{problem}-{label}-{p}-{seed}")  # Hyperband's brackets hash it
    if max_resource is not None:
        compat.resolve_pruner_resources(study.pruner, max_resource)
    events: list[tuple[int, int, int]] = []  # (clock, trial number, step)
    live: dict[int, tuple[optuna.Trial, np.ndarray]] = {}
    spent, rows = 0, []

    def start(clock: int) -> None:
        trial = study.ask()
        live[trial.number] = (trial, curves.curve(curves.suggest(trial)))
        heapq.heappush(events, (clock + 1, trial.number, 1))

    for _ in range(p):
        start(0)
    while events:
        clock, number, step = heapq.heappop(events)
        trial, curve = live[number]
        spent += 1
        trial.report(float(curve[step - 1]), step)
        ended = None
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            ended = (None, "PRUNED")
        elif step == STEPS:
            study.tell(trial, float(curve[-1]))
            ended = (float(curve[-1]), "COMPLETE")
        if ended is None:
            heapq.heappush(events, (clock + 1, number, step + 1))
            continue
        del live[number]
        rows.append((clock / STEPS, ended[0], step, number, ended[1]))
        if spent < BUDGET_STEPS:
            start(clock)
    return Run(problem, label, p, seed, rows, max(r[0] for r in rows))


# -- the report ---------------------------------------------------------------------------


def target(problem: str) -> float:
    """The final value to reach: the 98th percentile of the problem's configurations."""
    return float(np.quantile(PROBLEMS[problem].finals, 0.02))


def time_to_target(run: Run, target: float) -> float:
    return min((end for end, value, *_ in run.trials if value is not None and value <= target), default=math.inf)


def steps_saved(run: Run) -> float:
    if not run.trials:
        return math.nan  # a budget spent before any trial started (a smoke run's)
    return 1 - statistics.fmean(steps for _, _, steps, _, _ in run.trials) / STEPS


def first_wave_pruned(run: Run) -> float:
    wave = 32 if run.p == 1 else run.p
    states = [state for *_, number, state in run.trials if number < wave]
    return sum(s == "PRUNED" for s in states) / wave


def first_wave_steps(run: Run) -> float:
    """Steps per trial of the first wave, as a share of a full trial's."""
    wave = 32 if run.p == 1 else run.p
    steps = [steps for _, _, steps, number, _ in run.trials if number < wave]
    return statistics.fmean(steps) / STEPS if steps else math.nan


def regret(run: Run, best: float) -> float:
    return min((value for _, value, *_ in run.trials if value is not None), default=math.inf) - best


def bootstrap(values: list[float], statistic: Callable[[np.ndarray], float] = np.median,
              n: int = 2000) -> tuple[float, float]:
    """A 90% bootstrap range of ``statistic`` over ``values`` (infinite values allowed)."""
    rng = np.random.default_rng(0)
    data = np.array(values, dtype=float)
    stats = [statistic(rng.choice(data, len(data))) for _ in range(n)]
    # Nearest order statistics: "not reached" is infinite, and interpolating to it gives NaN.
    return float(np.quantile(stats, 0.05, method="nearest")), float(np.quantile(stats, 0.95, method="nearest"))


def _cell(values: list[float], digits: int = 2) -> str:
    med = float(np.median(values))
    lo, hi = bootstrap(values)
    fmt = lambda x: "not reached" if math.isinf(x) else f"{x:.{digits}f}"  # noqa: E731
    return f"{fmt(med)} [{fmt(lo)}, {fmt(hi)}]" if len(values) > 1 else fmt(med)


def report(runs: list[Run], seeds: int, title: str = "# Pruning at P trials at once", what: str = "") -> str:
    levels = sorted({r.p for r in runs})
    lines = [
        title,
        "",
        what or (
            f"`python -m benchmarks pruning --seeds {seeds}`: real `dasktune.optimize`, RandomSampler, "
            f"budget {BUDGET_STEPS} steps ({BUDGET_STEPS // STEPS} full trials) per run, {seeds} seeds; medians with 90% "
            "bootstrap ranges. Times are in trial lengths (one trial run to its 27th step). "
            "See `benchmarks/pruning.py` for exactly what runs."
        ),
        "",
    ]
    for problem in sorted({r.problem for r in runs}):
        goal = target(problem)
        lines += [f"{title.split()[0]}# {problem} (target {goal:.4g}, best {PROBLEMS[problem].best:.4g})", "",
                  "| pruner | P | time to target | speed-up vs none | vs P = 1 | steps saved | vs P = 1 "
                  "| first wave pruned | its steps run | final regret |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for label, *_ in PRUNERS:
            for p in levels:
                mine = [r for r in runs if (r.problem, r.pruner, r.p) == (problem, label, p)]
                none = [r for r in runs if (r.problem, r.pruner, r.p) == (problem, "none", p)]
                if not mine or not none:
                    continue
                times = [time_to_target(r, goal) for r in mine]
                speed = _speedup(none, mine, goal)
                saved = statistics.median(steps_saved(r) for r in mine)
                one = [r for r in runs if (r.problem, r.pruner, r.p) == (problem, label, 1)]
                one_none = [r for r in runs if (r.problem, r.pruner, r.p) == (problem, "none", 1)]
                vs_speed = vs_saved = "-"
                if one and one_none and p != 1 and label != "none":
                    alone = _speedup(one_none, one, goal)
                    vs_speed = f"{speed / alone:.2f}" if alone > 0 else "-"
                    one_saved = statistics.median(steps_saved(r) for r in one)
                    vs_saved = f"{saved / one_saved:.2f}" if one_saved > 0 else "-"
                wave = statistics.median(first_wave_pruned(r) for r in mine)
                wave_steps = statistics.median(first_wave_steps(r) for r in mine)
                regrets = [regret(r, PROBLEMS[problem].best) for r in mine]
                lines.append(
                    f"| {label} | {p} | {_cell(times)} | {speed:.2f} | {vs_speed} | {saved:.0%} | {vs_saved} "
                    f"| {wave:.0%} | {wave_steps:.0%} | {_cell(regrets, 4)} |"
                )
        lines.append("")
    recorded = [r for r in runs if r.staleness]
    if recorded:
        stale = [s for r in recorded for s in r.staleness or ()]
        lines += [
            f"{title.split()[0]}# Replay of the recorded decisions (P = 32)",
            "",
            f"{sum(r.replayed for r in recorded)} decisions replayed from {len(recorded)} runs: "
            f"{sum(r.contradictions for r in recorded)} contradict the pruner's rule on the data it was given; "
            f"{sum(r.differ_informed for r in recorded)} would have gone the other way with every report made "
            f"anywhere by then. Staleness of a decision's data (age of the oldest report it missed, 0 if none): "
            f"median {statistics.median(stale) * 1000:.1f} ms, 90th percentile "
            f"{float(np.quantile(stale, 0.9)) * 1000:.1f} ms, max {max(stale) * 1000:.1f} ms; "
            f"{sum(s > 0 for s in stale) / len(stale):.0%} of decisions missed a report.",
            "",
        ]
    return "\n".join(lines)


def _speedup(none: list[Run], mine: list[Run], target: float) -> float:
    """Median time to target without pruning over the same with it (seeds paired by median)."""
    a = statistics.median(time_to_target(r, target) for r in none)
    b = statistics.median(time_to_target(r, target) for r in mine)
    if math.isinf(b):
        return 0.0
    return a / b


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = sorted({r.problem for r in runs})
    levels = sorted({r.p for r in runs})
    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 4), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        goal = target(problem)
        for label, *_ in PRUNERS:
            ys = [statistics.median(time_to_target(r, goal) for r in runs
                                    if (r.problem, r.pruner, r.p) == (problem, label, p)) for p in levels]
            ax.plot(levels, [y if math.isfinite(y) else np.nan for y in ys], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(p) for p in levels])
        ax.set_xlabel("trials at once (P)")
        ax.set_ylabel("time to target (trial lengths)")
        ax.set_title(problem)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _load(raw: Path) -> list[Run]:
    """The runs saved in ``raw``, or in its gzipped copy (what is committed: the real runs;
    the model's are remade by the command, deterministically)."""
    packed = raw.with_name(raw.name + ".gz")
    if raw.exists():
        text = raw.read_text()
    elif packed.exists():
        text = gzip.decompress(packed.read_bytes()).decode()
    else:
        return []
    return [Run(**json.loads(line)) for line in text.splitlines()]


def main(argv: list[str] | None = None) -> None:
    global BUDGET_STEPS  # a smoke run's budget is smaller
    parser = argparse.ArgumentParser(prog="python -m benchmarks pruning", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--problems", type=lambda s: s.split(","), default=list(PROBLEMS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pruning")
    parser.add_argument("--report-only", action="store_true", help="remake the report from the raw runs")
    parser.add_argument("--budget-trials", type=int, default=BUDGET_STEPS // STEPS,
                        help="the budget of every run, in full trials' steps (a smoke run: a few)")
    parser.add_argument("--model-seeds", type=int, default=0,
                        help="also the virtual-clock model of the pruners alone, over this many seeds")
    args = parser.parse_args(argv)
    BUDGET_STEPS = args.budget_trials * STEPS
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "pruning-runs.jsonl"
    runs = _load(raw)
    done = {(r.problem, r.pruner, r.p, r.seed) for r in runs}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    began = time.time()
    model_raw = args.out / "pruning-model-runs.jsonl"
    model = _load(model_raw)
    if args.model_seeds and not args.report_only:
        modelled = {(r.problem, r.pruner, r.p, r.seed) for r in model}
        for p in args.levels:
            for seed in range(args.model_seeds):
                for problem in args.problems:
                    for label, *_ in PRUNERS:
                        if (problem, label, p, seed) not in modelled:
                            model.append(simulate(problem, label, p, seed))
                            with model_raw.open("a") as f:
                                f.write(json.dumps(asdict(model[-1])) + "\n")
            print(f"[{time.time() - began:6.0f} s] model P={p} done", flush=True)
    if not args.report_only:
        for p in args.levels:
            with cluster(p, record=p == 32) as client:
                for seed in range(args.seeds):
                    for problem in args.problems:
                        for label, *_ in PRUNERS:
                            if (problem, label, p, seed) in done:
                                continue
                            run = run_one(client, problem, label, p, seed, record=p == 32)
                            runs.append(run)
                            with raw.open("a") as f:
                                f.write(json.dumps(asdict(run)) + "\n")
                            print(f"[{time.time() - began:6.0f} s] P={p} seed={seed} {problem} {label}: "
                                  f"{len(run.trials)} trials, ttt {time_to_target(run, target(problem)):.2f}",
                                  flush=True)
    text = report(runs, args.seeds)
    if model:
        n = len({r.seed for r in model})
        text += "\n" + report(model, n, "## The pruners alone at P in flight (virtual clock)", (
            f"`python -m benchmarks pruning --model-seeds {n}`: the same problems, pruners and budget, "
            f"{n} seeds, on a virtual clock in one process (:func:`benchmarks.pruning.simulate`): P trials "
            "always running, each step one unit, every decision made on every report made before it. "
            "What the pruners give at P with nothing in the way; the real runs above add dasktune."))
    (args.out / "pruning.md").write_text(text)
    plot(runs, args.out / "pruning.png")
    print(text)


if __name__ == "__main__":
    main()
