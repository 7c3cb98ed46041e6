"""The Tuning page on the Dask dashboard: JSON, /metrics, both install paths, the figures
as the scheduler builds them, optuna-dashboard mounted on it, and what a person sees in a
real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import time
import urllib.request
from urllib.parse import quote

from bokeh.embed import json_item
from bokeh.models import CategoricalScale
from bokeh.models import LinearScale
from bokeh.models import LogScale
from distributed import Client
from distributed import LocalCluster
import optuna
import optuna_dashboard
from optuna.trial import TrialState
import pytest

import dasktune
from conftest import ProcessCluster
from conftest import wait_for
from dasktune import compat
from dasktune.dashboard.study_doc import StudyDoc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def get_json(url: str) -> dict:
    return json.loads(get(url))


def dashboard(cluster: LocalCluster) -> str:
    return f"http://127.0.0.1:{cluster.scheduler.http_server.port}"


def pruned_objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    for step in range(5):
        # Falling curves; MedianPruner compares a trial's best value so far with the median
        # at this step, so a trial whose x is above the median's is pruned.
        trial.report(x + 1 / (step + 1), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x


def two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0, 1)
    return x, (1 - x) ** 2


def slow(trial: optuna.Trial) -> float:
    time.sleep(0.3)
    return trial.suggest_float("x", -1, 1) ** 2


def crash_once(trial: optuna.Trial) -> float:
    time.sleep(30)
    return 0.0


def study_url(base: str, storage: str, study: str, kind: str = "api/study") -> str:
    return f"{base}/tuning/{kind}/{quote(storage, safe='')}/{quote(study, safe='')}"


def test_json_and_metrics_agree_with_the_study(cluster: LocalCluster, client: Client) -> None:
    storage = dasktune.DaskStorage(name="dash-json")
    study = optuna.create_study(
        storage=storage, study_name="pruned",
        # Random, not TPE: TPE soon samples only low x, and then prunes little.
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    dasktune.optimize(study, pruned_objective, n_trials=30)
    pareto = optuna.create_study(storage=storage, study_name="two", directions=["minimize"] * 2)
    dasktune.optimize(pareto, two_objectives, n_trials=8)
    base = dashboard(cluster)

    index = {(s["storage"], s["study"]): s for s in get_json(f"{base}/tuning/api/studies")["studies"]}
    line = index[("dash-json", "pruned")]
    states = [t.state.name for t in study.trials]
    assert line["trials"]["COMPLETE"] == states.count("COMPLETE")
    assert line["trials"]["PRUNED"] == states.count("PRUNED") > 0
    assert line["n_trials"] == 30 and line["best"]["value"] == study.best_value
    assert index[("dash-json", "two")]["directions"] == ["minimize", "minimize"]

    full = get_json(study_url(base, "dash-json", "pruned"))
    by_number = {t["number"]: t for t in full["trials"]}
    assert sorted(by_number) == list(range(30))
    for trial in study.trials:
        row = by_number[trial.number]
        assert row["state"] == trial.state.name and row["params"] == trial.params
        assert row["intermediate"] == [[s, v] for s, v in sorted(trial.intermediate_values.items())]
        assert row["worker"] in cluster.scheduler.workers or row["worker"] is None
    # Only what changed since the cursor: nothing, then exactly the new trials.
    assert get_json(study_url(base, "dash-json", "pruned") + f"?since={full['cursor']}")["trials"] == []
    dasktune.optimize(study, pruned_objective, n_trials=3)
    news = get_json(study_url(base, "dash-json", "pruned") + f"?since={full['cursor']}")
    assert sorted(t["number"] for t in news["trials"]) == [30, 31, 32]

    metrics = get(f"{base}/metrics").decode()
    for state in ("COMPLETE", "PRUNED"):
        count = [t.state.name for t in study.trials].count(state)
        assert f'dasktune_trials{{state="{state}",storage="dash-json",study="pruned"}} {count:.1f}' in metrics
    assert f'dasktune_best_value{{storage="dash-json",study="pruned"}} {study.best_value!r}' in metrics

    missing = urllib.request.Request(study_url(base, "dash-json", "nope"))
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(missing, timeout=10)
    assert error.value.code == 404


def test_a_dead_workers_trial_shows_why_it_failed(process_cluster: ProcessCluster) -> None:
    with process_cluster.client() as client:
        study = optuna.create_study(storage=dasktune.DaskStorage(name="dead"), study_name="d")
        run = dasktune.optimize(study, crash_once, n_trials=2, retries=0, detach=True)
        wait_for(lambda: run.status()["running"] == 2, message="two running trials")
        process_cluster.kill(process_cluster.workers[0])
        base = client.dashboard_link.replace("/status", "")
        url = study_url(base.replace("localhost", "127.0.0.1"), "dead", "d")

        def failed() -> list:
            return [t for t in get_json(url)["trials"] if t["state"] == "FAIL"]

        (row,) = wait_for(failed, message="the dead worker's trial to FAIL")
        assert "died" in row["fail_reason"] and row["worker"]
        run.cancel()


def test_preload_lists_the_page_among_the_plots_and_in_the_nav_bar(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path, scheduler_args=["--preload", "dasktune"])
    try:
        cluster.start_scheduler()
        with cluster.client() as client:
            base = client.dashboard_link.replace("/status", "")
            plots = get_json(f"{base}/individual-plots.json")
            assert "/individual-tuning" in plots.values()  # what the JupyterLab extension lists
            app = get(f"{base}/individual-tuning").decode()
            assert "bokeh" in app.lower() and '<a href="tuning">Tuning</a>' in app  # in the frame
            # The navigation bar has Tuning, and "More..." -> Tuning opens the same page.
            status = get(f"{base}/status").decode()
            assert '<a href="tuning">Tuning</a>' in status
            assert '<li><a href="tuning">Tuning</a></li>' in status
            assert 'href="individual-tuning"' not in status
            assert get_json(f"{base}/tuning/api/studies") == {"studies": []}
    finally:
        cluster.close()




# -- the study page's figures, built in-process from the scheduler's view ----------------


def tuning_doc(cluster: LocalCluster, storage: str, study: str) -> StudyDoc:
    """The study page's figures as the scheduler builds them for a browser."""
    plugin = cluster.scheduler.plugins["dasktune-tuning"]
    return StudyDoc(plugin.state.study(storage, study))


