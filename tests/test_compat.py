"""Each Optuna and Dask internal that ``dasktune.compat`` relies on, by name: an Optuna or
distributed release that changes one fails here, saying which."""

from __future__ import annotations

import gc
from pathlib import Path
import re
import subprocess
import sys
import textwrap
import urllib.request
import weakref

import jinja2
import optuna
from optuna.storages import BaseStorage
from optuna.storages import InMemoryStorage
import pytest

from conftest import wait_for
from dasktune import compat
from dasktune.compat import optuna_dashboard

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna and distributed


def test_study_storage_is_the_storage_the_study_was_created_with() -> None:
    storage = InMemoryStorage()
    assert compat.study_storage(optuna.create_study(storage=storage)) is storage


def test_study_id_of_a_study_and_a_frozen_study() -> None:
    storage = InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="a")
    assert compat.study_id(study) == storage.get_study_id_from_name("a")
    (frozen,) = storage.get_all_studies()
    assert isinstance(frozen, compat.FrozenStudy)
    assert compat.study_id(frozen) == compat.study_id(study)


def test_trial_id_of_a_trial_and_a_frozen_trial() -> None:
    study = optuna.create_study()
    trial = study.ask()
    frozen = study.trials[0]
    assert compat.trial_id(trial) == compat.trial_id(frozen)
    assert compat.study_storage(study).get_trial(compat.trial_id(trial)).number == 0


def test_new_trial_builds_the_trial_ask_would_for_a_claimed_id() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    storage = compat.study_storage(study)
    trial_id = storage.create_new_trial(compat.study_id(study))
    trial = compat.new_trial(study, trial_id)
    assert isinstance(trial, optuna.Trial) and trial.number == 0
    x = trial.suggest_float("x", 0, 1)
    study.tell(trial, x)
    assert study.trials[0].params == {"x": x}


def test_new_trial_makes_the_trial_class_it_is_given() -> None:
    class Mine(optuna.Trial):
        pass

    study = optuna.create_study()
    trial = compat.new_trial(study, compat.study_storage(study).create_new_trial(compat.study_id(study)), Mine)
    assert type(trial) is Mine and trial.number == 0


@pytest.mark.parametrize(
    ("pruner", "private", "unset"),
    [
        (optuna.pruners.SuccessiveHalvingPruner, "_min_resource", None),
        (optuna.pruners.HyperbandPruner, "_max_resource", "auto"),
    ],
)
def test_pruners_keep_auto_resources_unresolved_in_the_attribute_compat_sets(pruner, private, unset) -> None:
    """``pruner_waits_for_a_complete_trial`` reads, and ``resolve_pruner_resources`` sets,
    the attribute in which each pruner keeps the resource it infers."""
    made = pruner()
    assert getattr(made, private) == unset and compat.pruner_waits_for_a_complete_trial(made)
    if pruner is optuna.pruners.HyperbandPruner:
        assert made._pruners == []  # its brackets, laid out at its first decision
    study = optuna.create_study(pruner=made)
    done = study.ask()
    done.report(0.0, 26)
    study.tell(done, 0.0)
    running = study.ask()
    running.report(0.0, 1)
    made.prune(study, study.trials[-1])
    assert getattr(made, private) == (1 if private == "_min_resource" else 27)
    assert not compat.pruner_waits_for_a_complete_trial(made)


def test_give_cmaes_source_trials_sets_what_the_constructor_would() -> None:
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=1.0, params={"x": 0.5},
                                              distributions={"x": optuna.distributions.FloatDistribution(0, 1)}))
    given = optuna.samplers.CmaEsSampler()
    assert given._source_trials is None and given._x0 is None and given._sigma0 is None
    assert not given._use_separable_cma
    assert compat.give_cmaes_source_trials(given, study.trials)
    assert given._source_trials == study.trials
    own = optuna.samplers.CmaEsSampler(source_trials=study.trials[:1])
    assert not compat.give_cmaes_source_trials(own, study.trials) and own._source_trials == study.trials[:1]
    assert not compat.give_cmaes_source_trials(optuna.samplers.TPESampler(), study.trials)


def test_worker_threads_and_resources_are_what_the_worker_was_started_with() -> None:
    from distributed import Client
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=3, resources={"GPU": 2}, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        (worker,) = cluster.workers.values()
        assert compat.worker_threads_and_resources(worker) == (3, {"GPU": 2})
        assert client.submit(lambda: 1).result() == 1


