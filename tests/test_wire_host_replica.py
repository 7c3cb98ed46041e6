"""The storage's pure parts, without a cluster: the wire format, the scheduler-side host
and the client-side replica."""

from __future__ import annotations

import math
import time

import msgpack
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.storages import InMemoryStorage
from optuna.trial import create_trial
from optuna.trial import TrialState
import pytest

from dasktune.storage import changelog
from dasktune.storage import requests
from dasktune.storage import wire
from dasktune.storage.host import StorageHost
from dasktune.storage.replica import Replica

pytestmark = pytest.mark.oldest  # also run on the oldest admitted Optuna and distributed


@pytest.mark.parametrize("exc_type", list(wire.ERROR_TYPES.values()))
def test_every_mapped_error_type_round_trips(exc_type: type[Exception]) -> None:
    data = wire.encode_error(exc_type("trial 3 is gone"))
    msgpack.packb(data)
    back = wire.decode_error(data)
    assert type(back) is exc_type
    assert (back.args[0] if isinstance(back, KeyError) else str(back)) == "trial 3 is gone"


def test_unmapped_error_becomes_storage_internal_error_naming_the_original() -> None:
    back = wire.decode_error(wire.encode_error(ZeroDivisionError("boom")))
    assert type(back) is optuna.exceptions.StorageInternalError
    assert str(back) == "ZeroDivisionError: boom"


def test_trial_round_trips_through_plain_data() -> None:
    trial = create_trial(
        params={"x": 0.5, "n": 3, "c": "b"},
        distributions={
            "x": FloatDistribution(1e-3, 1.0, log=True),
            "n": IntDistribution(1, 9, step=2),
            "c": CategoricalDistribution(["a", "b", None]),
        },
        values=[float("inf"), -1.5],
        user_attrs={"nested": {"k": [1, 2.0, None]}},
        system_attrs={"fixed_params": {"x": 0.5}},
        intermediate_values={0: 1.0, 7: float("nan")},
    )
    data = wire.encode_trial(trial)
    back = wire.decode_trial(msgpack.unpackb(msgpack.packb(data)))
    assert back.params == trial.params
    assert back.distributions == trial.distributions
    assert back.values == trial.values
    assert back.user_attrs == trial.user_attrs
    assert back.system_attrs == trial.system_attrs
    assert back.intermediate_values[0] == 1.0 and math.isnan(back.intermediate_values[7])
    assert back.datetime_start == trial.datetime_start
    assert back.datetime_complete == trial.datetime_complete


def test_attribute_that_is_not_json_is_refused_naming_it() -> None:
    with pytest.raises(TypeError, match=r"Attribute value \{1\} is not JSON serializable"):
        wire.encode_attr({1})


def _op(name: str, *args, request_id: str | None = None) -> list:
    return [name, list(args), request_id]


def _host_with_study() -> tuple[StorageHost, int]:
    host = StorageHost(InMemoryStorage(), None)
    (study_id,), error = host.execute([_op("create_new_study", [1], "s")])
    assert error is None
    return host, study_id


def test_delta_holds_only_what_changed_since_the_cursor() -> None:
    host, study_id = _host_with_study()
    for _ in range(100):
        host.execute([_op("create_new_trial", study_id, None)])
    [delta], missing = host.deltas({}, [study_id])
    assert missing == [] and len(delta["trials"]) == 100 and delta["meta"]["name"] == "s"
    cursor = delta["cursor"]
    (trial_id,), _ = host.execute([_op("create_new_trial", study_id, None)])
    host.execute([_op("set_trial_state_values", 7, TrialState.COMPLETE.value, [1.0])])
    [delta], _ = host.deltas({study_id: cursor}, [study_id])
    assert sorted(wire.unpack_trial(t)["id"] for t in delta["trials"]) == [7, trial_id]
    assert delta["meta"] is None  # the study itself did not change
    assert host.deltas({study_id: delta["cursor"]}, [study_id]) == ([], [])


def test_a_retried_request_is_applied_once() -> None:
    host, study_id = _host_with_study()
    first, _ = host.execute([_op("create_new_trial", study_id, None, request_id="r-1")])
    again, _ = host.execute([_op("create_new_trial", study_id, None, request_id="r-1")])
    assert first == again
    assert len(host.backend.get_all_trials(study_id)) == 1


def test_operations_stop_at_the_first_error_and_report_its_index() -> None:
    host, study_id = _host_with_study()
    results, error = host.execute(
        [
            _op("create_new_trial", study_id, None),
            _op("set_trial_state_values", 99, TrialState.COMPLETE.value, [1.0]),
            _op("create_new_trial", study_id, None),
        ]
    )
    assert results == [0]
    assert error == {"type": "KeyError", "message": "No trial with trial_id 99 exists.", "op": 1}
    assert len(host.backend.get_all_trials(study_id)) == 1


