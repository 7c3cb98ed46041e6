"""The files in deploy/ start working clusters: each test reads the scheduler and worker
commands from a deploy file, runs them as local processes (no container engine here) with
only host and ports made local, and tunes a study through them."""

from __future__ import annotations

import json
from pathlib import Path
import sys
import tomllib

import optuna
import pytest
import yaml

import dasktune
from conftest import ProcessCluster
from dasktune.storage.wire import METADATA_KEY

DEPLOY = Path(__file__).parent.parent / "deploy"


def quadratic(trial: optuna.Trial) -> float:
    return (trial.suggest_float("x", -3, 3) - 1) ** 2


def start(cluster: ProcessCluster, scheduler: list[str], workers: list[list[str]]) -> None:
    """Run the deploy file's commands; later options override earlier ones, so the local
    host and free ports are appended to the file's own arguments."""
    cluster.spawn(
        [*scheduler, "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
         "127.0.0.1:0", "--scheduler-file", str(cluster.scheduler_file)],
        "scheduler.log",
    )
    cluster.read_address()
    for i, worker in enumerate(workers):
        worker = [cluster.address if arg.endswith(":8786") else arg for arg in worker]
        cluster.spawn([*worker, "--host", "127.0.0.1"], f"worker-{i}.log")
    if workers:
        cluster.wait_for_workers(len(workers))


def tune_through(cluster: ProcessCluster, url: str | None = None, n_trials: int = 12) -> optuna.Study:
    """A client that installs nothing: the plugin must be the deploy file's preload."""
    with cluster.client() as client:
        assert client.get_metadata(METADATA_KEY, default=False), "the plugin was not preloaded"
        study = optuna.create_study(storage=dasktune.DaskStorage(url, client=client))
        run = dasktune.optimize(study, quadratic, n_trials=n_trials, client=client)
        assert len(run.trials) == n_trials
        assert [t.state for t in study.trials].count(optuna.trial.TrialState.COMPLETE) == n_trials
        return study


@pytest.fixture
def cluster(tmp_path: Path):
    cluster = ProcessCluster(tmp_path)
    yield cluster
    cluster.close()


def compose(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["services"]


def test_docker_compose(cluster: ProcessCluster) -> None:
    services = compose(DEPLOY / "docker-compose.yml")
    replicas = services["worker"]["deploy"]["replicas"]
    start(cluster, services["scheduler"]["command"], [services["worker"]["command"]] * replicas)
    tune_through(cluster)


def test_docker_compose_with_postgres_backend(cluster: ProcessCluster, postgres_url: str) -> None:
    services = compose(DEPLOY / "docker-compose.yml")
    assert services["postgres"]["profiles"] == ["postgres"]
    start(cluster, services["scheduler"]["command"], [services["worker"]["command"]])
    study = tune_through(cluster, postgres_url, n_trials=6)
    stored = optuna.load_study(study_name=study.study_name, storage=postgres_url)
    assert len(stored.trials) == 6


def test_dockerfile_default_command_and_extras(cluster: ProcessCluster) -> None:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    (cmd,) = [json.loads(line[len("CMD ") :]) for line in lines if line.startswith("CMD ")]
    (install,) = [line for line in lines if line.startswith("RUN pip install")]
    extras = install.split("[", 1)[1].split("]", 1)[0].split(",")
    declared = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    assert set(extras) <= set(declared["optional-dependencies"])
    # The image's default command is the scheduler; workers override it.
    start(cluster, cmd, [["dask", "worker", "tcp://scheduler:8786"]])
    tune_through(cluster, n_trials=6)


def test_helm_values(cluster: ProcessCluster) -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    scheduler = ["dask", "scheduler", "--port", str(values["scheduler"]["servicePort"]),
                 *values["scheduler"]["extraArgs"]]
    worker = ["dask", "worker", "tcp://tuning-dask-scheduler:8786", "--nthreads",
              str(values["worker"]["threads_per_worker"]), *values["worker"]["extraArgs"]]
    start(cluster, scheduler, [worker, worker])
    tune_through(cluster)


def test_kubernetes_operator_daskcluster(
    cluster: ProcessCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())["spec"]
    (scheduler,) = spec["scheduler"]["spec"]["containers"]
    (worker,) = spec["worker"]["spec"]["containers"]
    start(cluster, scheduler["args"], [])
    # The operator gives workers the scheduler's address and a name in the environment.
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.address)
    for i in range(spec["worker"]["replicas"]):
        args = [a.replace("$(DASK_WORKER_NAME)", f"worker-{i}") for a in worker["args"]]
        cluster.spawn([*args, "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"],
                      f"worker-{i}.log")
    cluster.wait_for_workers(spec["worker"]["replicas"])
    tune_through(cluster)


def test_jobqueue_slurm(cluster: ProcessCluster) -> None:
    pytest.importorskip("dask_jobqueue")
    sys.path.insert(0, str(DEPLOY / "jobqueue"))
    try:
        import hpc
    finally:
        sys.path.pop(0)
    slurm = hpc.slurm_cluster(
        scheduler_options={**hpc.SCHEDULER, "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
    )
    with slurm:
        # The batch job's command line, run here instead of by sbatch.
        (command,) = [line for line in slurm.job_script().splitlines() if "dask_worker" in line]
        cluster.address = slurm.scheduler_address
        cluster.spawn(command.split(), "worker-0.log")
        cluster.wait_for_workers(1)
        tune_through(cluster)


def test_tls_compose_with_its_dask_config(
    cluster: ProcessCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trustme = pytest.importorskip("trustme")
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(certs / "cert.pem"))
    cert.private_key_pem.write_to_path(str(certs / "key.pem"))
    # The config file as mounted in the containers, with the certificates' local path.
    config = (DEPLOY / "tls" / "dask.yaml").read_text().replace("/etc/dask/tls", str(certs))
    (tmp_path / "dask.yaml").write_text(config)
    monkeypatch.setenv("DASK_CONFIG", str(tmp_path))  # what the containers' processes read
    import dask
    from distributed.security import Security

    def flat(tree: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[prefix + key] = value
        return out

    with dask.config.set(flat(yaml.safe_load(config))):  # and this client, from the same file
        services = compose(DEPLOY / "tls" / "docker-compose.yml")
        cluster.security = Security()
        start(cluster, services["scheduler"]["command"], [services["worker"]["command"]])
        assert cluster.address.startswith("tls://")
        tune_through(cluster, n_trials=6)