def test_new_trial_clears_the_per_trial_cache_as_ask_does() -> None:
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    study._thread_local.cached_all_trials = []  # what a previous trial left behind
    trial_id = compat.study_storage(study).create_new_trial(compat.study_id(study))
    compat.new_trial(study, trial_id)
    assert study._thread_local.cached_all_trials is None


def test_optimize_loop_lets_study_stop_be_called_and_stop_requested_sees_it() -> None:
    study = optuna.create_study()
    with pytest.raises(RuntimeError):
        study.stop()  # outside an optimization loop Optuna refuses
    with compat.optimize_loop(study):
        assert not compat.stop_requested(study)
        study.stop()
        assert compat.stop_requested(study)
    with pytest.raises(RuntimeError):
        study.stop()  # and the loop ends with the context


def test_on_stop_runs_after_study_stop_on_that_study_object_only() -> None:
    study, other = optuna.create_study(), optuna.create_study()
    calls: list[bool] = []
    compat.on_stop(study, lambda: calls.append(compat.stop_requested(study)))
    with pytest.raises(RuntimeError):
        study.stop()  # Optuna refuses outside a loop: nothing to tell
    assert calls == []
    with compat.optimize_loop(study), compat.optimize_loop(other):
        other.stop()
        assert calls == []
        study.stop()
    assert calls == [True]  # once Optuna's own stop had set its flag


def test_on_stop_leaves_the_study_to_reference_counting() -> None:
    """No reference cycle: a study the collector had to free would free its threading.local
    there, which can deadlock a worker (see guard_current_frames)."""
    study = optuna.create_study()
    compat.on_stop(study, lambda: None)
    freed = weakref.ref(study)
    gc.disable()
    try:
        del study
        assert freed() is None
    finally:
        gc.enable()


#: Cyclic garbage with a threading.local, and a collection at (nearly) every allocation:
#: the allocations inside ``sys._current_frames()`` collect it there.
DEADLOCK = """
import gc, sys, threading
if sys.argv[1] == "guarded":
    from dasktune.compat import guard_current_frames
    guard_current_frames()
    guard_current_frames()  # once per process: a second call wraps nothing again
stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(20)]
for t in threads:
    t.start()

class Holder:
    def __init__(self):
        self.local, self.me = threading.local(), self

gc.collect()
gc.set_threshold(1)
for _ in range(200):
    Holder()
    frames = sys._current_frames()
gc.set_threshold(700)
print(sorted(frames) == sorted(t.ident for t in threading.enumerate()))  # every thread's frame
stop.set()
for t in threads:
    t.join()
"""


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="Python 3.12 never collects inside sys._current_frames()")
def test_guard_current_frames_keeps_the_collector_out_of_sys_current_frames() -> None:
    with pytest.raises(subprocess.TimeoutExpired):  # the deadlock, as this Python has it
        subprocess.run([sys.executable, "-c", DEADLOCK, "plain"], timeout=10)
    guarded = subprocess.run([sys.executable, "-c", DEADLOCK, "guarded"], timeout=60,
                             capture_output=True, text=True)
    assert guarded.returncode == 0 and guarded.stdout.strip() == "True", guarded.stderr


def test_base_heartbeat_is_how_optuna_recognises_a_heartbeat_storage() -> None:
    assert issubclass(optuna.storages.RDBStorage, compat.BaseHeartbeat)
    assert not issubclass(InMemoryStorage, compat.BaseHeartbeat)
    abstract = compat.BaseHeartbeat.__abstractmethods__
    assert {"record_heartbeat", "_get_stale_trial_ids", "get_heartbeat_interval"} <= abstract
    from dasktune import DaskStorage

    assert issubclass(DaskStorage, BaseStorage) and issubclass(DaskStorage, compat.BaseHeartbeat)
    assert not DaskStorage.__abstractmethods__  # every abstract method of this Optuna version


def test_frozen_study_is_what_get_all_studies_returns() -> None:
    storage = InMemoryStorage()
    storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "a")
    assert type(storage.get_all_studies()[0]) is compat.FrozenStudy


def test_imported_as_preload_is_true_only_while_distributed_imports_a_preload(tmp_path) -> None:
    assert not compat.imported_as_preload()
    (tmp_path / "probe_preload.py").write_text(
        "from dasktune import compat\nSEEN = compat.imported_as_preload()\n"
    )
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from distributed import preloading
        preloading.process_preloads(object(), ["probe_preload"], [])
        print(sys.modules["probe_preload"].SEEN)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True"], out.stderr


