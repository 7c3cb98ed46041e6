"""The submission layer's decisions, from plain data, without a cluster. Statuses come from
the scheduler's own run book, so the budget rule is tested where it lives."""

from __future__ import annotations

import logging

import optuna
import pytest

from dasktune.storage.runs import RunBook
from dasktune.storage import session
from dasktune.submit import policy

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna and distributed


def status(n_trials: int | None = 10, claimed: int = 0, running: int = 0, **end: str) -> dict:
    book = RunBook()
    book.open("r", 0, {"n_trials": n_trials, "timeout": None, "retries": 0, "client": None, "gated": False})
    if claimed:
        book.claim("r", "a", claimed, 0.0, "w", lambda study_id, n: list(range(n)))
    book.trials_finished(range(claimed - running))
    if end:
        book.end("r", end["outcome"], end["reason"])
    return dict(book.status("r")[0])


def test_one_runner_per_slot() -> None:
    assert policy.runners_to_start(status(), alive=0, slots=4, concurrency=None) == 4
    assert policy.runners_to_start(status(), alive=3, slots=4, concurrency=None) == 1


def test_concurrency_caps_runners() -> None:
    assert policy.runners_to_start(status(), alive=0, slots=8, concurrency=2) == 2


def test_never_more_runners_than_trials_left() -> None:
    assert policy.runners_to_start(status(claimed=8, running=1), 0, slots=8, concurrency=None) == 3


def test_a_runner_waits_for_workers_that_do_not_exist_yet() -> None:
    # cluster.adapt() scales up on queued tasks: with no worker, still submit one.
    assert policy.runners_to_start(status(), alive=0, slots=0, concurrency=None) == 1


@pytest.mark.parametrize(
    "run",
    [
        {"claimed": 10},
        {"outcome": "stopped", "reason": "study.stop() was called"},
        {"outcome": "cancelled", "reason": "by the user"},
    ],
)
def test_no_runner_once_no_trial_may_start(run: dict) -> None:
    assert policy.runners_to_start(status(**run), 0, slots=4, concurrency=None) == 0


def test_finished_only_when_done_and_no_runner_is_left() -> None:
    assert not policy.is_finished(status(claimed=10, running=0), alive=1, seen=10)
    assert not policy.is_finished(status(claimed=10, running=1), alive=0, seen=9)
    assert not policy.is_finished(status(claimed=10, running=0), alive=0, seen=9)
    assert policy.is_finished(status(claimed=10, running=0), alive=0, seen=10)


def test_cheap_trials_are_claimed_in_batches_worth_a_bounded_time() -> None:
    assert session.claim_size(None) == 1  # pace unknown: one at a time
    assert session.claim_size(1.0) == 1
    assert session.claim_size(session.CLAIM_AHEAD_SECONDS) == 1
    assert session.claim_size(0.001) == int(session.CLAIM_AHEAD_SECONDS / 0.001)
    assert session.claim_size(1e-9) == session.MAX_BATCH


def test_only_short_trials_ask_ahead_and_only_when_half_a_batch_is_left() -> None:
    assert not session.ask_ahead(0, None)
    assert session.ask_ahead(0, 0.01)
    assert not session.ask_ahead(0, session.PREFETCH_BELOW_SECONDS)
    pace = 0.001
    batch = session.claim_size(pace)
    assert not session.ask_ahead(batch - 1, pace)
    assert session.ask_ahead(batch // 2 - 1, pace)


@pytest.mark.parametrize(
    "values, n",
    [(1.5, 1), ([1.0, 2.0], 2), (None, 1), (float("nan"), 1), ([1.0, "x"], 2), ([1.0], 2)],
)
def test_invalid_values_are_judged_as_optuna_judges_them(values, n: int, caplog) -> None:
    """Optuna's own Study.optimize decides the same values are invalid, with the same words."""
    study = optuna.create_study(directions=["minimize"] * n)
    with caplog.at_level(logging.WARNING, logger="optuna"):
        study.optimize(lambda trial: values, n_trials=1)
    reason = policy.invalid_values(values, n)
    assert (reason is None) == (study.trials[0].state == optuna.trial.TrialState.COMPLETE)
    if reason is not None:
        assert reason in caplog.text


@pytest.mark.parametrize("value", ["1.5", "abc", b"2"])
def test_a_str_is_refused_whole_where_optuna_would_crash(value) -> None:
    # Optuna takes "1.5" as three characters and raises from its own tell.
    assert policy.invalid_values(value, 1) == (
        f"The value {value!r} is a {type(value).__name__}, not a number: an objective returns "
        "a float, or a sequence of floats for several objectives"
    )


def test_slow_trials_send_their_writes_at_once_cheap_ones_with_the_next_claim() -> None:
    assert session.write_delay(None) == session.PROMPT_WRITE_SECONDS  # pace unknown: at once
    assert session.write_delay(1.0) == session.PROMPT_WRITE_SECONDS
    assert session.write_delay(0.001) is None


def test_parameters_leave_before_suggest_returns_unless_trials_are_known_to_be_short() -> None:
    assert session.params_at_once(None)  # pace unknown
    assert session.params_at_once(session.PARAMS_AT_ONCE_SECONDS)
    assert not session.params_at_once(session.PARAMS_AT_ONCE_SECONDS / 2)
