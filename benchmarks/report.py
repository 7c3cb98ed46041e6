"""The benchmark report: Markdown tables with ratios to the peers, the floors the project
set itself with PASS/FAIL, and the scaling plot."""

from __future__ import annotations

from pathlib import Path
import re

from benchmarks import cheap
from benchmarks.cli_timings import HELD_FLOOR_COMMANDS
from benchmarks.cli_timings import HELD_IDLE_CEILING
from benchmarks.cli_timings import HELD_LOADED_CEILING
from benchmarks.common import Result
from benchmarks.growth import Memory
from benchmarks.load import Load
from benchmarks.overhead import DASKTUNE_OPTIMIZE
from benchmarks.overhead import DASKTUNE_SUBMIT
from benchmarks.overhead import PEERS
from benchmarks.overhead import SEED
from benchmarks.scaling import Point
from benchmarks.startup import Startup

#: The floors of the benchmark issue.
SEED_FLOORS = {"Random": 10.0, "TPE": 5.0}
GROWTH_CEILING = 1.5
EFFICIENCY_FLOOR = 0.9
RANDOM_FLOOR = 1000.0  # trials/s of dasktune.optimize at N=2000
QUARTER_CEILING = 1.05  # wall / ideal, 80 trials of 0.25 s on 2 workers
OPS_FLOOR, P99_CEILING_MS, SUBMIT_CEILING_MS = 5000.0, 50.0, 100.0
FIRST_OPTIMIZE_CEILING, HELP_CEILING = 0.3, 0.5  # seconds
START_OF_WORK_CEILING = 1.0  # seconds, a cluster command from launch to its first connection
#: Seconds to summarize 1,000 studies through DaskStorage, and for `dasktune studies` to list them.
SUMMARIES_CEILING, STUDIES_CEILING = 0.2, 1.0
#: The cheap-trials floors: ~10 ms objective x in-process, Random cold trials/s, TPE cold x in-process.
BUSY_FLOOR, COLD_RANDOM_FLOOR, COLD_TPE_FLOOR = 1.7, 2000.0, 1.0


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


