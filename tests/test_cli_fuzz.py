"""200 random command lines, built from the command line's own grammar, none of which ends
in a traceback or a hang (issue 28).

The grammar is the parser's: every command, every option with its option strings, its kind
(a flag, a value, a repeated value, a choice) and its type. Values are drawn from what the
option means (good ones, bad ones, junk), and now and then a token the grammar does not
know. A fixed seed makes the vectors the same on every run.

Most vectors end at the parser, which imports neither Optuna nor distributed: they are
checked in this process, through the same ``parse`` the console script calls first. The
rest run as the console script does, each in a process of its own, against one shared
scheduler with a worker; two at a time, each within 10 s.

Two things are kept out of the grammar on purpose, since they are neither errors nor quick:
``demo`` always gets ``--scheduler`` (without one it starts a LocalCluster of its own, which
``tests/test_cli.py`` covers), and every ``run`` and ``demo`` gets a small ``--n-trials``
(without one a run goes on until stopped, as it should).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
import contextlib
import io
import json
import os
from pathlib import Path
import random
import subprocess
import sys
import textwrap
from typing import Any

import optuna
import pytest

from conftest import ProcessCluster
import dasktune
from dasktune.cli.parser import build_parser
from dasktune.cli.parser import parse

SEED = 28
VECTORS = 200
#: Each command line that reaches the cluster must end within this.
BOUND = 10.0

OBJECTIVE = textwrap.dedent(
    """
    def objective(trial):
        n = trial.suggest_int("n", 0, 3)  # a space every sampler takes, BruteForce too
        values = [float(n + i) for i in range(len(trial.study.directions))]
        return values[0] if len(values) == 1 else values
    """
)


class Pools:
    """What each option's value may be: good values, bad ones and junk, by option."""

    def __init__(self, address: str, dashboard: str, tmp: Path) -> None:
        objective = tmp / "fuzz_objective.py"
        objective.write_text(OBJECTIVE)
        host_port = address.removeprefix("tcp://")
        self.by_dest: dict[str, list[str]] = {
            "scheduler": [address] * 6 + [host_port, f"tls://{host_port}", f"{address}/status",
                          f"http://{dashboard}/status", "tcp://127.0.0.1:1", "tcp://", "", "nonsense",
                          f"tcp://{dashboard}"],
            "objective": [f"{objective}:objective"] * 4 + [f"{objective}:missing", f"{tmp}/none.py:f",
                          "no_such_module_anywhere:f", str(objective), ":", "objective"],
            "study": ["fuzz", "fuzz", "fuzz-mo", "fuzz-mo", "new", "a b/c?", "nope", "", "-", "--"],
            "storage": [f"sqlite:///{tmp / 'fuzz.db'}", f"journal://{tmp / 'fuzz.log'}", "sqlite:///relative.db",
                        "journal://relative.log", "bogus://x", "redis://127.0.0.1:1/0", "", "memory"],
            "storage_name": ["dasktune", "dasktune", "other", "", "x y"],
            "to": [str(tmp / "out.db"), str(tmp / "out.log"), f"sqlite:///{tmp / 'out2.db'}", str(tmp / "x.txt"),
                   "/nonexistent/dir/x.db", "journal://relative.log", ""],
            "as_name": ["copy", "fuzz", ""],
            "tls_ca_file": [str(tmp / "missing.pem"), str(objective)],
            "n_trials": ["1", "2", "3", "0", "-3", "1.5", "x", "99999999999999999999999"],
            "workers": ["1", "0", "-1", "x"],
            "concurrency": ["1", "2", "0", "-2", "x"],
            "limit": ["1", "5", "0", "-1", "x"],
            "timeout": ["2", "0.5", "inf", "0", "-1", "nan", "soon"],
            "connect_timeout": ["5", "5", "2.5", "0.001", "0", "-1", "nan", "x"],
            "seed": ["0", "7", "4294967295", "4294967296", "-1", "x"],
        }
        self.by_dest["tls_cert"] = self.by_dest["tls_key"] = self.by_dest["tls_ca_file"]
        #: Options with no good value here (this scheduler has no TLS).
        self.no_good = {"tls_ca_file", "tls_cert", "tls_key"}

    def value(self, rng: random.Random, action: argparse.Action, careful: bool) -> str:
        """A value for ``action``: a good one if ``careful`` (each pool starts with one),
        else anything."""
        if action.choices is not None and (careful or rng.random() < 0.85):
            return str(rng.choice(list(action.choices)))
        pool = self.by_dest.get(action.dest)
        if pool is not None and careful:
            return pool[0]
        if pool is not None and rng.random() < 0.9:
            return rng.choice(pool)
        return rng.choice(["", "x", "-1", "0", "1", "--", "é", "a" * 300, "%s", "{}", "\\", "--help"])


