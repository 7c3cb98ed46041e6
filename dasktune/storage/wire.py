"""The wire format of the storage protocol: plain data only.

Everything a client, a worker and the scheduler say to each other about studies is built
from numbers, strings, lists and dicts, so distributed sends it as msgpack and never as
pickle. That keeps processes on different Optuna minor versions working together (a pickled
``FrozenTrial`` does not survive that) and costs no unpickling. It is not a security
boundary: distributed unpickles any ``ToPickle`` frame of a message before a handler sees
it, so whoever can reach the scheduler can run code on it (Dask's trust model).

A trial travels as a dict (see :func:`encode_trial`), packed once into msgpack bytes when it
changes (:func:`pack_trial`): the scheduler sends every reader the same bytes, so a reply's
cost does not grow with what is in each trial, and readers unpack in their own process.
Attributes travel as
JSON text, which is also what makes a value that Optuna could not store in a database fail
at the call that set it; distributions travel as Optuna's own JSON.

Every reply has one error envelope, :class:`ErrorInfo` (``None`` when nothing failed), mapped
back to the original exception type through the one table :data:`ERROR_TYPES`.

The names both halves must agree on (the plugin's, its handlers', the attributes it writes)
live here too, so that the client half never imports the scheduler half.
"""

from __future__ import annotations

from datetime import datetime
import functools
import json
from typing import Any
from typing import cast
from typing import Literal
from typing import TypedDict

import dask.config
from dask.utils import parse_bytes
import msgpack
from optuna.distributions import BaseDistribution
from optuna.distributions import distribution_to_json
from optuna.distributions import json_to_distribution
from optuna.exceptions import DuplicatedStudyError
from optuna.exceptions import StorageInternalError
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune import compat

#: Name of the scheduler plugin (``scheduler.plugins[PLUGIN_NAME]``).
PLUGIN_NAME = "dasktune-storage"
#: The plugin's route for operations, the one every storage's reads and writes take.
CALL_ROUTE = "dasktune_storage_call"
#: Scheduler metadata key set while the plugin runs, so a client can tell it is there.
METADATA_KEY = "dasktune-storage-plugin"
#: Scheduler event topic under which the plugin announces a run that ended (see the plugin).
RUN_ENDED_TOPIC = "dasktune-run-ended"
#: System attribute holding why a trial failed (the objective's error, an invalid value, a
#: dead worker, an interrupt): the key Optuna 2 used, which optuna-dashboard shows.
FAIL_REASON = "fail_reason"

#: Exception types that cross the wire with their identity. Anything else raised on the
#: scheduler arrives as :class:`optuna.exceptions.StorageInternalError` naming the original.
ERROR_TYPES: dict[str, type[Exception]] = {
    t.__name__: t
    for t in (
        KeyError,
        ValueError,
        TypeError,
        RuntimeError,
        NotImplementedError,
        DuplicatedStudyError,
        UpdateFinishedTrialError,
        StorageInternalError,
    )
}

Trial = dict[str, Any]
#: One operation: ``[name, args, request_id or None]`` (a list: it is what msgpack gives back).
Op = list[Any]
#: What a client may ask the scheduler for: the keys of the host's one operation table
#: (``dasktune.storage.host.OPERATIONS``, which mypy checks against this, and a test).
OpName = Literal[
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_all_studies", "create_new_trial", "set_trial_param",
    "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "locate_trial", "record_heartbeat", "get_stale_trial_ids",
    "fail_stale_trials",
    "open_run", "register_runner", "claim_trials", "end_run", "release_trials",
    "abandon_trials", "decide_lost", "run_status", "find_runs",
]
#: Whose replica an operation's answer changes: ``"study"``, its first argument is a study
#: id; ``"trial"``, a trial id; ``"result"``, it returns a study id; ``"run"``, a run id;
#: ``"all"``, every study.
Scope = Literal["study", "trial", "result", "run", "all"]


class ErrorInfo(TypedDict):
    """What went wrong on the scheduler: the exception's type name and message, and the
    index of the operation that raised (``None``: the request as a whole)."""

    type: str
    message: str
    op: int | None


class StudyMeta(TypedDict):
    id: int
    name: str
    directions: list[int]
    user_attrs: str  # JSON text
    system_attrs: str


class Delta(TypedDict):
    """What changed in one study since a reader's cursor: the changed trials, packed, and
    the study's own fields if they changed."""

    study: int
    cursor: int
    trials: list[bytes]
    meta: StudyMeta | None


