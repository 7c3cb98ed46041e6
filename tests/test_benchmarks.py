"""The benchmark suite runs end to end (``--quick``) and writes its report: a smoke test
that it keeps working, not a test of any figure (speed is measured, never asserted)."""

from __future__ import annotations

from pathlib import Path
import re
import subprocess
import sys

ROOT = Path(__file__).parent.parent


def run_benchmark(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` from the repository's root, as a user runs it; it must exit 0."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_quick_benchmark_writes_every_section(tmp_path: Path) -> None:
    done = run_benchmark("benchmarks", "--quick", "--out", str(tmp_path), timeout=300)
    report = (tmp_path / "results.md").read_text()
    for heading in ["## Floors", "## Start-up", "## Overhead", "## Growth", "## Scaling", "## Scheduler load"]:
        assert heading in report, heading
    for peer in ["optuna in-process", "seed: optuna_integration.DaskStorage", "JournalStorage, shared file",
                 "gRPC storage proxy", "dasktune.DaskStorage (submit)", "dasktune.optimize"]:
        assert f"| {peer} |" in report, peer
    assert (tmp_path / "scaling.png").read_bytes().startswith(b"\x89PNG")
    assert report in done.stdout  # printed as well as written


def test_quick_parallel_benchmark_writes_its_report(tmp_path: Path) -> None:
    done = run_benchmark("benchmarks", "parallel", "--quick", "--out", str(tmp_path), timeout=120)
    report = (tmp_path / "parallel.md").read_text()
    for heading in ["## Regret ratio at equal N", "## The sequential reference", "## Duplicate configurations",
                    "## Time to reach the sequential median result", "## Achieved concurrency",
                    "## Best-so-far per problem"]:
        assert heading in report, heading
    for config in ["optuna sequential", "optuna n_jobs threads", "optuna ask/tell, P in flight",
                   "dasktune, TPESampler(seed)", "dasktune, default sampler"]:
        assert f"| {config} |" in report, config
    assert (tmp_path / "parallel.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "parallel.json").exists() and (tmp_path / "parallel-runs.json.gz").exists()
    # The report is remade from the saved runs alone.
    again = run_benchmark("benchmarks", "parallel", "--quick", "--report-only", "--out", str(tmp_path), timeout=60)
    assert (tmp_path / "parallel.md").read_text() == report


def test_test_functions_have_their_stated_optimum() -> None:
    import numpy as np
    import optuna

    from benchmarks.problems import problem

    at = {"Hartmann-6": [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573],
          "Ackley-5": [0.0] * 5, "Rosenbrock-10": [1.0] * 10}
    for name, x in at.items():
        p = problem(name)
        assert p.continuous
        assert abs(p(optuna.trial.FixedTrial({f"x{i}": v for i, v in enumerate(x)})) - p.optimum) < 1e-12
    assert abs(problem("Hartmann-6").optimum + 3.32237) < 1e-5
    off = problem("Ackley-5")(optuna.trial.FixedTrial({f"x{i}": 1.0 for i in range(5)}))
    assert np.isclose(off, 3.6253849384403627)  # the textbook value at (1, ..., 1)


def test_grid_tables_are_exact_on_the_grid_and_interpolate_between() -> None:
    import optuna

    from benchmarks.problems import problem

    for name in ["GBM breast_cancer", "SVR diabetes"]:
        table = problem(name)
        assert not table.continuous
        best = min(table.points(), key=lambda point: table(optuna.trial.FixedTrial(point)))
        assert table(optuna.trial.FixedTrial(best)) == table.optimum
        # Halfway (in log scale) along a float axis from the best point: between its neighbours.
        axis = next(a for a in table.axes if a.kind == "float")
        i = axis.grid.index(best[axis.name])
        j = i + 1 if i + 1 < len(axis.grid) else i - 1
        middle = (axis.grid[i] * axis.grid[j]) ** 0.5
        value = table(optuna.trial.FixedTrial({**best, axis.name: middle}))
        other = table(optuna.trial.FixedTrial({**best, axis.name: axis.grid[j]}))
        assert table.optimum < value < other
        assert abs(value - (table.optimum + other) / 2) < 1e-9 * max(1.0, abs(other))


def test_simulated_durations_are_keyed_by_seed_and_trial_number() -> None:
    from benchmarks.parallel import Durations

    durations = Durations(scale=0.5)
    assert durations(3, 7) == durations(3, 7) != durations(4, 7)
    draws = [durations(0, n) for n in range(200)]
    assert 0.025 <= min(draws) < max(draws) <= 0.175
    assert draws != sorted(draws)  # trials finish out of order


def test_in_flight_peer_is_the_sequential_run_at_p_1_and_keeps_p_trials_in_flight() -> None:
    from benchmarks.parallel import Durations
    from benchmarks.parallel import in_flight
    from benchmarks.parallel import sequential
    from benchmarks.problems import problem

    durations, hartmann = Durations(scale=0.1), problem("Hartmann-6")
    one = in_flight(hartmann, 3, 1, 30, durations)
    alone = sequential(hartmann, 3, 30, durations)
    assert one.values == alone.values and one.finished == alone.finished
    # Deterministic at P > 1 too: the virtual clock decides the order results are told in.
    assert in_flight(hartmann, 3, 4, 30, durations).values == in_flight(hartmann, 3, 4, 30, durations).values
    # With every trial in flight at once, each ends after its own duration, and none waited
    # for another's result, so the sampler had nothing to learn from: all 30 are its startup's.
    everything = in_flight(hartmann, 3, 30, 30, durations)
    assert everything.finished == [round(durations(3, n), 4) for n in range(30)]
    assert everything.values[:10] == alone.values[:10]  # the sequential run's startup too ...
    assert everything.values[10:] != alone.values[10:]  # ... which then learned from its results


def test_samplers_figure_compares_each_sampler_with_sequential_tpe(tmp_path: Path) -> None:
    done = run_benchmark("benchmarks", "samplers", "--levels", "1,4", "--problems", "Ackley-5", "--seeds", "2",
                         "--trials", "20", "--out", str(tmp_path), timeout=300)
    report = (tmp_path / "parallel-samplers.md").read_text()
    # One in flight is the sequential reference itself: both ratios exactly 1.
    assert re.search(r"\| TPESampler \| 1 \| 1 \([^)]*\), 1 \|", report), report
    assert "| TPESampler | 4 |" in report
    from benchmarks.samplers import available

    usable, missing = available()
    for name in usable:
        assert f"| {name} | 4 |" in report, name
    for name, why in missing.items():
        assert f"{name}: {why}" in report


def test_samplers_figure_checks_real_optimize_runs_against_the_model(tmp_path: Path) -> None:
    run_benchmark("benchmarks", "samplers", "--levels", "2", "--problems", "Ackley-5", "--samplers",
                  "ParallelSampler", "--seeds", "2", "--trials", "12", "--real", "2", "--real-seeds", "1",
                  "--out", str(tmp_path), timeout=300)
    report = (tmp_path / "parallel-samplers.md").read_text()
    assert re.search(r"\| 2 \| Ackley-5 \| 1 \| [0-9.e+-]+ \| [^|]+ \| (below|within|\*\*above\*\*) \|", report), report
    assert "| ParallelSampler, dasktune.optimize | 2 |" in report  # its regret ratio, among the others
    runs = [line for line in (tmp_path / "parallel-samplers-runs.jsonl").read_text().splitlines()
            if "dasktune.optimize" in line]
    assert len(runs) == 1 and '"values": [' in runs[0]


def test_cheap_target_figure_times_both_samplers_cold_against_the_in_process_target(tmp_path: Path) -> None:
    done = run_benchmark("benchmarks", "cheap-target", "--n", "20", "--repeats", "1", "--out", str(tmp_path),
                         timeout=300)
    report = (tmp_path / "cheap-target.md").read_text()
    for peer in ("optuna in-process", "TPESampler", "ParallelSampler"):
        assert re.search(rf"\| {peer} \| ([0-9.]+ s|not reached) \(", report), peer
    assert report in done.stdout


def test_scheduler_memory_benchmark_reports_both_storages_and_the_change_log(tmp_path: Path) -> None:
    done = run_benchmark("benchmarks.scheduler_memory", "--trials", "500", "--out", str(tmp_path), timeout=300)
    report = (tmp_path / "scheduler-memory.md").read_text()
    rows = re.findall(r"^\| (.+?) \| ([\d,]+) \| [\d.]+ s \|$", report, flags=re.M)
    assert [name.split(" ")[0] for name, _ in rows] == ["Optuna", "dasktune's"]
    assert all(int(size.replace(",", "")) > 0 for _, size in rows)
    assert re.search(r"Change log: [\d,]+ entries for 500 trials", report)


def test_pruning_figure_runs_real_and_modelled_runs_and_reports_them(tmp_path: Path) -> None:
    done = run_benchmark("benchmarks", "pruning", "--seeds", "1", "--levels", "1,8", "--problems", "SGD digits",
                         "--budget-trials", "24", "--model-seeds", "2", "--out", str(tmp_path), timeout=600)
    report = (tmp_path / "pruning.md").read_text()
    assert "## SGD digits" in report and "## The pruners alone at P in flight (virtual clock)" in report
    for pruner in ["none", "median", "SHA, Optuna alone", "SHA, max_resource", "Hyperband, max_resource"]:
        assert f"| {pruner} | 8 |" in report, pruner
    assert (tmp_path / "pruning.png").read_bytes().startswith(b"\x89PNG")
    assert report in done.stdout


def test_the_pruning_model_at_p_1_decides_as_the_real_sequential_run(client) -> None:
    """The virtual-clock model and a real dasktune run of one trial at a time take the same
    decisions: same trials, pruned at the same steps."""
    import benchmarks.pruning as bench

    for label in ["SHA, max_resource", "Hyperband, Optuna alone", "median"]:
        real = bench.run_one(client, "MLP digits", label, 1, seed=3, record=False)
        model = bench.simulate("MLP digits", label, 1, seed=3)
        assert [(r[3], r[2], r[4]) for r in real.trials] == [(r[3], r[2], r[4]) for r in model.trials], label
        assert any(r[4] == "PRUNED" for r in model.trials)