def vector(rng: random.Random, parser: argparse.ArgumentParser, pools: Pools) -> list[str]:
    """One command line drawn from ``parser``'s grammar."""
    commands: dict[str, argparse.ArgumentParser] = parser.commands  # type: ignore[attr-defined]
    name = rng.choice([*commands, *commands, "unknown-command"])
    if name not in commands:
        return [name, *rng.sample(["--scheduler", "x", "--json", "-v"], k=rng.randint(0, 3))]
    argv = [name]
    careful = rng.random() < 0.12  # a command line as a person would type it, give or take
    groups: list[list[str]] = []
    for action in commands[name]._actions:
        if not action.option_strings:  # a positional
            if rng.random() < 0.93:
                groups.append([pools.value(rng, action, careful)])
            continue
        wanted = {"scheduler": 0.85, "help": 0.02}.get(action.dest, 0.9 if action.required else 0.25)
        if name in ("run", "demo") and action.dest == "n_trials":
            wanted = 1.0
        if name == "demo" and action.dest == "scheduler":
            wanted = 1.0
        if rng.random() >= wanted or (careful and action.dest in pools.no_good):
            continue
        option = rng.choice(action.option_strings)
        if action.nargs == 0:
            groups.append([option])
        elif isinstance(action, argparse._AppendAction):
            for _ in range(rng.randint(1, 3)):
                groups.append([option, pools.value(rng, action, careful)])
        elif not careful and rng.random() < 0.03:
            groups.append([option])  # its value missing
        else:
            groups.append([option, pools.value(rng, action, careful)])
    if name in ("run", "demo"):  # a bounded run: see the module's docstring
        for group in groups:
            if group[0] == "--n-trials" and len(group) == 2 and group[1].isdigit() and int(group[1]) > 3:
                group[1] = "3"
    if not careful and rng.random() < 0.05:
        groups.append([rng.choice(["--unknown", "-x", "extra", "--json=1", "--no-such"])])
    rng.shuffle(groups)
    for group in groups:
        argv += group
    return argv


