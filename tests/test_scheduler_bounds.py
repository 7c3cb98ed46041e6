"""What the scheduler keeps, and for how long: each line of the cleanup model stated in
:mod:`dasktune.storage.holders`, on a real ``dask scheduler`` process whose clients come and
go."""

from __future__ import annotations

from pathlib import Path
import time
import urllib.request

from distributed import Client
import optuna
from optuna.trial import TrialState
import pytest

from conftest import ProcessCluster
from conftest import wait_for
import dasktune
from dasktune import tune
from dasktune.storage.proxy import DaskStorage
from dasktune.storage.wire import PLUGIN_NAME


def kept(dask_scheduler) -> dict[str, object]:
    """What the plugin holds, the storage hosts still alive anywhere in the scheduler's
    process (the Tuning pages hold some too), and the threads storages run on."""
    import gc
    import threading

    from dasktune.storage.host import StorageHost

    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    gc.collect()
    return {
        "hosts": sorted(plugin.hosts) if plugin else [],
        "alive": sum(isinstance(o, StorageHost) for o in gc.get_objects()),
        "threads": sorted(t.name for t in threading.enumerate() if t.name.startswith("dasktune-storage-")),
    }


def look_at_the_tuning_page(client: Client) -> None:
    """What a browser on /tuning or a Prometheus scrape of /metrics asks for."""
    url = client.dashboard_link.replace("/status", "/tuning/api/studies")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200


def names(client: Client) -> list[str]:
    """Every storage the scheduler answers for, dormant ones included (the names route)."""
    return list(client.sync(client.scheduler.dasktune_storage_names))


def database_connections(url: str) -> int:
    """Open connections to the database of a PostgreSQL ``url`` (each test has its own)."""
    import sqlalchemy

    database = sqlalchemy.engine.make_url(url).database
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(
                sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"),
                {"d": database},
            ).scalar_one())
    finally:
        engine.dispose()


def quadratic(trial: optuna.Trial) -> float:
    return (trial.suggest_float("x", -5, 5) - 1) ** 2


def trainable(config: dict) -> float:
    return (config["x"] - 1) ** 2


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bounds.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_storages_of_clients_that_left_leave_no_host_thread_or_connection(
    process_cluster: ProcessCluster, url: str | None
) -> None:
    """Unnamed storages, each opened by a client that then disconnects (with and without
    closing it), and tune.run calls, each from a client of its own: once the clients are
    gone the plugin holds no host of them, and no thread or database connection is left."""
    with process_cluster.client() as watcher:
        baseline = watcher.run_on_scheduler(kept)  # no plugin yet: nothing
        for i in range(12):
            with Client(process_cluster.address, set_as_default=True) as client:
                storage = DaskStorage(url, client=client)
                study = optuna.create_study(storage=storage)
                study.optimize(quadratic, n_trials=2)
                look_at_the_tuning_page(client)
                if i % 2:
                    storage.close()  # explicitly; the others by the client leaving
            with Client(process_cluster.address, set_as_default=True):
                tune.run(trainable, {"x": tune.uniform(-5, 5)}, num_samples=2, verbose=0)
        wait_for(lambda: watcher.run_on_scheduler(kept) == baseline, timeout=30,
                 message="the plugin to drop every storage of the clients that left, and their threads")
        assert names(watcher) == []  # unnamed: forgotten, not dormant
        if url is not None and url.startswith("postgresql"):
            wait_for(lambda: database_connections(url) == 0, timeout=30,
                     message="the scheduler's PostgreSQL connections to close")


def _scheduler_process(dask_scheduler=None) -> dict[str, int]:
    """The scheduler process's RSS (after a collection) and thread count."""
    import gc
    import threading

    import psutil

    gc.collect()
    return {"rss": psutil.Process().memory_info().rss, "threads": threading.active_count()}


#: Dask's own bounded records of clients and messages, shortened on the scheduler of
#: ``test_a_thousand_clients_that_left_leave_the_scheduler_as_it_was`` so that what grows is
#: dasktune's: the last 1,000 messages to each worker and transitions (about 20 KiB a client
#: of their own), and each client's events, kept an hour after it leaves.
DASK_OWN_LOGS = {
    "DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH": "10",
    "DASK_DISTRIBUTED__ADMIN__LOG_LENGTH": "10",
    "DASK_DISTRIBUTED__SCHEDULER__EVENTS_CLEANUP_DELAY": "1s",
}


