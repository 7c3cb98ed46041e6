"""A run's lifecycle on the scheduler, without a cluster: the run book alone, then the host
that composes it with the store (an in-memory Optuna storage)."""

from __future__ import annotations

import weakref

import pytest
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

from dasktune import compat
from dasktune.storage import runs
from dasktune.storage.host import StorageHost
from dasktune.storage.runs import RunBook
from dasktune.storage.wire import RunTerms

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna and distributed


def terms(
    n_trials: int | None, timeout: float | None, retries: int | None, client: str | None, gated: bool = False
) -> RunTerms:
    return {"n_trials": n_trials, "timeout": timeout, "retries": retries, "client": client, "gated": gated}


def _book(n_trials: int | None = 4, **kwargs) -> RunBook:
    book = RunBook()
    book.open("r", 0, terms(n_trials, kwargs.get("timeout"), kwargs.get("retries", 0), kwargs.get("client")))
    return book


class NewTrials:
    """What the store does for a granted claim: start that many trials, here numbered on."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self, study_id: int, n: int) -> list[int]:
        self.next += n
        return list(range(self.next - n, self.next))


#: Each book's trial ids, numbered on across its claims.
_trials: weakref.WeakKeyDictionary[RunBook, NewTrials] = weakref.WeakKeyDictionary()


def claim(book: RunBook, run_id: str = "r", key: str | None = "a", wanted: int = 1,
          pace: float = 0.0, worker: str = "w") -> list[int]:
    trials = _trials.setdefault(book, NewTrials())
    return book.claim(run_id, key, wanted, pace, worker, trials)


def test_claims_are_granted_only_within_the_budget() -> None:
    book = _book(n_trials=4)
    book.register_runner("r", "a")
    book.register_runner("r", "b")
    assert claim(book, key="a", wanted=10, worker="w1") == [0, 1]  # the last trials are spread
    assert claim(book, key="b", wanted=10, worker="w2") == [2]  # 2 left for 2 runners: one each
    assert claim(book, key="b", wanted=10, worker="w2") == [3]
    assert claim(book, key="a") == []
    status, _ = book.status("r")
    assert status["claimed"] == 4 and status["running"] == 4 and not status["done"]
    book.trials_finished([0, 1, 2, 3])
    status, finished = book.status("r")
    assert status["done"] and status["outcome"] == "finished" and finished == [0, 1, 2, 3]


def test_a_claim_never_outlasts_the_deadline_at_the_runners_pace() -> None:
    book = _book(n_trials=None, timeout=1.0)
    assert len(claim(book, key=None, wanted=64, pace=0.1)) <= 10


def test_a_graceful_end_lets_running_trials_finish() -> None:
    book = _book()
    claim(book)
    assert book.end("r", "stopped", "study.stop() was called") == []
    status, _ = book.status("r")
    assert not status["can_claim"] and not status["done"] and status["end_reason"].startswith("study")
    book.trials_finished([0])
    assert book.status("r")[0]["outcome"] == "stopped"


@pytest.mark.parametrize("outcome", ["cancelled", "aborted", "orphaned"])
def test_an_abortive_end_names_the_running_trials_to_fail(outcome: str) -> None:
    book = _book()
    claim(book, wanted=2)
    assert sorted(book.end("r", outcome, "why")) == [0, 1]
    assert book.end("r", "cancelled", "a second reason") == [0, 1]
    assert book.status("r")[0]["end_reason"] == "why"  # the first reason is kept


def test_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="not 'paused'"):
        _book().end("r", "paused", "why")


def test_a_released_runner_is_refused_its_next_claim() -> None:
    book = _book(n_trials=None)
    book.register_runner("r", "a")
    assert book.runner_released("a")
    assert not book.runner_released("someone-else")
    assert claim(book, key="a") == []
    assert book.register_runner("r", "a") == 1  # run again by Dask: a new index, a new seed
    assert claim(book, key="a") == [0]


def test_a_lost_trial_that_is_retried_gives_its_claim_back() -> None:
    book = _book(n_trials=2)
    claim(book, wanted=2)
    book.lost(0, retried=True)
    book.lost(1, retried=False)
    status, finished = book.status("r")
    assert status["claimed"] == 1 and status["lost"] == 2 and finished == [1]
    assert status["can_claim"]


def test_only_the_departed_clients_attached_runs_are_orphaned() -> None:
    book = RunBook()
    book.open("attached", 0, terms(None, None, 0, "client-1"))
    book.open("detached", 0, terms(None, None, 0, None))
    book.open("other", 0, terms(None, None, 0, "client-2"))
    assert book.client_removed("client-1") == ["attached"]


def test_a_deleted_studys_live_runs_end_and_its_ended_runs_go() -> None:
    book = RunBook()
    book.open("live", 0, terms(None, None, 0, None))
    claim(book, "live")
    book.open("ended", 0, terms(1, None, 0, None))
    claim(book, "ended")
    book.trials_finished([1])
    book.open("other", 1, terms(None, None, 0, None))
    book.study_deleted(0, "study 's' was deleted")
    assert "ended" not in book.runs
    status, finished = book.status("live")
    assert status["done"] and status["outcome"] == "deleted" and finished == []
    assert book.run_of(0) is None
    assert not book.status("other")[0]["done"]


def test_ended_runs_are_dropped_after_their_retention(monkeypatch) -> None:
    book = RunBook()
    for i in range(runs.MAX_ENDED_RUNS + 5):
        book.open(f"r{i}", 0, terms(1, None, 0, None))
        claim(book, f"r{i}")
        book.trials_finished([i])
    book.open("live", 0, terms(None, None, 0, None))
    assert len(book.expire()) == 5
    assert len(book.runs) == runs.MAX_ENDED_RUNS + 1
    assert len(book.expire(now=float("inf"))) == runs.MAX_ENDED_RUNS
    assert list(book.runs) == ["live"]
    with pytest.raises(KeyError, match="No optimize run 'r0'"):
        book.get("r0")


def _host_with_run(n_trials: int | None = 3, retries: int = 1) -> tuple[StorageHost, int]:
    host = StorageHost(InMemoryStorage(), None)
    (study_id,), _ = host.execute([["create_new_study", [[1], "s"], None]])
    host.execute([["open_run", ["r", study_id, terms(n_trials, None, retries, None)], None]])
    return host, study_id


def test_the_host_tells_the_run_which_trials_finished() -> None:
    host, study_id = _host_with_run()
    (claimed,), _ = host.execute([["claim_trials", ["r", "k", 5, 0.0], None]], worker="w")
    assert len(claimed) == 3
    host.execute([["set_trial_state_values", [t, TrialState.COMPLETE.value, [1.0]], None] for t in claimed])
    status, finished = host.runs.status("r")
    assert status["done"] and sorted(finished) == sorted(claimed)
    (studies,) = [host.dump()]
    assert {t["worker"] for t in studies[0]["trials"]} == {"w"}
    # The worker is the scheduler's knowledge, never written into the trial.
    assert all(not key.startswith("dasktune") for t in host.backend.get_all_trials(study_id) for key in t.system_attrs)


def test_a_dead_workers_trials_fail_and_are_retried_with_their_parameters() -> None:
    host, study_id = _host_with_run(n_trials=2)
    (claimed,), _ = host.execute([["claim_trials", ["r", "k", 2, 0.0], None]], worker="w")
    assert host.worker_removed("w", "worker w died of old age") == claimed
    trials = host.backend.get_all_trials(study_id)
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2
    assert trials[0].system_attrs["fail_reason"] == "worker w died of old age"
    assert trials[2].system_attrs["retry_history"] == [0]
    status, _ = host.runs.status("r")
    assert status["claimed"] == 0 and status["lost"] == 2 and status["can_claim"]
    (retried,), _ = host.execute([["claim_trials", ["r", "k", 2, 0.0], None]], worker="w2")
    assert sorted(retried) == [compat.trial_id(t) for t in trials[2:]]  # WAITING ones first


def test_cancelling_fails_running_trials_with_the_reason() -> None:
    host, study_id = _host_with_run(n_trials=None)
    host.execute([["claim_trials", ["r", "k", 2, 0.0], None]], worker="w")
    status = host.end_run("r", "cancelled", "by the user")
    assert status["done"] and status["outcome"] == "cancelled"
    trials = host.backend.get_all_trials(study_id)
    assert {t.state for t in trials} == {TrialState.FAIL}
    assert {t.system_attrs["fail_reason"] for t in trials} == {"run cancelled: by the user"}


def test_deleting_a_study_ends_its_run_and_keeps_nothing_of_it() -> None:
    host, study_id = _host_with_run(n_trials=None)
    host.execute([["claim_trials", ["r", "k", 2, 0.0], None]], worker="w")
    host.execute([["delete_study", [study_id], None]])
    status, _ = host.runs.status("r")
    assert status["outcome"] == "deleted" and "'s' was deleted" in status["end_reason"]
    assert host.store.running_on("w") == [] and host.store.dump() == []
    assert host.runs.run_of(0) is None
    (claimed,), _ = host.execute([["claim_trials", ["r", "k", 1, 0.0], None]])
    assert claimed == []


def test_a_worker_removed_after_a_deletion_still_fails_other_studies_trials() -> None:
    host, study_id = _host_with_run(n_trials=None)
    (other,), _ = host.execute([["create_new_study", [[1], "other"], None]])
    host.execute([["open_run", ["o", other, terms(None, None, 0, None)], None]])
    host.execute([["claim_trials", ["r", "k", 1, 0.0], None]], worker="w")
    (claimed,), _ = host.execute([["claim_trials", ["o", "k2", 1, 0.0], None]], worker="w")
    host.execute([["delete_study", [study_id], None]])
    assert host.worker_removed("w", "gone") == claimed
    assert host.backend.get_trial(claimed[0]).state == TrialState.FAIL


def test_the_client_of_an_attached_run_leaving_orphans_it() -> None:
    host = StorageHost(InMemoryStorage(), None)
    (study_id,), _ = host.execute([["create_new_study", [[1], "s"], None]])
    host.execute([["open_run", ["r", study_id, terms(None, None, 0, "client-1")], None]])
    host.execute([["claim_trials", ["r", "k", 1, 0.0], None]], worker="w")
    assert host.client_removed("client-1") == ["r"]
    status, _ = host.runs.status("r")
    assert status["done"] and status["outcome"] == "orphaned"
    assert host.backend.get_all_trials(study_id)[0].state == TrialState.FAIL
