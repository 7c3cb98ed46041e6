"""The Tuning page on the Dask dashboard: JSON, /metrics, both install paths, and what a
person sees in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import io
import json
from pathlib import Path
import shutil
import time
import urllib.request

from distributed import Client
from distributed import LocalCluster
import optuna
import pytest

import dasktune
from conftest import ProcessCluster
from conftest import wait_for

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
    from urllib.parse import quote

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


def test_preload_lists_the_page_among_the_dashboards_plots(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path, scheduler_args=["--preload", "dasktune"])
    try:
        cluster.start_scheduler()
        with cluster.client() as client:
            base = client.dashboard_link.replace("/status", "")
            plots = get_json(f"{base}/individual-plots.json")
            assert "/individual-tuning" in plots.values()
            assert b"bokeh" in get(f"{base}/individual-tuning").lower()
            assert get_json(f"{base}/tuning/api/studies") == {"studies": []}
    finally:
        cluster.close()


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
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    yield page
    page.close()


def canvas_is_drawn(locator) -> bool:
    """The plot's canvas has pixels of more than one colour."""
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(locator.screenshot()), format="png")
    return pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.01


def test_the_page_shows_studies_and_updates_live(
    cluster: LocalCluster, client: Client, page, tmp_path: Path
) -> None:
    storage = dasktune.DaskStorage(name="dash-browser")
    study = optuna.create_study(
        storage=storage, study_name="live", pruner=optuna.pruners.MedianPruner(n_startup_trials=2)
    )
    dasktune.optimize(study, pruned_objective, n_trials=12)
    # An objective may return inf (and report nan), which JSON has no literal for.
    infinite = optuna.create_study(storage=storage, study_name="infinite")
    infinite.add_trial(optuna.trial.create_trial(value=float("inf"), intermediate_values={0: float("nan")}))
    base = dashboard(cluster)

    page.goto(f"{base}/tuning")
    row = page.locator('#studies tr[data-study="live"]')
    row.wait_for()
    assert page.locator('#studies tr[data-study="infinite"] td.best').inner_text() == "Infinity"
    assert row.locator("td.COMPLETE").inner_text() == str(
        [t.state.name for t in study.trials].count("COMPLETE")
    )

    row.locator("a").click()
    page.wait_for_url("**/tuning/study/dash-browser/live")
    page.locator("#counts b").first.wait_for()
    canvases = page.locator(".bk-Canvas canvas, canvas")
    wait_for(lambda: canvases.count() >= 4, message="the plots")
    run = dasktune.optimize(study, slow, n_trials=6, detach=True)

    def shown_complete() -> int:
        text = page.locator("#counts .COMPLETE b").inner_text()
        return int(text)

    first = shown_complete()
    wait_for(lambda: shown_complete() > first, timeout=30, message="the page to update by itself")
    run.wait()
    done = len([t for t in study.trials if t.state.name == "COMPLETE"])
    wait_for(lambda: shown_complete() == done, timeout=30, message="the final count")
    assert page.locator("#best").inner_text() == f"{study.best_value:.6g}" or float(
        page.locator("#best").inner_text()
    ) == pytest.approx(study.best_value, rel=1e-5)
    drawn = [canvas_is_drawn(canvases.nth(i)) for i in range(min(canvases.count(), 4))]
    assert all(drawn), drawn
    # Every plot and table has the study's data (not just axes).
    sizes = page.evaluate(
        """() => Object.fromEntries(["history", "timeline", "curves", "params", "latest", "top"]
            .map(n => [n, Object.values(Bokeh.documents[0].get_model_by_name(n).data)[0].length]))"""
    )
    n = len(study.trials)
    assert sizes == {"history": done, "timeline": n, "curves": 12, "params": done,
                     "latest": min(n, 20), "top": min(done, 20)}, sizes
    shot = tmp_path / "tuning-page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert not page.errors, page.errors


def test_a_10000_trial_study_renders_and_updates_by_small_deltas(
    cluster: LocalCluster, client: Client, page, tmp_path: Path
) -> None:
    seed = optuna.create_study(study_name="big", sampler=optuna.samplers.RandomSampler(seed=0))
    seed.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=10_000)
    storage = dasktune.DaskStorage(seed._storage, name="dash-big")  # copied to the scheduler
    study = optuna.load_study(study_name="big", storage=storage)
    base = dashboard(cluster)
    url = study_url(base, "dash-big", "big")
    full = get(url)
    cursor = json.loads(full)["cursor"]

    page.goto(study_url(base, "dash-big", "big", kind="study"))
    wait_for(lambda: page.locator("#counts .COMPLETE b").inner_text() == "10000", timeout=60,
             message="10,000 trials on the page")
    dasktune.optimize(study, lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    delta = get(url + f"?since={cursor}")
    assert sorted(t["number"] for t in json.loads(delta)["trials"]) == list(range(10_000, 10_005))
    assert len(delta) * 500 < len(full), (len(delta), len(full))  # what changed, not the study
    wait_for(lambda: page.locator("#counts .COMPLETE b").inner_text() == "10005", timeout=30,
             message="the new trials on the page")
    page.screenshot(path=str(tmp_path / "big-study.png"))
    assert not page.errors, page.errors
