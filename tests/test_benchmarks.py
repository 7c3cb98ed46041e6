"""The benchmark suite runs end to end (``--quick``) and writes its report: a smoke test
that it keeps working, not a test of any figure (speed is measured, never asserted)."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).parent.parent


def test_quick_benchmark_writes_every_section(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / "results.md").read_text()
    for heading in ["## Floors", "## Overhead", "## Growth", "## Scaling", "## Scheduler load"]:
        assert heading in report, heading
    for peer in ["optuna in-process", "seed: optuna_integration.DaskStorage", "JournalStorage, shared file",
                 "gRPC storage proxy", "dasktune.DaskStorage (submit)", "dasktune.optimize"]:
        assert f"| {peer} |" in report, peer
    assert (tmp_path / "scaling.png").read_bytes().startswith(b"\x89PNG")
    assert report in done.stdout  # printed as well as written