class Reply(TypedDict):
    """The answer to every storage request: the operations' results (up to the one that
    failed), the error envelope, and the deltas that bring the caller's replica up to date."""

    results: list[Any]
    error: ErrorInfo | None
    epoch: str
    deltas: list[Delta]
    missing: list[int]  # studies the caller asked about that do not exist


class OpenReply(TypedDict):
    error: ErrorInfo | None
    epoch: str
    url: str | None
    created: bool


class RunTerms(TypedDict):
    """What an ``optimize`` call asks of its run when it opens it (see ``RunRecord``)."""

    n_trials: int | None  # the budget of trials to start
    timeout: float | None  # seconds from the open, after which no trial starts
    retries: int | None  # a lost trial's retries; None: the stale-trial callback decides
    client: str | None  # the Dask client driving it; None: detached
    gated: bool  # its driver runs callbacks, which see each trial before the next starts


class RunStatus(TypedDict):
    """A run of ``dasktune.optimize`` as the scheduler reports it."""

    run_id: str
    study_id: int
    n_trials: int | None
    timeout: float | None
    claimed: int
    finished: int
    running: int
    lost: int
    undecided: list[int]
    end_reason: str | None  # why the run ended, if something but its budget ended it
    outcome: str | None  # how it ended: finished, stopped, failed, cancelled, aborted, ...
    time_left: float | None
    can_claim: bool
    done: bool


def stale_reason(grace_period: float) -> str:
    """The ``fail_reason`` of a trial failed because its heartbeat went stale."""
    return f"no heartbeat for over {grace_period:g} s, its grace period"


def encode_error(exc: BaseException, op: int | None = None) -> ErrorInfo:
    """The error envelope of an exception raised by operation ``op``."""
    name = type(exc).__name__
    # KeyError's str() quotes its message; its first argument is the message itself.
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if ERROR_TYPES.get(name) is not type(exc):
        return {"type": "StorageInternalError", "message": f"{name}: {message}", "op": op}
    return {"type": name, "message": message, "op": op}


def decode_error(error: ErrorInfo) -> Exception:
    """Rebuild the exception an error envelope describes."""
    return ERROR_TYPES.get(error["type"], StorageInternalError)(error["message"])


#: Dask config key of the largest attribute value, as JSON, that a storage call carries
#: (default :data:`MAX_ATTR_BYTES`). Optuna's storages hold more (PostgreSQL and SQLite a
#: gigabyte, Redis 512 MB), but an attribute travels with every copy of its trial — the
#: scheduler keeps it and sends it to every process that reads the trial, and copying a
#: large one holds the scheduler's event loop (about 0.1 s per 16 MiB): bulky data belongs
#: in a file or artifact whose path the attribute holds.
MAX_ATTR_CONFIG = "distributed.dasktune.max-attr-size"
MAX_ATTR_BYTES = 16 << 20


def max_attr_bytes() -> int:
    """The attribute size limit in force (:data:`MAX_ATTR_CONFIG`)."""
    return int(parse_bytes(dask.config.get(MAX_ATTR_CONFIG, MAX_ATTR_BYTES)))


def encode_attr(value: Any) -> str:
    """JSON text of an attribute value; raises ``TypeError`` naming what cannot be stored
    and ``ValueError`` for a value over :func:`max_attr_bytes`."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"Attribute value {value!r} is not JSON serializable ({e}); Optuna storages keep "
            "only JSON-serializable attributes: convert it to str, int, float, bool, None, "
            "or a list or dict of those."
        ) from None
    limit = max_attr_bytes()
    if len(text) > limit:
        raise ValueError(
            f"Attribute value of {len(text):,} bytes as JSON is over DaskStorage's limit of "
            f"{limit:,} (Dask config {MAX_ATTR_CONFIG!r}); keep large data in a file or "
            "object store (an Optuna artifact) and put its path in the attribute, or raise "
            "the limit."
        )
    return text


def encode_attrs(attrs: dict[str, Any]) -> str:
    """JSON text of an attribute dict (most are empty)."""
    return json.dumps(attrs) if attrs else "{}"


def decode_attrs(text: str) -> dict[str, Any]:
    """Attributes from the JSON text they travel as."""
    return json.loads(text) if text != "{}" else {}


def encode_datetime(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def decode_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@functools.lru_cache(maxsize=4096)
def encode_distribution(distribution: BaseDistribution) -> str:
    """Optuna's JSON of a distribution; trials of a study share a handful of them."""
    return distribution_to_json(distribution)