def test_importing_dasktune_or_its_storage_loads_neither_bokeh_nor_prometheus() -> None:
    code = "import sys, dasktune.storage.proxy, dasktune.submit.runner; print(sorted(m for m in sys.modules if m.split('.')[0] in ('bokeh', 'prometheus_client')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_a_version_outside_the_supported_range_fails_at_import(monkeypatch) -> None:
    import dasktune

    monkeypatch.setitem(dasktune.SUPPORTED_VERSIONS, "optuna", ("999", None))
    with pytest.raises(ImportError, match=r"supports optuna>=999, but optuna .* is installed"):
        dasktune._check_versions()  # what `import dasktune` runs first
    monkeypatch.setitem(dasktune.SUPPORTED_VERSIONS, "optuna", ("1", "2"))
    with pytest.raises(ImportError, match=r"pip install 'optuna>=1,<2'"):
        dasktune._check_versions()


def test_results_held_names_the_tasks_whose_results_a_worker_holds(client) -> None:
    future = client.submit(int, 1, key="a-held-result")
    assert future.result() == 1
    assert compat.results_held(client, ["a-held-result", "no-such-task"]) == ["a-held-result"]
    del future
    wait_for(lambda: not compat.results_held(client, ["a-held-result"]), message="the result to go")


def _span_of(key: str, dask_scheduler=None) -> tuple[str, tuple[str, ...]]:
    """The id and name of the Dask span the task ``key`` is computed in."""
    span = dask_scheduler.extensions["spans"].spans[dask_scheduler.tasks[key].group.span_id]
    return span.id, span.name


def test_dasktune_span_puts_tasks_in_one_span_and_leaves_a_callers_span_alone(client) -> None:
    import distributed

    # Keys as dasktune makes them: one task group, "dasktune", which Dask keeps in the span
    # its first live task came with; so the caller's span is tried while no other is live.
    with distributed.span("the user's"), compat.dasktune_span():
        theirs = client.submit(int, 5, key="dasktune-s5-0123456789ab-runner-0badcafe")
    theirs.result()
    span_id, name = client.run_on_scheduler(_span_of, theirs.key)
    assert name == ("the user's",) and span_id != compat.SPAN_ID
    del theirs
    wait_for(lambda: client.run_on_scheduler(lambda dask_scheduler: not dask_scheduler.tasks),
             message="the caller's task to be forgotten")
    with compat.dasktune_span():
        ours = [client.submit(int, i, key=f"dasktune-s{i}-0123456789ab-runner-0badcafe") for i in range(2)]
    client.gather(ours)
    assert {client.run_on_scheduler(_span_of, f.key) for f in ours} == {(compat.SPAN_ID, (compat.SPAN_ID,))}


def _forget(dask_scheduler=None) -> int:
    return compat.forget_released_groups(dask_scheduler)


def _groups_kept(dask_scheduler=None) -> list[str]:
    return sorted(group.name for group in dask_scheduler.extensions["spans"].spans[compat.SPAN_ID].groups)


def test_forget_released_groups_lets_the_span_drop_only_the_groups_dask_forgot() -> None:
    from distributed import Client
    from distributed import LocalCluster

    # A cluster of its own: on the suite's, dasktune's plugin calls this every second.
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster, Client(cluster) as client:
        with compat.dasktune_span():
            ended = client.submit(int, 1, key="dasktune-s1-0123456789ab-runner-0badcafe")
            live = client.submit(int, 2, key="other-0123456789ab")  # another task group
        client.gather([ended, live])
        assert client.run_on_scheduler(_groups_kept) == ["dasktune", "other"]
        del ended
        wait_for(lambda: client.run_on_scheduler(lambda dask_scheduler: "dasktune" not in dask_scheduler.task_groups),
                 message="Dask to forget the ended task's group")
        assert client.run_on_scheduler(_groups_kept) == ["dasktune", "other"]  # Dask alone keeps it
        assert client.run_on_scheduler(_forget) == 1
        assert client.run_on_scheduler(_groups_kept) == ["other"]
        assert client.run_on_scheduler(_forget) == 0
        assert live.result() == 2


# -- distributed's dashboard and optuna-dashboard (the Tuning page) ----------------------


