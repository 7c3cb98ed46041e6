"""Start-up: what a user waits for before the first trial, each cold, in a fresh process.

- **First optimize**: a fresh LocalCluster of 2 single-thread worker processes (not timed),
  then ``DaskStorage()`` and ``create_study`` (timed apart: the plugin is installed then),
  then the first ``dasktune.optimize(study, objective, n_trials=2)`` — the workers import
  what the runners need during that call, so it is counted, not warmed away. Each sample in
  a new Python process, the median of ``repeats``.
- **Imports**: the modules ``import dasktune.storage`` loads (a worker unpickling a storage
  does that), and whether bokeh or prometheus_client are among them; the wall time of
  ``python -c "import dasktune.storage"`` in a process that already imported distributed
  (as a worker has).
- **Command line**: ``dasktune --help`` wall time, the median of ``repeats`` fresh
  processes (``benchmarks/cli_timings.py`` times every command).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import statistics
import subprocess
import sys
import time

_FIRST_OPTIMIZE = r"""
import json, time
import optuna
from distributed import Client, LocalCluster
from benchmarks.common import objective, quiet

if __name__ == "__main__":
    quiet()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        import dasktune
        began = time.perf_counter()
        study = optuna.create_study(storage=dasktune.DaskStorage())
        created = time.perf_counter()
        dasktune.optimize(study, objective, n_trials=2)
        done = time.perf_counter()
        print(json.dumps({"storage_and_study": created - began, "first_optimize": done - created}))
"""

_IMPORTS = r"""
import json, sys, time
import distributed, distributed.worker
before = set(sys.modules)
began = time.perf_counter()
import dasktune.storage
took = time.perf_counter() - began
new = sorted(set(sys.modules) - before)
print(json.dumps({"seconds": took, "modules": len(new),
                  "heavy": [m for m in new if m.split(".")[0] in ("bokeh", "prometheus_client")]}))
"""


@dataclass
class Startup:
    storage_and_study: float
    first_optimize: float
    import_seconds: float
    import_modules: int
    heavy_imports: list[str]
    help_seconds: float


def _python(code: str, cwd: str | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _wall(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, capture_output=True, timeout=120, check=True)
    return time.perf_counter() - began


def run(repeats: int = 5) -> Startup:
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    firsts = [_python(_FIRST_OPTIMIZE, cwd=root) for _ in range(repeats)]
    imports = _python(_IMPORTS)
    cli = str(Path(sys.executable).with_name("dasktune"))
    return Startup(
        storage_and_study=statistics.median(f["storage_and_study"] for f in firsts),
        first_optimize=statistics.median(f["first_optimize"] for f in firsts),
        import_seconds=imports["seconds"],
        import_modules=imports["modules"],
        heavy_imports=imports["heavy"],
        help_seconds=statistics.median(_wall([cli, "--help"]) for _ in range(repeats)),
    )


if __name__ == "__main__":
    print(run())