def test_unknown_operation_is_refused() -> None:
    host, _ = _host_with_study()
    assert host.execute([_op("__init__")])[1] == {
        "type": "ValueError",
        "message": "Unknown storage operation '__init__'.",
        "op": 0,
    }


def test_deleted_study_is_reported_missing() -> None:
    host, study_id = _host_with_study()
    host.execute([_op("delete_study", study_id)])
    assert host.deltas({}, [study_id]) == ([], [study_id])


def test_host_rebuilt_from_a_durable_backend_has_the_same_studies(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    host = StorageHost(optuna.storages.RDBStorage(url), url)
    (study_id,), _ = host.execute([_op("create_new_study", [1], "durable")])
    (done,), _ = host.execute([_op("create_new_trial", study_id, None)])
    _, error = host.execute(
        [
            _op("set_trial_state_values", done, TrialState.COMPLETE.value, [1.0]),
            _op("set_study_user_attr", study_id, "k", '"v"'),
            _op("create_new_trial", study_id, None),
        ]
    )
    assert error is None
    rebuilt = StorageHost(optuna.storages.RDBStorage(url), url)
    assert rebuilt.epoch != host.epoch
    before, after = host.dump(), rebuilt.dump()
    assert before[0]["trials"][0] == after[0]["trials"][0]
    assert before[0]["user_attrs"] == after[0]["user_attrs"]
    # The trial that was RUNNING when the old host went away can never be told: FAIL.
    assert after[0]["trials"][1]["state"] == TrialState.FAIL.value
    assert "scheduler stopped" in after[0]["trials"][1]["system_attrs"]


def test_replica_ignores_a_delta_older_than_its_cursor() -> None:
    host, study_id = _host_with_study()
    host.execute([_op("create_new_trial", study_id, None)])
    [old], _ = host.deltas({}, [study_id])
    host.execute([_op("set_trial_state_values", 0, TrialState.COMPLETE.value, [2.0])])
    [new], _ = host.deltas({}, [study_id])
    replica = Replica()
    replica.apply(new)
    replica.apply(old)  # overtaken by the newer reply
    assert replica.trial(0).state == TrialState.COMPLETE
    assert replica.studies[study_id].best.value == 2.0


def test_replica_local_writes_do_not_change_trials_handed_out() -> None:
    host, study_id = _host_with_study()
    host.execute([_op("create_new_trial", study_id, None)])
    replica = Replica()
    replica.apply(host.deltas({}, [study_id])[0][0])
    before = replica.trial(0)
    replica.set_param(0, "x", 0.25, FloatDistribution(0, 1))
    replica.set_intermediate_value(0, 3, 1.5)
    replica.set_attr(0, "user_attrs", "k", "v")
    after = replica.trial(0)
    assert before.params == {} and before.intermediate_values == {} and before.user_attrs == {}
    assert after.params == {"x": 0.25}
    assert after.intermediate_values == {3: 1.5}
    assert after.user_attrs == {"k": "v"}


def test_a_process_keeps_the_answers_to_its_last_writes_and_an_idle_one_none() -> None:
    answers = requests.Answers()
    for n in range(requests.PER_PREFIX + 10):
        answers.keep(f"busy-{n}", n)
    answers.keep("idle-0", "x")
    assert answers.find("busy-0") is requests.MISSING  # beyond the last PER_PREFIX
    assert answers.find(f"busy-{requests.PER_PREFIX + 9}") == requests.PER_PREFIX + 9
    assert len(answers) == requests.PER_PREFIX + 1
    answers.expire(now=time.monotonic() + requests.IDLE_SECONDS + 1)
    assert len(answers) == 0 and answers.find("idle-0") is requests.MISSING


@pytest.mark.parametrize("writes_per_trial", [1, 3, 100])
def test_a_compacted_change_log_stays_small_and_answers_every_cursor_exactly(
    writes_per_trial: int,
) -> None:
    log, history = changelog.ChangeLog(), []
    for trial in range(200):
        for _ in range(writes_per_trial):
            log.append(trial)
            history.append(trial)
        assert len(log) <= 2 * (trial + 1 + changelog._SLACK)  # bounded by its trials
    # Every cursor ever handed out still reads exactly the trials written since it.
    for cursor in range(0, len(history) + 1, 37):
        assert set(log.since(cursor)) == set(history[cursor:])
    assert log.ids() == list(range(200)) and log.end == len(history)
