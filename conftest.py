"""Test fixtures: real Dask clusters and real databases, cleaned up after use.

- ``cluster``: a LocalCluster of 2 single-thread worker processes, shared by the session.
- ``client``: a fresh client of that cluster per test; the test must leave no task behind.
- ``process_cluster``: a scheduler and workers as separate OS processes (``dask scheduler``
  / ``dask worker`` on 127.0.0.1, free ports), which a test may kill and restart.
- ``postgres_url`` / ``redis_url``: a fresh, empty database on the services named by
  ``DASKTUNE_TEST_POSTGRES`` / ``DASKTUNE_TEST_REDIS`` (skipped, with the reason, when unset).
- ``backend_url``: each storage a ``DaskStorage`` takes, in turn (``None``: memory), and
  ``durable_url`` each of them but memory.

Objectives more than one test module runs are here too.
"""

from __future__ import annotations

from collections.abc import Iterator
import gc
import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

from distributed import Client
from distributed import LocalCluster
import optuna
import pytest

POSTGRES_ENV = "DASKTUNE_TEST_POSTGRES"
REDIS_ENV = "DASKTUNE_TEST_REDIS"

def thread_stacks() -> str:
    """Every thread's stack in the process this runs in (``client.run_on_scheduler`` or
    ``client.run``): what a test that found something hung reports, so that a hang seen once
    on a loaded machine says where it was."""
    import sys
    import threading
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(
        f"--- {names.get(ident, ident)}\n{''.join(traceback.format_stack(frame))}"
        for ident, frame in sys._current_frames().items()
    )


def process_stacks() -> str:
    """The stacks of every Python process this one started (its cluster's workers and
    nannies, ``dask`` processes, the CLI), read from outside by py-spy: what a hung test
    reports beside pytest-timeout's threads of this process, which cannot show a worker
    whose event loop is blocked."""
    import psutil

    dumps = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "python" not in child.name() and "dask" not in child.name():
                continue
            dump = subprocess.run(
                ["py-spy", "dump", "--nonblocking", "--pid", str(child.pid)],
                capture_output=True, text=True, timeout=20,
            )
            dumps.append(f"=== {' '.join(child.cmdline())[:200]}\n{dump.stdout}{dump.stderr}")
        except (psutil.Error, subprocess.SubprocessError, OSError) as e:
            dumps.append(f"=== pid {child.pid}: {type(e).__name__}: {e}")
    return "\n".join(dumps)