def test_add_dashboard_page_adds_it_to_the_nav_bar_and_repoints_the_more_menu(cluster) -> None:
    scheduler = cluster.scheduler
    variables = compat.dashboard_variables(scheduler)
    variables["plots"].append({"url": "individual-compat-probe", "name": "Compat Probe"})
    try:
        compat.add_dashboard_page(scheduler, "compat-probe", replaces_plot="individual-compat-probe")
        # The very lists distributed's own pages render: /status shows the change.
        page = urllib.request.urlopen(
            f"http://127.0.0.1:{scheduler.http_server.port}/status", timeout=30
        ).read().decode()
        assert '<a href="compat-probe">Compat-Probe</a>' in page
        assert '<li><a href="compat-probe">Compat Probe</a></li>' in page
    finally:
        variables["pages"].remove("compat-probe")
        variables["plots"][:] = [p for p in variables["plots"] if p["name"] != "Compat Probe"]


def test_dashboard_templates_hold_the_frame_with_the_nav_bar_and_more_menu() -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(compat.dashboard_templates()))
    page = env.get_template("simple.html").render(
        pages=["status", "tuning"], plots=[{"url": "p", "name": "P"}],
        plot_div="<div id='probe'></div>", plot_script="",
    )
    assert '<a href="tuning">Tuning</a>' in page and '<a href="p">P</a>' in page
    assert 'href="statics/css/base.css"' in page and "<div id='probe'></div>" in page


def test_optuna_dashboard_bundle_routes_under_the_prefix_the_page_sets() -> None:
    script = compat.optuna_dashboard_bundle().decode()
    assert optuna_dashboard._MOUNTED_ROUTER_PREFIX in script
    assert optuna_dashboard._OPTUNA_ROUTER_PREFIX not in script


def test_optuna_dashboard_asks_the_server_only_for_the_root_paths_the_mount_moves() -> None:
    script = optuna_dashboard.optuna_dashboard_script().read_text(encoding="utf-8")
    # Paths its script builds from the server's root: template literals that start with
    # "/" (or its API client's base URL, empty in this build), not after a router prefix.
    rooted = set(re.findall(r"(?<![+\w])`(?:\$\{this\.baseURL\})?(/[a-z_]+/)", script))
    assert rooted == set(compat.OPTUNA_DASHBOARD_ROOT_PATHS), rooted