def mixed_space(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    units = trial.suggest_int("units", 8, 512, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    kind = trial.suggest_categorical("kind", ["tanh", "relu", "gelu"])
    return lr * units + dropout + ["tanh", "relu", "gelu"].index(kind)


def test_log_parameters_are_on_log_axes_and_categoricals_in_their_distributions_order(
    cluster: LocalCluster, client: Client
) -> None:
    study = optuna.create_study(
        storage=dasktune.DaskStorage(name="dash-axes"), study_name="axes",
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    dasktune.optimize(study, mixed_space, n_trials=15)
    doc = tuning_doc(cluster, "dash-axes", "axes")
    layout = doc.layout()

    def plot(name: str):
        return layout.select_one({"name": f"param_plot:{name}"})

    assert isinstance(plot("lr").x_scale, LogScale) and isinstance(plot("units").x_scale, LogScale)
    assert isinstance(plot("dropout").x_scale, LinearScale)
    assert isinstance(plot("kind").x_scale, CategoricalScale)
    # The distribution's order, not the order trials happened to pick them in.
    assert list(plot("kind").x_range.factors) == ["tanh", "relu", "gelu"]
    json.dumps(json_item(layout))  # what the page embeds

    sources = doc.update(0)["sources"]
    complete = {t.number: t for t in study.trials if t.state.name == "COMPLETE"}
    for name in ("lr", "units", "dropout", "kind"):
        data = sources[f"param:{name}"]["data"]
        assert sorted(data["number"]) == sorted(complete)
        for number, x, value in zip(data["number"], data["x"], data["value"]):
            assert x == complete[number].params[name] and value == complete[number].value


def first_step_pruned(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    for step in range(3):
        trial.report(x, step)  # a trial over 0.5 is over it from its first step
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x


def test_trials_pruned_at_their_first_step_show_on_the_intermediate_values_plot(
    cluster: LocalCluster, client: Client
) -> None:
    study = optuna.create_study(
        storage=dasktune.DaskStorage(name="dash-pruned"), study_name="p",
        sampler=optuna.samplers.RandomSampler(seed=2),
        pruner=optuna.pruners.ThresholdPruner(upper=0.5),  # x > 0.5: pruned at step 0
    )
    dasktune.optimize(study, first_step_pruned, n_trials=20)
    pruned = {t.number for t in study.trials if t.state.name == "PRUNED"}
    assert pruned and all(list(study.trials[n].intermediate_values) == [0] for n in pruned)
    doc = tuning_doc(cluster, "dash-pruned", "p")
    layout = doc.layout()

    ends = doc.update(0)["sources"]["curve_ends"]["data"]
    shown = {n: (step, state) for n, step, state in zip(ends["number"], ends["step"], ends["state"])}
    assert {n: shown[n] for n in pruned} == {n: (0, "PRUNED") for n in pruned}
    assert len(shown) == len(study.trials)
    # Each curve ends in a marker of that source (a one-point line draws nothing), and the
    # markers carry a legend by state.
    curves = layout.select_one({"name": "curves_plot"})
    markers = [r for r in curves.renderers if r.data_source.name == "curve_ends"]
    assert len(markers) == 1 and type(markers[0].glyph).__name__ == "Scatter"
    (item,) = curves.legend[0].items
    assert item.label.field == "state" and item.renderers == markers
    timeline = layout.select_one({"name": "timeline_plot"})
    assert timeline.legend[0].items[0].label.field == "state"


def test_tables_show_parameters_as_columns_whole_states_and_short_workers(
    cluster: LocalCluster, client: Client
) -> None:
    study = optuna.create_study(storage=dasktune.DaskStorage(name="dash-tables"), study_name="t")
    run = dasktune.optimize(study, mixed_space, n_trials=6)
    doc = tuning_doc(cluster, "dash-tables", "t")
    table = doc.layout().select_one({"name": "latest_table"})
    titles = {c.title: c for c in table.columns}
    assert {"lr", "units", "dropout", "kind"} <= set(titles)
    assert titles["state"].width >= 100  # "COMPLETE" fits
    update = doc.update(0)
    latest = update["sources"]["latest"]["data"]
    assert latest["number"] == list(range(5, -1, -1))
    assert latest["param:kind"] == [study.trials[n].params["kind"] for n in latest["number"]]
    workers = {address.split("://", 1)[1] for address in cluster.scheduler.workers}
    assert set(latest["worker"]) <= workers  # host:port, no tcp://
    runs = update["sources"]["runs"]["data"]
    assert runs["run"] == [run.run_id] and runs["finished"] == [6] and runs["n_trials"] == [6]
    assert runs["outcome"] == ["finished"]


def test_names_in_urls_are_decoded_once(cluster: LocalCluster, client: Client) -> None:
    storage = dasktune.DaskStorage(name="dash 50%/b")
    for name, value in (("x%41", 1.0), ("xA", 2.0)):
        study = optuna.create_study(storage=storage, study_name=name)
        study.add_trial(optuna.trial.create_trial(value=value))
    base = dashboard(cluster)
    assert get_json(study_url(base, "dash 50%/b", "x%41"))["best"]["value"] == 1.0
    page = get(study_url(base, "dash 50%/b", "x%41", kind="study")).decode()
    assert "<span id='study-name'>x%41</span>" in page
    # The study list links each study to its own page.
    table = get_json(f"{base}/tuning/page/studies")["sources"]["studies"]["data"]
    links = dict(zip(table["study"], table["study_url"]))
    assert "<span id='study-name'>xA</span>" in get(f"{base}/{links['xA']}").decode()
    assert "<span id='study-name'>x%41</span>" in get(f"{base}/{links['x%41']}").decode()
    mounted = f"{base}/tuning/optuna/{quote('dash 50%/b', safe='')}/api/studies"
    assert sorted(s["study_name"] for s in get_json(mounted)["study_summaries"]) == ["x%41", "xA"]


def request(url: str, method: str, body: dict | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    sent = urllib.request.Request(url, data=data, method=method,
                                  headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(sent, timeout=30) as response:
        return response.status


def test_optuna_dashboard_writes_reach_every_client_through_the_storage_host(
    cluster: LocalCluster, client: Client
) -> None:
    study = optuna.create_study(storage=dasktune.DaskStorage(name="dash-writes"), study_name="w")
    dasktune.optimize(study, mixed_space, n_trials=3)
    asked = study.ask()  # a human-in-the-loop trial, told in optuna-dashboard
    api = f"{dashboard(cluster)}/tuning/optuna/dash-writes/api"
    study_id, trial_id = compat.study_id(study), compat.trial_id(asked)

    assert request(f"{api}/studies/{study_id}/note", "PUT", {"version": 1, "body": "seen"}) == 204
    checked = {"user_attrs": {"checked": "yes"}}
    assert request(f"{api}/trials/{trial_id}/user-attrs", "POST", checked) == 204
    told = {"state": "Complete", "values": [0.25]}
    assert request(f"{api}/trials/{trial_id}/tell", "POST", told) == 204

    # Another client's replica, and the scheduler's own view, see every one of them.
    other = optuna.load_study(study_name="w", storage=dasktune.DaskStorage(name="dash-writes"))
    assert optuna_dashboard.get_note(other) == "seen"
    assert other.trials[3].user_attrs == {"checked": "yes"}
    assert other.trials[3].state.name == "COMPLETE" and other.trials[3].value == 0.25
    view = cluster.scheduler.plugins["dasktune-tuning"].state.study("dash-writes", "w")
    assert view.rows[3]["state"] == "COMPLETE"

    assert request(f"{api}/studies/{study_id}", "DELETE", {}) == 204
    assert "w" not in optuna.get_all_study_names(dasktune.DaskStorage(name="dash-writes"))


# -- in a real browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; CI does)")
    playwright = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path: Path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.text} at {m.location['url']}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"{e} {e.stack}"))
    page.errors = errors
    yield page
    page.close()


def shoot(page, path: Path, readme: bool = False) -> None:
    """A full-page screenshot, kept as a test artefact. ``readme``: the README shows it;
    ``DASKTUNE_DOCS_SCREENSHOTS=docs pytest ...`` refreshes the copy in ``docs/``."""
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    docs = os.environ.get("DASKTUNE_DOCS_SCREENSHOTS")
    if readme and docs:
        shutil.copy(path, Path(docs) / path.name)


def source_sizes(page, names: list[str]) -> dict[str, int]:
    """Rows in each named Bokeh source of the page."""
    return page.evaluate(
        """(names) => Object.fromEntries(names.map(n => [n,
            Object.values(Bokeh.documents[0].get_model_by_name(n).data)[0].length]))""",
        names,
    )


def plotly_data(page, element_id: str):
    """The traces optuna-dashboard drew into the Plotly element ``element_id`` (or None)."""
    return page.evaluate(
        """(id) => { const e = document.getElementById(id);
            return e && e.data ? e.data.map(t => ({type: t.type, y: t.y ? Array.from(t.y) : null,
              dimensions: t.dimensions ? t.dimensions.map(d => [d.label, d.values.length]) : null}))
            : null; }""",
        element_id,
    )


def browsed_objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 1e-3, 10, log=True)
    kind = trial.suggest_categorical("kind", ["b", "a"])
    for step in range(3):
        trial.report(x + step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x + (kind == "a")


def slow_browsed_objective(trial: optuna.Trial) -> float:
    time.sleep(0.4)
    return browsed_objective(trial)


def check_study_page(page, study: optuna.Study) -> None:
    """The study page's figures hold every trial of the (finished) study."""
    trials = study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    wait_for(lambda: int(page.locator("#count-COMPLETE").inner_text()) == len(complete),
             timeout=30, message="the final count")
    with_values = [t for t in trials if t.intermediate_values]
    names = ["history", "timeline", "curves", "curve_ends", "param:x", "param:kind", "latest", "top", "runs"]
    assert source_sizes(page, names) == {
        "history": len(complete), "timeline": len(trials), "curves": len(with_values),
        "curve_ends": len(with_values), "param:x": len(complete), "param:kind": len(complete),
        "latest": min(len(trials), 20), "top": min(len(complete), 20), "runs": 1,
    }
    # Whole words in the tables' cells (a clipped cell would scroll).
    clipped = page.evaluate(
        """() => Array.from(document.querySelectorAll('.slick-cell'))
            .filter(c => c.textContent === 'COMPLETE' && c.scrollWidth > c.clientWidth).length"""
    )
    assert clipped == 0


@pytest.mark.parametrize("when", ["finished", "live"])
def test_from_the_dask_dashboard_to_optuna_dashboard(
    cluster: LocalCluster, client: Client, page, tmp_path: Path, when: str
) -> None:
    name = f"study-{when}"
    storage = dasktune.DaskStorage(name="dash-browser")
    study = optuna.create_study(
        storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(seed=3),
        pruner=optuna.pruners.ThresholdPruner(upper=5.0),
    )
    run = None
    if when == "finished":
        dasktune.optimize(study, browsed_objective, n_trials=30)
    else:
        run = dasktune.optimize(study, slow_browsed_objective, n_trials=100, detach=True)
        wait_for(lambda: len(study.get_trials(states=[TrialState.COMPLETE])) >= 3,
                 message="a few finished trials")
    # An objective may return inf, which JSON has no literal for.
    infinite = optuna.create_study(storage=storage, study_name=f"infinite-{when}")
    infinite.add_trial(optuna.trial.create_trial(value=float("inf"), intermediate_values={0: float("nan")}))
    base = dashboard(cluster)

    # The Dask dashboard -> "Tuning" in its navigation bar -> the study list.
    page.goto(f"{base}/status")
    page.locator(".navbar a[href='tuning']").click()
    page.wait_for_url("**/tuning")
    link = page.locator(f".bk-DataTable a:text-is('{name}')")
    link.wait_for()
    assert page.evaluate(
        """(name) => { const d = Bokeh.documents[0].get_model_by_name('studies').data;
            return d.best[Array.from(d.study).indexOf(name)] === Infinity; }""",
        f"infinite-{when}",
    )
    shoot(page, tmp_path / f"tuning-index-{when}.png")

    # -> the study's page, which follows a live run by itself.
    link.click()
    study_page = page.url
    assert study_page.endswith(f"/tuning/study/dash-browser/{name}")
    wait_for(lambda: page.evaluate("() => Number(document.body.dataset.updates || 0)") > 0,
             message="the first update")
    if run is None:
        check_study_page(page, study)
        shoot(page, tmp_path / "tuning-study.png", readme=True)
    else:
        shown = int(page.locator("#count-COMPLETE").inner_text())
        wait_for(lambda: int(page.locator("#count-COMPLETE").inner_text()) > shown, timeout=60,
                 message="the page to update by itself")
        assert page.locator("#count-RUNNING").inner_text() != "0"
        shoot(page, tmp_path / "tuning-study-running.png")

    # -> optuna-dashboard's view of the same study, read from the scheduler's storage.
    page.locator("#optuna-link").click()
    page.wait_for_url(f"**/tuning/optuna/dash-browser/dashboard/studies/{compat.study_id(study)}")
    importances = wait_for(lambda: plotly_data(page, "graph-hyperparameter-importances"), timeout=60,
                           message="the importances plot")
    assert sorted(importances[0]["y"]) == ["kind", "x"]
    shoot(page, tmp_path / f"optuna-dashboard-{when}.png")
    if run is None:
        shoot(page, tmp_path / "optuna-dashboard.png", readme=True)

    page.locator("a[href$='/smartSelection']").click()
    parallel = wait_for(lambda: plotly_data(page, "plot-parallel-coordinate"), timeout=60,
                        message="the parallel coordinate plot")
    dimensions = dict(parallel[0]["dimensions"])
    rows = page.locator("tbody tr")
    finished = [t for t in study.trials if t.state.is_finished()]
    if run is None:
        assert dimensions == {"Objective 0": len(finished), "kind": len(finished), "x": len(finished)}
        wait_for(lambda: rows.count() == len(study.trials), message="a row per trial")
    else:  # what it had read by then; a trial just started has no parameters yet, and
        # optuna-dashboard then draws only the parameters every trial has
        assert "Objective 0" in dimensions and set(dimensions) <= {"Objective 0", "kind", "x"}
        assert 3 <= dimensions["Objective 0"] <= len(finished)
        wait_for(lambda: rows.count() >= 3, message="rows of the trial table")
    assert rows.nth(0).locator("td").nth(0).inner_text() == "0"
    assert rows.nth(0).locator("td").nth(1).inner_text() in ("Complete", "Pruned")
    shoot(page, tmp_path / f"optuna-trials-{when}.png")
    assert not page.errors, page.errors

    # A note written there is every client's.
    page.locator("a[href$='/note']").click()
    page.locator("button:has(svg[data-testid=EditIcon])").click()
    page.locator("textarea").first.fill(f"checked in the {when} dashboard")
    page.get_by_role("button", name="Save").click()
    other = dasktune.DaskStorage(name="dash-browser")
    wait_for(lambda: optuna_dashboard.get_note(optuna.load_study(study_name=name, storage=other))
             == f"checked in the {when} dashboard", message="the note, read by another client")
    # optuna-dashboard 0.21's script reads a JSON body from the 204 its own server answers
    # a saved note with, and fails on it, served alone as here (the note is saved).
    assert all("reading 'status'" in e for e in page.errors), page.errors

    if run is not None:  # the run ends; its page then shows every trial
        run.wait()
        page.goto(study_page)
        check_study_page(page, study)
        shoot(page, tmp_path / "tuning-study-live-finished.png")


def test_a_10000_trial_study_renders_and_updates_by_small_deltas(
    cluster: LocalCluster, client: Client, page, tmp_path: Path
) -> None:
    seed = optuna.create_study(study_name="big", sampler=optuna.samplers.RandomSampler(seed=0))
    seed.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=10_000)
    storage = dasktune.DaskStorage(compat.study_storage(seed), name="dash-big")  # copied over
    study = optuna.load_study(study_name="big", storage=storage)
    base = dashboard(cluster)
    url = study_url(base, "dash-big", "big")
    full = get(url)
    cursor = json.loads(full)["cursor"]

    page.goto(study_url(base, "dash-big", "big", kind="study"))
    wait_for(lambda: page.locator("#count-COMPLETE").inner_text() == "10000", timeout=60,
             message="10,000 trials on the page")
    dasktune.optimize(study, lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    delta = get(url + f"?since={cursor}")
    assert sorted(t["number"] for t in json.loads(delta)["trials"]) == list(range(10_000, 10_005))
    assert len(delta) * 500 < len(full), (len(delta), len(full))  # what changed, not the study
    page_cursor = json.loads(get(study_url(base, "dash-big", "big", kind="page/study")))["cursor"]
    dasktune.optimize(study, lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    page_delta = get(study_url(base, "dash-big", "big", kind="page/study") + f"?since={page_cursor}")
    assert len(page_delta) < 20_000, len(page_delta)  # the page too gets what changed
    wait_for(lambda: page.locator("#count-COMPLETE").inner_text() == "10010", timeout=30,
             message="the new trials on the page")
    assert source_sizes(page, ["history", "timeline"]) == {"history": 10_010, "timeline": 10_010}
    page.screenshot(path=str(tmp_path / "big-study.png"))
    assert not page.errors, page.errors