@pytest.fixture(autouse=True)
def stacks_before_timeout(request: pytest.FixtureRequest) -> Iterator[None]:
    """15 s before pytest-timeout fails a test, print :func:`process_stacks` (shown with the
    failure's captured output)."""
    marker = request.node.get_closest_marker("timeout")
    timeout = float(marker.args[0] if marker and marker.args else request.config.getini("timeout") or 0)
    if timeout <= 30 or shutil.which("py-spy") is None:
        yield
        return
    timer = threading.Timer(timeout - 15, lambda: print(process_stacks(), flush=True))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def wait_for(condition, timeout: float = 30.0, interval: float = 0.05, message: str = ""):
    """Poll ``condition()`` until it returns a truthy value, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
        time.sleep(interval)


def learning_curve(trial: optuna.Trial) -> float:
    """A trial that reports five steps of a curve set by its ``level``, asking to be pruned
    after each (pruners then decide from every worker's values)."""
    level = trial.suggest_float("level", 0, 1)
    for step in range(5):
        trial.report(level + step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
        time.sleep(0.01)
    return level


def worker_of(study, trial) -> str | None:
    """The address of the worker that ran ``trial``, as the scheduler recorded it."""
    from dasktune import compat

    return compat.study_storage(study).get_trial_worker(compat.trial_id(trial))


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        yield cluster


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster, set_as_default=True) as client:
        yield client
        gc.collect()  # futures held by reference cycles (tracebacks) release their tasks
        wait_for(
            lambda: client.run_on_scheduler(lambda dask_scheduler: not dask_scheduler.tasks),
            timeout=10,
            message="the tasks of the test to leave the scheduler",
        )
        # Every worker still answers: a test that left one with its event loop blocked fails
        # here, with the stacks that show why, not the next test to broadcast (stop 38's CI).
        try:
            client.run(os.getpid, callback_timeout=60)
        except TimeoutError:
            raise AssertionError(
                f"a worker no longer answers 60 s after the test; stacks:\n{process_stacks()}"
            ) from None


class ProcessCluster:
    """A scheduler and workers as separate ``dask`` OS processes on 127.0.0.1."""

    def __init__(
        self,
        workdir: Path,
        scheduler_args: list[str] | None = None,
        worker_args: list[str] | None = None,
        security=None,
    ) -> None:
        self.workdir = workdir
        self.scheduler_file = workdir / "scheduler.json"
        self.scheduler_args = scheduler_args or []
        self.worker_args = worker_args or []
        self.security = security  # what the test's own clients connect with (TLS)
        self.others: list[subprocess.Popen] = []
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.address = ""

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        dask = shutil.which("dask", path=os.path.dirname(sys.executable)) or "dask"
        return self.spawn([dask, *args], log)

    def spawn(self, command: list[str], log: str) -> subprocess.Popen:
        """Run ``command`` (a scheduler or worker command line) as a process this cluster
        stops on close, its output in ``log`` under the work directory."""
        out = open(self.workdir / log, "ab")
        # Objectives defined in test modules are pickled by reference: let the scheduler
        # and workers import them as pytest does.
        root = Path(__file__).parent
        path = os.pathsep.join([str(root / "tests"), str(root), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path}
        # A killed scheduler cannot remove its temporary artifact directory: keep it in the
        # test's own directory, which pytest removes.
        env.setdefault("DASK_DISTRIBUTED__DASKTUNE__ARTIFACT_DIR", str(self.workdir / "artifacts"))
        bindir = os.path.dirname(sys.executable)  # `dask`, `python` of this environment first
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.others.append(process)
        return process

    def read_address(self) -> str:
        """The address a scheduler wrote to this cluster's scheduler file."""
        wait_for(self.scheduler_file.exists, message="the scheduler file")
        self.address = wait_for(
            lambda: json.loads(self.scheduler_file.read_text() or "{}").get("address"),
            message="the scheduler address",
        )
        return self.address

    def start_scheduler(self, port: int = 0) -> str:
        if self.scheduler_file.exists():
            self.scheduler_file.unlink()
        self.scheduler = self._spawn(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(self.scheduler_file),
                *self.scheduler_args,
            ],
            "scheduler.log",
        )
        return self.read_address()

    def start_worker(self, nthreads: int = 1) -> subprocess.Popen:
        worker = self._spawn(
            [
                "worker",
                self.address,
                "--nthreads",
                str(nthreads),
                "--no-nanny",
                "--host",
                "127.0.0.1",
                "--dashboard-address",
                "127.0.0.1:0",
                *self.worker_args,
            ],
            f"worker-{len(self.workers)}.log",
        )
        self.workers.append(worker)
        return worker

    def client(self, **kwargs) -> Client:
        kwargs.setdefault("security", self.security)
        return Client(self.address, timeout=30, **kwargs)

    def wait_for_workers(self, n: int) -> None:
        with self.client() as c:
            c.wait_for_workers(n, timeout=60)

    def start(self, n_workers: int) -> None:
        """A scheduler and ``n_workers`` single-thread workers, returning once all joined."""
        self.start_scheduler()
        for _ in range(n_workers):
            self.start_worker()
        self.wait_for_workers(n_workers)

    @staticmethod
    def kill(process: subprocess.Popen | None) -> None:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)

    def close(self) -> None:
        for process in [*self.workers, *self.others]:
            self.kill(process)
        self.kill(self.scheduler)


@pytest.fixture
def process_cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    cluster = ProcessCluster(tmp_path)
    try:
        cluster.start(n_workers=2)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"set {POSTGRES_ENV} to a PostgreSQL URL to run PostgreSQL tests")
    import sqlalchemy

    name = f"dasktune_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.engine.make_url(base).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


DURABLE = ["sqlite", "journal", "postgres", "redis"]


def _url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if kind == "memory":
        return None
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'optuna.db'}"
    if kind == "journal":
        return f"journal://{tmp_path / 'optuna.log'}"
    return str(request.getfixturevalue(f"{kind}_url"))


@pytest.fixture(params=["memory", *DURABLE])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return _url(request.param, request, tmp_path)


@pytest.fixture(params=DURABLE)
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = _url(request.param, request, tmp_path)
    assert url is not None
    return url


@pytest.fixture
def redis_url() -> Iterator[str]:
    base = os.environ.get(REDIS_ENV)
    if not base:
        pytest.skip(f"set {REDIS_ENV} to a Redis URL to run Redis tests")
    import redis

    prefix = f"dasktune-test-{uuid.uuid4().hex[:12]}"
    yield f"{base}?prefix={prefix}"
    connection = redis.Redis.from_url(base)
    keys = list(connection.scan_iter(f"{prefix}*"))
    if keys:
        connection.delete(*keys)
    connection.close()