def parse_only(argv: list[str]) -> dict[str, Any] | None:
    """How the parser ends ``argv``: ``None`` if it accepts it (the command would run)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            parse(argv)
        except SystemExit as e:
            return {"argv": argv, "code": e.code, "stderr": err.getvalue(), "stdout": out.getvalue()}
    return None


#: Runs the command lines it reads (JSON, one a line) as the console script does, each in a
#: process of its own, forked from this one once it has imported what a command imports:
#: a fresh process per command line, without paying Python's start-up and imports each
#: time. Prints a JSON line per command line: exit status ("hung" if killed at the bound),
#: stderr, seconds.
ZYGOTE = textwrap.dedent(
    """
    import json, os, signal, sys, tempfile, time
    import dasktune.cli.commands  # what every command imports, once
    from dasktune.cli import main

    bound = float(sys.argv[1])
    for line in sys.stdin:
        argv = json.loads(line)
        err = tempfile.TemporaryFile()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the command line's own process
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(err.fileno(), 2)
            sys.argv = ["dasktune", *argv]
            try:
                code = main()  # ends the process itself, as the console script
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                sys.excepthook(*sys.exc_info())
                code = 1
            sys.stderr.flush()
            os._exit(code)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - started > bound:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                code = "hung"
                break
            time.sleep(0.01)
        seconds = time.monotonic() - started
        err.seek(0)
        print(json.dumps({"argv": argv, "code": code, "stderr": err.read().decode(errors="replace"),
                          "seconds": seconds}), flush=True)
    """
)


def run_cli(argvs: list[list[str]], env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    """How each of ``argvs`` ends, run as the console script runs it (see :data:`ZYGOTE`)."""
    done = subprocess.run(
        [sys.executable, "-c", ZYGOTE, str(BOUND)], input="".join(json.dumps(a) + "\n" for a in argvs),
        capture_output=True, text=True, env=env, cwd=cwd, timeout=60 + (BOUND + 1) * len(argvs),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    """A scheduler with dasktune's plugin and one two-thread worker, holding a single- and
    a two-objective study in the CLI's default storage."""
    cluster = ProcessCluster(tmp_path_factory.mktemp("fuzz-cluster"), scheduler_args=["--preload", "dasktune"])
    try:
        cluster.start_scheduler()
        cluster.start_worker(nthreads=2)
        cluster.wait_for_workers(1)
        with cluster.client() as client:
            storage = dasktune.DaskStorage(name="dasktune", client=client)
            for name, directions in [("fuzz", ["minimize"]), ("fuzz-mo", ["minimize", "maximize"])]:
                study = optuna.create_study(storage=storage, study_name=name, directions=directions)
                study.optimize(lambda t: [t.suggest_float("x", 0, 1)] * len(directions), n_trials=5)
        yield cluster
    finally:
        cluster.close()


def test_200_random_command_lines_end_without_a_traceback_or_a_hang(
    cluster: ProcessCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No default scheduler from this machine's environment or Dask config.
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    nowhere = tmp_path / "no-dask-config"
    nowhere.mkdir()
    monkeypatch.setenv("DASK_CONFIG", str(nowhere))
    import dask.config

    monkeypatch.setattr(dask.config, "config", {k: v for k, v in dask.config.config.items() if k != "scheduler-address"})
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}

    dashboard = json.loads(cluster.scheduler_file.read_text())["services"]["dashboard"]
    pools = Pools(cluster.address, f"127.0.0.1:{dashboard}", tmp_path)
    rng = random.Random(SEED)
    parser = build_parser()
    argvs = [vector(rng, parser, pools) for _ in range(VECTORS)]

    ended = [parse_only(argv) for argv in argvs]
    at_parse = [e for e in ended if e is not None]
    for e in at_parse:
        if e["code"] == 0:  # --help
            assert e["stdout"].startswith("usage: dasktune"), e
        else:
            assert e["code"] == 2 and e["stderr"].startswith("error: ") and e["stderr"].count("\n") == 1, e
    to_run = [argv for argv, e in zip(argvs, ended) if e is None]
    with ThreadPoolExecutor(2) as pool:  # two at a time
        ran = [e for half in pool.map(lambda h: run_cli(h, env, tmp_path), [to_run[::2], to_run[1::2]]) for e in half]

    failures = []
    for e in ran:
        err = e["stderr"]
        last = err.rstrip("\n").rsplit("\n", 1)[-1]
        if e["code"] == "hung" or "Traceback" in err or e["code"] not in (0, 2):
            failures.append(e)
        elif e["code"] == 2 and not last.startswith("error: "):
            failures.append(e)
    summary = "\n".join(f"{e['code']} after {e['seconds']:.1f} s: dasktune {' '.join(e['argv'])}\n"
                        f"    {e['stderr'][-1500:]}" for e in failures)
    assert not failures, f"{len(failures)} of {len(ran)} command lines that ran:\n{summary}"
    # The grammar reaches both ends: the parser refuses many, and many run.
    assert len(at_parse) >= 60 and len(ran) >= 40, (len(at_parse), len(ran))