class Report:
    def __init__(self, machine: str, quick: bool) -> None:
        self.machine, self.quick = machine, quick
        self.sections: list[str] = []
        self.floors: list[str] = []
        self.points: list[Point] = []
        self.took = 0.0

    def startup(self, s: Startup) -> None:
        self.sections.append("\n".join([
            "## Start-up",
            "",
            "Each sample in a fresh process (see `benchmarks/startup.py`): a fresh LocalCluster of 2 "
            "single-thread worker processes, then `DaskStorage()` + `create_study`, then the first "
            "`dasktune.optimize(..., n_trials=2)` (the workers' imports included).",
            "",
            "| figure | seconds |",
            "|---|---:|",
            f"| `DaskStorage()` + `create_study` (installs the plugin) | {s.storage_and_study:.3f} |",
            f"| first `dasktune.optimize`, 2 trials | {s.first_optimize:.3f} |",
            f"| both, from `DaskStorage()` to the end of the first optimize | {s.storage_and_study + s.first_optimize:.3f} |",
            f"| `import dasktune.storage` in a worker ({s.import_modules} modules; bokeh/prometheus among them: "
            f"{', '.join(s.heavy_imports) or 'none'}) | {s.import_seconds:.3f} |",
            f"| `dasktune --help` | {s.help_seconds:.3f} |",
        ]))
        self.floors.append(f"| first optimize of 2 trials on a fresh LocalCluster | {s.first_optimize:.3f} s | "
                           f"<= {FIRST_OPTIMIZE_CEILING:g} s | {verdict(s.first_optimize <= FIRST_OPTIMIZE_CEILING)} |")
        self.floors.append(f"| `dasktune --help` | {s.help_seconds:.3f} s | <= {HELP_CEILING:g} s | "
                           f"{verdict(s.help_seconds <= HELP_CEILING)} |")
        self.floors.append(f"| bokeh/prometheus imported by `import dasktune.storage` | "
                           f"{', '.join(s.heavy_imports) or 'none'} | none | {verdict(not s.heavy_imports)} |")

    def overhead(self, results: list[Result], cap: float) -> None:
        lines = [
            "## Overhead: trivial objective, trials/s",
            "",
            "A fresh LocalCluster of 2 single-thread worker processes per peer; each peer as its users run it "
            f"(see `benchmarks/overhead.py`). Runs are capped at {cap:g} s.",
            "",
            "| N | sampler | peer | trials/s | x seed | x in-process | ms/trial first 10% | last 10% | note |",
            "|---:|---|---|---:|---:|---:|---:|---:|---|",
        ]
        by = {(r.n_asked, r.sampler, r.config): r for r in results}
        for n in sorted({r.n_asked for r in results}):
            for sampler in ("Random", "TPE"):
                seed, local = by[n, sampler, SEED], by[n, sampler, PEERS[0]]
                for peer in PEERS:
                    r = by[n, sampler, peer]
                    first, last = r.growth(max(1, r.n // 10))
                    lines.append(
                        f"| {n} | {sampler} | {peer} | {r.trials_per_s:.0f} | "
                        f"{r.trials_per_s / seed.trials_per_s:.1f} | {r.trials_per_s / local.trials_per_s:.2f} | "
                        f"{first:.2f} | {last:.2f} | {r.note} |"
                    )
        self.sections.append("\n".join(lines))
        n = 1000 if any(r.n_asked == 1000 for r in results) else min(r.n_asked for r in results)
        for sampler, floor in SEED_FLOORS.items():
            for ours in (DASKTUNE_SUBMIT, DASKTUNE_OPTIMIZE):
                ratio = by[n, sampler, ours].trials_per_s / by[n, sampler, SEED].trials_per_s
                self.floors.append(f"| {ours} / seed, N={n}, {sampler} | {ratio:.1f}x | >= {floor:g}x | {verdict(ratio >= floor)} |")
        if any(r.n_asked == 2000 for r in results):  # the submission layer's own floors
            random, tpe = by[2000, "Random", DASKTUNE_OPTIMIZE], by[2000, "TPE", DASKTUNE_OPTIMIZE]
            in_process = by[2000, "TPE", PEERS[0]].trials_per_s
            self.floors.append(f"| {DASKTUNE_OPTIMIZE}, N=2000, Random | {random.trials_per_s:.0f} trials/s | "
                               f">= {RANDOM_FLOOR:g} trials/s | {verdict(random.trials_per_s >= RANDOM_FLOOR)} |")
            self.floors.append(f"| {DASKTUNE_OPTIMIZE}, N=2000, TPE, against in-process TPE | "
                               f"{tpe.trials_per_s:.0f} vs {in_process:.0f} trials/s | >= in-process | "
                               f"{verdict(tpe.trials_per_s >= in_process)} |")

    def cli(self, timings: list[tuple[str, float]]) -> None:
        """The command line's timings (``benchmarks/cli_timings.py``), with its floors."""
        lines = [
            "## Command line",
            "",
            "Each command a fresh process, as typed in a shell (see `benchmarks/cli_timings.py`): "
            "medians, exports and copies measured once. *Busy loops beside it*: that many "
            "`while True: pass` processes run meanwhile, as on a laptop doing something else; the "
            "Python start-up and import rows are what every command pays before its own work.",
            "",
            "| command | seconds |",
            "|---|---:|",
            *(f"| `{name}` | {seconds:.3f} |" for name, seconds in timings),
        ]
        self.sections.append("\n".join(lines))
        times = dict(timings)
        helps = [t for name, t in timings if name.endswith("--help")]
        starts = [t for name, t in timings if name.endswith(": start of work")]
        self.floors.append(f"| slowest `--help` of {len(helps)} commands | {max(helps):.3f} s | "
                           f"<= {HELP_CEILING:g} s | {verdict(max(helps) <= HELP_CEILING)} |")
        self.floors.append(f"| slowest start of work of {len(starts)} cluster commands | {max(starts):.3f} s | "
                           f"<= {START_OF_WORK_CEILING:g} s | {verdict(max(starts) <= START_OF_WORK_CEILING)} |")
        for name, seconds in timings:
            if name.startswith("optuna.get_all_study_summaries") and name.endswith("DaskStorage"):
                self.floors.append(f"| {name} | {seconds:.3f} s | <= {SUMMARIES_CEILING:g} s | "
                                   f"{verdict(seconds <= SUMMARIES_CEILING)} |")
            if name.startswith("studies, ") and name.endswith("(end to end)"):
                self.floors.append(f"| `dasktune {name.removesuffix(' (end to end)')}` | {seconds:.3f} s | "
                                   f"<= {STUDIES_CEILING:g} s | {verdict(seconds <= STUDIES_CEILING)} |")
            held = re.fullmatch(r"(\w+), (\d+) studies held: (.+)", name)
            if held and held[1] in HELD_FLOOR_COMMANDS:
                ceiling = HELD_IDLE_CEILING if held[3] == "idle" else HELD_LOADED_CEILING
                self.floors.append(f"| `dasktune {held[1]}`, {held[2]} studies held, {held[3]} | {seconds:.3f} s | "
                                   f"<= {ceiling:g} s | {verdict(seconds <= ceiling)} |")
            if name.startswith("export") and name.endswith(": copy"):
                what = name.removeprefix("export ").removesuffix(": copy")
                theirs = times[f"optuna.copy_study {what}"]
                self.floors.append(f"| `export` {what}, copy against `optuna.copy_study` | {seconds:.2f} vs "
                                   f"{theirs:.2f} s | <= copy_study | {verdict(seconds <= theirs)} |")

    def cheap(self, cold: list[cheap.Figure], objectives: dict[str, list[cheap.Figure]], profiles: str) -> None:
        """Cheap trials: the trivial objective on a fresh cluster, the ~10 ms objective and a
        model fit against the peers, and (if measured) where a trial's CPU time goes."""
        repeats = len(cold[0].rates)
        lines = [
            "## Cheap trials",
            "",
            "Fresh LocalClusters of 2 single-thread worker processes; *cold* is the first "
            "`dasktune.optimize` on its cluster, nothing warmed (see `benchmarks/cheap.py`). "
            + (f"Each figure is the median of {repeats} interleaved repetitions, every peer measured "
               "anew in each (a fresh cluster each time); the ratio to in-process is paired within a "
               "repetition, its range over the repetitions in brackets." if repeats > 1 else
               "One repetition of each peer (a quick run)."),
            "",
            "| objective | sampler | N | peer | trials/s | x in-process |",
            "|---|---|---:|---|---:|---:|",
        ]
        names = {"trivial": "trivial", "busy": "~10 ms pure Python", "fit": "SVC on digits (scikit-learn)"}
        for f in [*cold, *(f for figures in objectives.values() for f in figures)]:
            spread = f" ({min(f.ratios):.2f}-{max(f.ratios):.2f})" if repeats > 1 and f.config != cheap.IN_PROCESS else ""
            lines.append(f"| {names[f.objective]} | {f.sampler} | {f.n} | {f.config} | {f.trials_per_s:.0f} | "
                         f"{f.ratio:.2f}{spread} |")
        if profiles:
            lines += ["", "### Where a trial's CPU time goes (py-spy, `benchmarks/profile.py`)", "", profiles]
        self.sections.append("\n".join(lines))
        for f in cold:
            if f.config != cheap.COLD:
                continue
            if f.sampler == "Random":
                self.floors.append(f"| {cheap.COLD}, trivial, N={f.n}, Random | {f.trials_per_s:.0f} trials/s | "
                                   f">= {COLD_RANDOM_FLOOR:g} trials/s | {verdict(f.trials_per_s >= COLD_RANDOM_FLOOR)} |")
            else:
                self.floors.append(f"| {cheap.COLD}, trivial, N={f.n}, TPE, x in-process | {f.ratio:.2f}x | "
                                   f">= {COLD_TPE_FLOOR:g}x | {verdict(f.ratio >= COLD_TPE_FLOOR)} |")
        if "busy" in objectives:
            ours = next(f for f in objectives["busy"] if f.config == cheap.COLD)
            self.floors.append(f"| {cheap.COLD}, ~10 ms objective, TPE, N={ours.n}, x in-process | {ours.ratio:.2f}x | "
                               f">= {BUSY_FLOOR:g}x | {verdict(ours.ratio >= BUSY_FLOOR)} |")

    def growth(self, results: list[Result], memory: list[Memory], window: int) -> None:
        lines = [
            f"## Growth across a {results[0].n_asked}-trial study, and memory",
            "",
            "A `dask scheduler` and 2 single-thread `dask worker` processes, RandomSampler; each "
            "run keeps its study, so the scheduler's RSS growth is what the study costs there.",
            "",
            f"| peer | trials | trials/s | ms/trial first {window} | last {window} | last/first | "
            "scheduler RSS after (MiB) | growth per 1000 trials (MiB) | worker RSS after (MiB) | note |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r, m in zip(results, memory):
            first, last = r.growth(window)
            lines.append(
                f"| {r.config} | {r.n} | {r.trials_per_s:.0f} | {first:.2f} | {last:.2f} | {last / first:.2f} | "
                f"{m.scheduler_after:.0f} | {m.per_1000:.2f} | {', '.join(f'{w:.0f}' for w in m.workers_after)} | {r.note} |"
            )
            if r.config != SEED:
                self.floors.append(
                    f"| {r.config}: last/first {window} of {r.n_asked} (Random) | {last / first:.2f} | "
                    f"<= {GROWTH_CEILING:g} | {verdict(last / first <= GROWTH_CEILING and r.n == r.n_asked)} |"
                )
        self.sections.append("\n".join(lines))

    def scaling(self, points: list[Point]) -> None:
        self.points = points
        lines = [
            "## Scaling: 0.1 s sleeping objective",
            "",
            "2 worker processes with workers/2 threads each (1 process for 1 worker); "
            "efficiency = ideal time / measured time. Plot: `scaling.png`.",
            "",
            "| workers | trials | dasktune.optimize s | efficiency | seed s | seed efficiency | dasktune / seed |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        ours = [p for p in points if p.config == "dasktune.optimize"]
        seeds = {p.workers: p for p in points if p.config != "dasktune.optimize"}
        for p in ours:
            s = seeds[p.workers]
            lines.append(f"| {p.workers} | {p.trials} | {p.wall:.2f} | {p.efficiency:.0%} | {s.wall:.2f} | "
                         f"{s.efficiency:.0%} | {s.wall / p.wall:.1f}x |")
        top = ours[-1]
        self.floors.append(f"| dasktune.optimize efficiency at {top.workers} workers | {top.efficiency:.0%} | "
                           f">= {EFFICIENCY_FLOOR:.0%} | {verdict(top.efficiency >= EFFICIENCY_FLOOR)} |")
        self.sections.append("\n".join(lines))

    def submission(self, point: Point) -> None:
        ratio = point.wall / point.ideal
        self.sections.append(
            f"## Submission: {point.trials} trials of {point.sleep:g} s on {point.workers} workers\n\n"
            f"`dasktune.optimize`: {point.wall:.2f} s against the ideal {point.ideal:.2f} s "
            f"({ratio:.3f}x ideal, efficiency {point.efficiency:.1%})."
        )
        self.floors.append(f"| {point.trials} x {point.sleep:g} s on {point.workers} workers, wall / ideal | "
                           f"{ratio:.3f} | <= {QUARTER_CEILING:g} | {verdict(ratio <= QUARTER_CEILING)} |")

    def load(self, loads: list[Load]) -> None:
        lines = [
            "## Scheduler load: concurrent trial runners",
            "",
            "Simulated runners (asyncio, one connection each, 2 load processes) speaking the "
            "plugin's protocol to a `dask scheduler` process; 5 storage operations in 2 requests "
            "per trial (see `benchmarks/load.py`). The load processes share the 2 cores with the "
            "scheduler. Paced runners offer 1,000 trials/s together (5,000 operations/s, the floor); "
            "unpaced ones go flat out. Meanwhile a trivial `client.submit(...).result()` every 50 ms.",
            "",
            "| runners | offered trials/s | trials/s | storage ops/s | requests/s | request p50 ms | p99 ms | "
            "scheduler CPU s / 1000 trials | scheduler RSS MiB / 1000 trials | submit p50 ms | p99 | max |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for x in loads:
            lines.append(
                f"| {x.runners} | {x.offered or 'unpaced'} | {x.trials / x.seconds:.0f} | {x.ops_per_s:.0f} | {x.requests_per_s:.0f} | "
                f"{x.percentile(x.latencies, 50):.1f} | {x.percentile(x.latencies, 99):.1f} | "
                f"{x.cpu_per_1000:.2f} | {x.rss_per_1000:.2f} | {x.percentile(x.submit_latencies, 50):.1f} | "
                f"{x.percentile(x.submit_latencies, 99):.1f} | {max(x.submit_latencies) * 1e3:.1f} |"
            )
            if x.offered is None:  # flat out: what the scheduler can take, not a floor
                continue
            p99, submit = x.percentile(x.latencies, 99), x.percentile(x.submit_latencies, 99)
            ok = x.ops_per_s >= OPS_FLOOR and p99 < P99_CEILING_MS and submit < SUBMIT_CEILING_MS
            self.floors.append(
                f"| {x.runners} runners: ops/s, request p99, submit p99 | {x.ops_per_s:.0f}, {p99:.1f} ms, "
                f"{submit:.1f} ms | >= {OPS_FLOOR:g}, < {P99_CEILING_MS:g} ms, < {SUBMIT_CEILING_MS:g} ms | {verdict(ok)} |"
            )
        self.sections.append("\n".join(lines))

    def write(self, out: Path) -> str:
        self._plot(out / "scaling.png")
        head = [
            "# dasktune benchmarks" + (" (--quick: small sizes, not the reported figures)" if self.quick else ""),
            "",
            f"Machine: {self.machine}. Whole run: {self.took / 60:.1f} min. "
            "Every figure and ratio comes from this one run.",
            "",
            "## Floors",
            "",
            "| figure | measured | floor | result |",
            "|---|---:|---:|---|",
            *self.floors,
        ]
        text = "\n\n".join(["\n".join(head), *self.sections]) + "\n"
        (out / "results.md").write_text(text)
        return text

    def _plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for config in dict.fromkeys(p.config for p in self.points):
            mine = [p for p in self.points if p.config == config]
            workers = [p.workers for p in mine]
            left.plot(workers, [p.trials / p.wall for p in mine], marker="o", label=config)
            right.plot(workers, [p.efficiency for p in mine], marker="o", label=config)
        if self.points:
            workers = sorted({p.workers for p in self.points})
            left.plot(workers, [w / 0.1 for w in workers], "k--", label="ideal")
            right.axhline(1.0, color="k", linestyle="--", label="ideal")
        for axis, label in ((left, "trials/s"), (right, "efficiency")):
            axis.set_xscale("log", base=2)
            axis.set_xlabel("workers")
            axis.set_ylabel(label)
            axis.legend()
        left.set_yscale("log")
        figure.suptitle("0.1 s sleeping objective")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