@pytest.mark.timeout(900)
def test_a_thousand_clients_that_left_leave_the_scheduler_as_it_was(tmp_path: Path, monkeypatch) -> None:
    """1,000 unnamed storages and 1,000 ``tune.run`` calls, each from a client of its own that
    then leaves: afterwards the plugin holds no host of them, the scheduler runs no more
    threads than before, and its RSS is within 10 MiB of what it was after a warm-up."""
    for name, value in DASK_OWN_LOGS.items():
        monkeypatch.setenv(name, value)
    cluster = ProcessCluster(tmp_path)

    def visit(i: int) -> None:
        with Client(cluster.address, set_as_default=True) as client:
            study = optuna.create_study(storage=DaskStorage(client=client))
            study.optimize(quadratic, n_trials=1)
        with Client(cluster.address, set_as_default=True):
            tune.run(trainable, {"x": tune.uniform(-5, 5)}, num_samples=1, verbose=0)

    try:
        cluster.start(n_workers=2)
        with cluster.client() as watcher:
            nothing = watcher.run_on_scheduler(kept)  # no plugin yet: nothing
            for i in range(VISITS_WARM_UP):  # imports, caches, Dask's own first allocations
                visit(i)
            wait_for(lambda: watcher.run_on_scheduler(kept) == nothing, timeout=30,
                     message="the warm-up's storages to go")
            before = watcher.run_on_scheduler(_scheduler_process)
            started = time.monotonic()
            for i in range(VISITS):
                visit(i)
            wait_for(lambda: watcher.run_on_scheduler(kept) == nothing, timeout=30,
                     message="the plugin to drop every storage of the clients that left, and their threads")
            assert names(watcher) == []
            wait_for(lambda: watcher.run_on_scheduler(_scheduler_process)["threads"] <= before["threads"],
                     timeout=30, message=f"the scheduler's threads to be back to {before['threads']}")
            grown = watcher.run_on_scheduler(_scheduler_process)["rss"] - before["rss"]
            assert grown <= 10 * 2**20, (
                f"the scheduler grew {grown / 2**20:.1f} MiB over {VISITS} clients "
                f"({time.monotonic() - started:.0f} s)")
    finally:
        cluster.close()


VISITS_WARM_UP, VISITS = 100, 1000


def test_a_closed_named_durable_storage_sleeps_and_wakes_with_every_study(
    process_cluster: ProcessCluster, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'team.db'}"
    with process_cluster.client() as client:
        storage = DaskStorage(url, name="team", client=client)
        study = optuna.create_study(storage=storage, study_name="kept")
        dasktune.optimize(study, quadratic, n_trials=5, client=client)
        storage.close()
        wait_for(lambda: client.run_on_scheduler(kept)["hosts"] == [], timeout=10,
                 message="the closed storage's host to be dropped")
        assert client.run_on_scheduler(kept)["threads"] == []  # its backend thread too
        assert names(client) == ["team"]  # dormant: still listed
        # Its next user, by name alone, finds everything the backend kept.
        again = optuna.load_study(study_name="kept", storage=DaskStorage(name="team", client=client))
        assert [t.state for t in again.trials] == [TrialState.COMPLETE] * 5
        assert client.run_on_scheduler(kept)["hosts"] == ["team"]


def test_a_named_in_memory_storage_outlives_the_client_that_made_it(process_cluster: ProcessCluster) -> None:
    with Client(process_cluster.address) as first:
        study = optuna.create_study(storage=DaskStorage(name="notes", client=first), study_name="s")
        study.optimize(quadratic, n_trials=3)
    with process_cluster.client() as second:
        wait_for(lambda: not any(c.startswith("Client-") and c != second.id
                                 for c in second.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.clients))),
                 timeout=10, message="the first client to leave")
        again = optuna.load_study(study_name="s", storage=DaskStorage(name="notes", client=second))
        assert len(again.trials) == 3  # its studies are nowhere else: kept


def sleepy(trial: optuna.Trial) -> float:
    time.sleep(0.4)
    return quadratic(trial)


def test_a_detached_run_holds_its_storage_until_it_ends(process_cluster: ProcessCluster) -> None:
    with Client(process_cluster.address) as client:
        storage = DaskStorage(client=client)
        study = optuna.create_study(storage=storage)
        dasktune.optimize(study, sleepy, n_trials=12, client=client, detach=True)
        name = storage.name
    with process_cluster.client() as watcher:
        assert name in watcher.run_on_scheduler(kept)["hosts"]  # its client left, its run did not
        wait_for(lambda: name not in watcher.run_on_scheduler(kept)["hosts"], timeout=60,
                 message="the storage to be dropped once its run ended")


def test_a_change_log_keeps_about_one_entry_per_trial(process_cluster: ProcessCluster) -> None:
    """A trial that reports a hundred intermediate values leaves one entry, not a hundred."""

    def curve(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        for step in range(100):
            trial.report(x / (step + 1), step)
        return x

    with process_cluster.client() as client:
        storage = DaskStorage(client=client)
        study = optuna.create_study(storage=storage, pruner=optuna.pruners.NopPruner())
        dasktune.optimize(study, curve, n_trials=40, client=client)

        def sizes(dask_scheduler) -> dict[str, int]:
            return dask_scheduler.plugins[PLUGIN_NAME].hosts[storage.name].sizes()

        kept_now = client.run_on_scheduler(sizes)
        assert kept_now["trials"] == 40
        # Compacted: at most twice the changed ids and the log's slack, never 100 per trial.
        assert kept_now["log entries"] <= 2 * (40 + 1 + 64), kept_now
