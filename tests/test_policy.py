"""The submission layer's decisions, from plain data, without a cluster."""

from __future__ import annotations

import pytest

from dasktune.submit import policy


def status(**overrides) -> dict:
    base = {
        "n_trials": 10,
        "timeout": None,
        "claimed": 0,
        "running": 0,
        "stopped": None,
        "time_left": None,
        "done": False,
    }
    return {**base, **overrides}


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
    "overrides",
    [{"claimed": 10}, {"stopped": "study.stop() called"}, {"time_left": 0.0, "n_trials": None}],
)
def test_no_runner_once_no_trial_may_start(overrides: dict) -> None:
    assert not policy.can_start_trials(status(**overrides))
    assert policy.runners_to_start(status(**overrides), 0, slots=4, concurrency=None) == 0


def test_finished_only_when_done_and_no_runner_is_left() -> None:
    assert not policy.is_finished(status(done=True), alive=1)
    assert not policy.is_finished(status(done=False), alive=0)
    assert policy.is_finished(status(done=True), alive=0)


@pytest.mark.parametrize(
    "values, n, reason",
    [
        (1.5, 1, None),
        ([1.0, 2.0], 2, None),
        (None, 1, "The value None could not be cast to float."),
        (float("nan"), 1, "The value nan is not acceptable"),
        ("abc", 1, "The value 'abc' could not be cast to float"),
        ([1.0], 2, "The number of the values 1 did not match the number of the objectives 2"),
    ],
)
def test_infeasible_values_use_optunas_messages(values, n: int, reason: str | None) -> None:
    assert policy.infeasible_values(values, n) == reason