def test_ci_tests_the_oldest_versions_pyproject_admits() -> None:
    """``.ci/run`` installs ``.ci/oldest.txt``: its pins must be the lower bounds that
    ``pyproject.toml`` and ``import dasktune`` admit."""
    import dasktune

    root = Path(__file__).parent.parent
    pins = dict(
        line.split("==")
        for line in (root / ".ci" / "oldest.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    pyproject = (root / "pyproject.toml").read_text()
    for package, (oldest, _) in dasktune.SUPPORTED_VERSIONS.items():
        assert pins[package].startswith(oldest), package
        assert f'"{package}>={oldest}' in pyproject, package


def test_tell_finishes_a_trial_as_optimize_does_and_returns_nothing() -> None:
    study = optuna.create_study()
    trial = study.ask()
    assert compat.tell(study, trial, 2.0) is None
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE and study.trials[0].value == 2.0
    pruned = study.ask()
    pruned.report(3.0, 0)
    compat.tell(study, pruned.number, state=optuna.trial.TrialState.PRUNED)
    assert study.trials[1].state == optuna.trial.TrialState.PRUNED and study.trials[1].value == 3.0
    failed = study.ask()
    compat.tell(study, failed, "not a number")  # as Study.optimize: FAIL, no exception
    assert study.trials[2].state == optuna.trial.TrialState.FAIL


def _rich_study(directions: list[str]) -> optuna.Study:
    """A study with every kind of trial content Optuna stores: each distribution type,
    infinite values and intermediate values, attributes of every JSON type, and trials in
    every state."""
    study = optuna.create_study(directions=directions)
    study.set_user_attr("owner", {"team": ["a", "b"]})

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        x = trial.suggest_float("x", 1e-3, 10, log=True)
        trial.suggest_float("step", 0, 1, step=0.25)
        n = trial.suggest_int("n", 1, 9, step=2)
        trial.suggest_categorical("c", [None, True, "s", 1.5])
        trial.set_user_attr("nested", {"n": n, "list": [1, None, "x"]})
        compat.study_storage(trial.study).set_trial_system_attr(compat.trial_id(trial), "why", "test")
        for step in range(3 if len(directions) == 1 else 0):  # Optuna reports one objective
            trial.report([x, float("nan"), float("inf")][step], step)
        if trial.number % 5 == 3:
            raise optuna.TrialPruned()
        if trial.number % 5 == 4:
            raise ValueError("failed on purpose")
        value = float("inf") if trial.number == 0 else x * n
        return value if len(directions) == 1 else (value, -x)

    study.optimize(objective, n_trials=20, catch=(ValueError,))
    study.enqueue_trial({"x": 1.0})  # WAITING
    study.ask()  # RUNNING (takes the enqueued trial)
    study.enqueue_trial({"x": 2.0})  # WAITING
    return study


def test_journal_created_trial_is_the_last_trial_this_journal_storage_object_created(tmp_path) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = str(tmp_path / "journal.log")
    ours, theirs = JournalStorage(JournalFileBackend(path)), JournalStorage(JournalFileBackend(path))
    study_id = ours.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    assert compat.journal_created_trial(ours, read_back=True) == -1  # none yet
    created = ours.create_new_trial(study_id)
    theirs.create_new_trial(study_id)  # another writer's, appended after ours
    assert compat.journal_created_trial(ours, read_back=False) == created
    assert compat.journal_created_trial(ours, read_back=True) == created  # theirs read, not taken
    assert len(ours.get_all_trials(study_id)) == 2  # read_back read the other writer's too
    assert compat.journal_created_trial(InMemoryStorage(), read_back=True) is None


@pytest.mark.parametrize("directions", [["minimize"], ["minimize", "maximize"]])
def test_rdb_add_trials_writes_what_copy_study_writes(tmp_path, directions: list[str]) -> None:
    source = _rich_study(directions)
    trials = source.get_trials(deepcopy=False)
    assert {t.state.name for t in trials} == {"COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"}
    expected = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    optuna.copy_study(from_study_name=source.study_name, from_storage=compat.study_storage(source),
                      to_storage=expected, to_study_name="copy")
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'bulk.db'}")
    study_id = storage.create_new_study(source.directions, "copy")
    compat.rdb_add_trials(storage, study_id, trials, flush_every=7)

    want = optuna.load_study(study_name="copy", storage=expected).get_trials(deepcopy=False)
    got = optuna.load_study(study_name="copy", storage=storage).get_trials(deepcopy=False)
    assert [_fields(t) for t in got] == [_fields(t) for t in want]
    assert [_fields(t) for t in got] == [_fields(t) for t in trials]


def _fields(t: optuna.trial.FrozenTrial) -> tuple:
    """Everything a storage keeps of a trial but its id (NaN and inf compared as text)."""
    values = None if t.values is None else [str(v) for v in t.values]
    intermediate = {k: str(v) for k, v in t.intermediate_values.items()}
    return (t.number, t.state, values, t.datetime_start, t.datetime_complete, t.params,
            t.distributions, t.user_attrs, t.system_attrs, intermediate)


def test_rdb_add_trials_on_postgresql(postgres_url: str) -> None:
    source = _rich_study(["minimize"])
    trials = source.get_trials(deepcopy=False)
    storage = optuna.storages.RDBStorage(postgres_url)
    study_id = storage.create_new_study(source.directions, "copy")
    compat.rdb_add_trials(storage, study_id, trials)
    got = optuna.load_study(study_name="copy", storage=storage).get_trials(deepcopy=False)
    assert [_fields(t) for t in got] == [_fields(t) for t in trials]
    storage.engine.dispose()


def test_rdb_add_trials_numbers_on_and_writes_all_or_nothing(tmp_path) -> None:
    source = _rich_study(["minimize"])
    trials = source.get_trials(deepcopy=False)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'bulk.db'}")
    study_id = storage.create_new_study(source.directions, "copy")
    storage.create_new_trial(study_id)  # number 0, already there

    def breaking():
        yield from trials[:15]
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        compat.rdb_add_trials(storage, study_id, breaking(), flush_every=4)
    assert len(storage.get_all_trials(study_id)) == 1  # none of the 15 (3 batches flushed)
    compat.rdb_add_trials(storage, study_id, trials)
    assert [t.number for t in storage.get_all_trials(study_id)] == list(range(len(trials) + 1))


def test_in_memory_logger_announces_new_studies_and_quiet_study_creation_drops_only_those_named(caplog) -> None:
    import logging

    from optuna.storages import InMemoryStorage

    compat.quiet_study_creation("dasktune-test-quiet-copy")
    with caplog.at_level(logging.INFO, logger=compat.IN_MEMORY_LOGGER):
        optuna.logging.enable_propagation()
        try:
            optuna.create_study(storage=InMemoryStorage(), study_name="dasktune-test-quiet-copy")
            optuna.create_study(storage=InMemoryStorage(), study_name="loud")
        finally:
            optuna.logging.disable_propagation()
    announced = {r.getMessage() for r in caplog.records if r.name == compat.IN_MEMORY_LOGGER}
    assert announced == {"A new study created in memory with name: loud"}