@functools.lru_cache(maxsize=4096)
def decode_distribution(text: str) -> BaseDistribution:
    """Optuna distribution from its JSON."""
    return json_to_distribution(text)


def encode_trial(trial: FrozenTrial, worker: str | None = None) -> Trial:
    """Plain-data form of a trial, with the address of the worker that ran it, if one did.
    Parameters travel in Optuna's internal (float) form."""
    return {
        "id": compat.trial_id(trial),
        "worker": worker,
        "number": trial.number,
        "state": trial.state.value,
        "values": trial.values,
        "params": {
            name: dist.to_internal_repr(trial.params[name])
            for name, dist in trial.distributions.items()
        },
        "distributions": {
            name: encode_distribution(dist) for name, dist in trial.distributions.items()
        },
        "user_attrs": encode_attrs(trial.user_attrs),
        "system_attrs": encode_attrs(trial.system_attrs),
        "intermediate_values": [[step, v] for step, v in trial.intermediate_values.items()],
        "datetime_start": encode_datetime(trial.datetime_start),
        "datetime_complete": encode_datetime(trial.datetime_complete),
    }


def pack_trial(data: Trial) -> bytes:
    """A wire trial as the msgpack bytes deltas carry."""
    return cast(bytes, msgpack.packb(data, use_bin_type=True))


def unpack_trial(packed: bytes) -> Trial:
    return cast(Trial, msgpack.unpackb(packed, raw=False))


def decode_trial(data: Trial) -> FrozenTrial:
    distributions = {
        name: decode_distribution(text) for name, text in data["distributions"].items()
    }
    return FrozenTrial(
        trial_id=data["id"],
        number=data["number"],
        state=TrialState(data["state"]),
        value=None,
        values=data["values"],
        params={
            name: dist.to_external_repr(data["params"][name])
            for name, dist in distributions.items()
        },
        distributions=distributions,
        user_attrs=decode_attrs(data["user_attrs"]),
        system_attrs=decode_attrs(data["system_attrs"]),
        intermediate_values={step: v for step, v in data["intermediate_values"]},
        datetime_start=decode_datetime(data["datetime_start"]),
        datetime_complete=decode_datetime(data["datetime_complete"]),
    )


def encode_directions(directions: list[StudyDirection]) -> list[int]:
    if not directions or not all(isinstance(d, StudyDirection) for d in directions):
        raise TypeError(
            f"directions must be a non-empty sequence of optuna.study.StudyDirection, not "
            f"{directions!r}."
        )
    return [d.value for d in directions]


def decode_directions(directions: list[int]) -> list[StudyDirection]:
    return [StudyDirection(d) for d in directions]


def decode_study(data: StudyMeta) -> compat.FrozenStudy:
    return compat.FrozenStudy(
        study_name=data["name"],
        direction=None,
        directions=decode_directions(data["directions"]),
        user_attrs=decode_attrs(data["user_attrs"]),
        system_attrs=decode_attrs(data["system_attrs"]),
        study_id=data["id"],
    )


def dump_storage(storage: BaseStorage) -> list[dict[str, Any]]:
    """Every study of ``storage``, with its trials, as plain data."""
    return [
        {
            "id": compat.study_id(study),
            "name": study.study_name,
            "directions": encode_directions(study.directions),
            "user_attrs": encode_attrs(study.user_attrs),
            "system_attrs": encode_attrs(study.system_attrs),
            "trials": [
                encode_trial(t) for t in storage.get_all_trials(compat.study_id(study), deepcopy=False)
            ],
        }
        for study in storage.get_all_studies()
    ]


def load_storage(dump: list[dict[str, Any]], storage: BaseStorage | None = None) -> BaseStorage:
    """Recreate the studies of a :func:`dump_storage` dump in ``storage`` (new in-memory one
    by default). Study and trial ids are the target's own; names and numbers are kept."""
    storage = storage if storage is not None else InMemoryStorage()
    for data in dump:
        study = decode_study(data)  # type: ignore[arg-type]  # a dump entry is a StudyMeta and its trials
        study_id = storage.create_new_study(study.directions, study.study_name)
        for key, value in study.user_attrs.items():
            storage.set_study_user_attr(study_id, key, value)
        for key, value in study.system_attrs.items():
            storage.set_study_system_attr(study_id, key, value)
        for trial in data["trials"]:
            storage.create_new_trial(study_id, template_trial=decode_trial(trial))
    return storage

