"""Remote submission for real: the scheduler and workers are separate OS processes, the
client is this process or yet another one."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap
import time
from typing import Any

from distributed import Client
from distributed.security import Security
import optuna
import pytest

import dasktune
from conftest import ProcessCluster
from dasktune.storage.wire import METADATA_KEY
from dasktune.storage.wire import PLUGIN_NAME

trustme = pytest.importorskip("trustme", reason="trustme makes the test certificates")


def quadratic(trial: optuna.Trial) -> float:
    return (trial.suggest_float("x", -3, 3) - 1) ** 2


def sleepy(trial: optuna.Trial) -> float:
    time.sleep(0.2)
    return trial.suggest_float("x", 0, 1)


def run_client(script: str, address: str) -> subprocess.CompletedProcess:
    """Run ``script`` as a client process of its own (``ADDRESS`` is the scheduler)."""
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)])}
    code = f"ADDRESS = {address!r}\n" + textwrap.dedent(script)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    return done


def plugin_id(client: Client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: id(dask_scheduler.plugins[PLUGIN_NAME]))


def test_preloaded_scheduler_serves_a_client_that_installs_nothing(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path, scheduler_args=["--preload", "dasktune"])
    try:
        cluster.start(n_workers=2)
        with cluster.client() as client:
            # The plugin is there before any client asked for it.
            assert client.get_metadata(METADATA_KEY, default=False)
            preloaded = plugin_id(client)
        done = run_client(
            """
            import json, optuna, dasktune
            from distributed import Client
            from test_remote import quadratic
            with Client(ADDRESS, timeout=30):
                study = optuna.create_study(storage=dasktune.DaskStorage(name="ops"), study_name="q")
                run = dasktune.optimize(study, quadratic, n_trials=25)
                print(json.dumps({"n": len(run.trials), "best": study.best_value}))
            """,
            cluster.address,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["n"] == 25
        with cluster.client() as client:
            assert plugin_id(client) == preloaded  # nobody installed another one
            study = optuna.load_study(
                study_name="q", storage=dasktune.DaskStorage(name="ops", register=False)
            )
            assert len(study.trials) == 25 and study.best_value == result["best"]
    finally:
        cluster.close()


def test_client_disconnects_after_detach_and_another_reattaches(
    process_cluster: ProcessCluster,
) -> None:
    done = run_client(
        """
        import optuna, dasktune
        from distributed import Client
        from test_remote import sleepy
        with Client(ADDRESS, timeout=30):
            study = optuna.create_study(storage=dasktune.DaskStorage(name="d"), study_name="long")
            run = dasktune.optimize(study, sleepy, n_trials=16, detach=True)
            print(run.run_id)
        """,
        process_cluster.address,
    )
    run_id = done.stdout.strip().splitlines()[-1]
    with process_cluster.client():
        study = optuna.load_study(study_name="long", storage=dasktune.DaskStorage(name="d"))
        run = dasktune.attach(study)
        assert run.run_id == run_id
        run.wait()
        assert run.done()
        states = [t.state for t in study.trials]
        assert states.count(optuna.trial.TrialState.COMPLETE) == 16 and len(states) == 16


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, str]:
    """A CA and a certificate for 127.0.0.1 signed by it (scheduler, workers and the
    trusted client share it), and a client certificate from an unrelated CA."""
    paths = {}
    ca = trustme.CA()
    ca.cert_pem.write_to_path(paths.setdefault("ca", str(tmp_path / "ca.pem")))
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(paths.setdefault("cert", str(tmp_path / "cert.pem")))
    cert.private_key_pem.write_to_path(paths.setdefault("key", str(tmp_path / "key.pem")))
    other = trustme.CA()
    rogue = other.issue_cert("127.0.0.1")
    rogue.cert_chain_pems[0].write_to_path(paths.setdefault("rogue_cert", str(tmp_path / "rogue.pem")))
    rogue.private_key_pem.write_to_path(paths.setdefault("rogue_key", str(tmp_path / "rogue.key")))
    other.cert_pem.write_to_path(paths.setdefault("rogue_ca", str(tmp_path / "rogue-ca.pem")))
    return paths


def test_tls_cluster_admits_only_clients_with_its_certificates(
    tmp_path: Path, certificates: dict[str, str]
) -> None:
    tls = ["--tls-ca-file", certificates["ca"], "--tls-cert", certificates["cert"],
           "--tls-key", certificates["key"]]
    security = Security(
        tls_ca_file=certificates["ca"],
        tls_client_cert=certificates["cert"],
        tls_client_key=certificates["key"],
        require_encryption=True,
    )
    cluster = ProcessCluster(
        tmp_path, scheduler_args=["--protocol", "tls", *tls], worker_args=tls, security=security
    )
    try:
        cluster.start_scheduler()
        assert cluster.address.startswith("tls://")
        cluster.start_worker()
        cluster.wait_for_workers(1)

        def refused(error: type[Exception], address: str, match: str | None = None, **kwargs: Any) -> None:
            with pytest.raises(error, match=match):
                Client(address, timeout=3, **kwargs)
            # A client that failed to start is closed by its __del__; collect it now, since
            # distributed deadlocks or trips an assertion when that happens inside the next
            # Client's start.
            gc.collect()

        rogue = Security(
            tls_ca_file=certificates["rogue_ca"],
            tls_client_cert=certificates["rogue_cert"],
            tls_client_key=certificates["rogue_key"],
            require_encryption=True,
        )
        refused(TypeError, cluster.address, match="TLS expects")  # no certificate at all
        refused(OSError, cluster.address.replace("tls://", "tcp://"))  # nor plain TCP
        refused(OSError, cluster.address, security=rogue)  # a certificate its CA did not sign

        with cluster.client() as client:
            study = optuna.create_study(storage=dasktune.DaskStorage(name="secure"))
            run = dasktune.optimize(study, quadratic, n_trials=12, client=client)
            assert len(run.trials) == 12 and len(study.trials) == 12
    finally:
        cluster.close()


def test_a_run_needs_none_of_the_users_modules_on_the_scheduler(tmp_path: Path, monkeypatch) -> None:
    """An objective and a sampler from a module that only the client and the workers can
    import run (a scheduler in a container of its own has dasktune, not the user's code):
    the scheduler passes a run on as bytes, and keeps no study or sampler of it."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "users_own.py").write_text(textwrap.dedent("""
        import optuna

        class Sampler(optuna.samplers.RandomSampler):
            pass

        def objective(trial):
            return trial.suggest_float("x", -1, 1) ** 2
    """))
    cluster = ProcessCluster(tmp_path)
    try:
        cluster.start_scheduler()
        monkeypatch.setenv("PYTHONPATH", str(code))  # the workers' (the scheduler's is set)
        for _ in range(2):
            cluster.start_worker()
        cluster.wait_for_workers(2)
        monkeypatch.syspath_prepend(str(code))
        import users_own

        with cluster.client() as client:
            assert not client.run_on_scheduler(_can_import, "users_own")
            for detach in (False, True):
                study = optuna.create_study(storage=dasktune.DaskStorage(client=client), sampler=users_own.Sampler())
                run = dasktune.optimize(study, users_own.objective, n_trials=8, client=client, detach=detach)
                if detach:
                    run.wait()
                assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 8
            assert client.run_on_scheduler(_studies_built) == 0
    finally:
        cluster.close()


def _can_import(name: str, dask_scheduler=None) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _studies_built(dask_scheduler=None) -> int:
    """Optuna studies alive in the scheduler's process (a run's would be built by unpickling it)."""
    import gc

    gc.collect()
    return sum(isinstance(o, optuna.Study) for o in gc.get_objects())
