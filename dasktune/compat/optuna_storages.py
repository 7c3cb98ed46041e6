"""Inside Optuna's storages: the in-memory storage's log, what a journal created and its
Redis connections, and a bulk write to an ``RDBStorage``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.storages import JournalStorage
    from optuna.storages import RDBStorage


#: The logger through which ``InMemoryStorage.create_new_study`` announces every study it
#: creates at INFO (that of its private module ``optuna.storages._in_memory``).
IN_MEMORY_LOGGER = "optuna.storages._in_memory"


def quiet_study_creation(study_name: str) -> None:
    """Drop ``InMemoryStorage``'s "A new study created" message for studies called
    ``study_name`` (private copies made once per sampling); every other message stays. If
    Optuna moves the logger, the filter is inert and the message shows again."""
    import logging

    class Quiet(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return study_name not in record.getMessage()

    logging.getLogger(IN_MEMORY_LOGGER).addFilter(Quiet())


def journal_created_trial(storage: BaseStorage, read_back: bool) -> int | None:
    """The id of the last trial this ``JournalStorage`` object created (``None`` for any
    other storage), as it knows it, or with ``read_back`` once it has read what was appended
    since (a backend call).

    A journal append whose reply was lost (Redis killed the connection after writing) may or
    may not have landed, and Optuna's ``create_new_trial`` raises either way: this is how
    the journal itself learns which trial an append created (``_sync_with_backend``, then
    the replay's ``_last_created_trial_id_by_this_process``, under its ``_thread_lock``),
    with no public way to ask. -1 before it created any."""
    from optuna.storages import JournalStorage

    if not isinstance(storage, JournalStorage):
        return None
    with storage._thread_lock:
        if read_back:
            storage._sync_with_backend()
        # (Set by the first trial this object creates, or when it is unpickled.)
        created: int = getattr(storage._replay_result, "_last_created_trial_id_by_this_process", -1)
    return created


def close_journal_backend(storage: JournalStorage) -> None:
    """Close the Redis connections of a ``JournalStorage`` over Redis
    (``JournalStorage._backend``, ``JournalRedisBackend._redis``): Optuna offers no way to
    close a storage, and a scheduler that drops a storage it no longer needs must not keep
    its connections. A journal file holds nothing open between operations."""
    from optuna.storages.journal import JournalRedisBackend

    backend = storage._backend
    if isinstance(backend, JournalRedisBackend):
        backend._redis.close()
        backend._redis.connection_pool.disconnect()


def rdb_add_trials(
    storage: RDBStorage,
    study_id: int,
    trials: Iterable[optuna.trial.FrozenTrial],
    flush_every: int = 100,
) -> None:
    """Add copies of ``trials`` (all from one study) to study ``study_id`` of an
    ``RDBStorage``, in one transaction: what ``create_new_trial(study_id, template_trial=t)``
    writes for each ``t``, numbered on from the study's last trial.

    Optuna writes a trial per transaction, a dozen queries each (one checks the parameter's
    distribution against the study's earlier trials), so ``optuna.copy_study`` took minutes
    for thousands of trials on SQLite; here the rows are inserted in batches of
    ``flush_every`` trials, as ``trials`` is iterated (a progress bar around it moves as
    rows are written), and committed once: an error leaves none of them. Optuna has no
    public bulk write, so this builds the rows of its ORM models
    (``optuna.storages._rdb.models``) in the session ``_create_scoped_session`` gives
    (which commits, or rolls back and raises ``StorageInternalError``, as Optuna does).
    """
    import json

    import sqlalchemy
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def row(number: int, trial: optuna.trial.FrozenTrial) -> models.TrialModel:
        model = models.TrialModel(
            study_id=study_id,
            number=number,
            state=trial.state,
            datetime_start=trial.datetime_start,
            datetime_complete=trial.datetime_complete,
        )
        model.params = [
            models.TrialParamModel(
                param_name=name,
                param_value=trial.distributions[name].to_internal_repr(value),
                distribution_json=distribution_to_json(trial.distributions[name]),
            )
            for name, value in trial.params.items()
        ]
        values = []
        for objective, value in enumerate(trial.values or ()):
            stored, kind = models.TrialValueModel.value_to_stored_repr(value)
            values.append(models.TrialValueModel(objective=objective, value=stored, value_type=kind))
        model.values = values
        intermediate = []
        for step, reported in trial.intermediate_values.items():
            kept, how = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(reported)
            intermediate.append(
                models.TrialIntermediateValueModel(
                    step=step, intermediate_value=kept, intermediate_value_type=how
                )
            )
        model.intermediate_values = intermediate
        model.user_attributes = [
            models.TrialUserAttributeModel(key=k, value_json=json.dumps(v))
            for k, v in trial.user_attrs.items()
        ]
        model.system_attributes = [
            models.TrialSystemAttributeModel(key=k, value_json=json.dumps(v))
            for k, v in trial.system_attrs.items()
        ]
        return model

    with _create_scoped_session(storage.scoped_session) as session:
        # The study's row lock, as create_new_trial takes it: trial numbers stay unique
        # while another process adds trials.
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        number = (
            session.query(sqlalchemy.func.count(models.TrialModel.trial_id))
            .filter(models.TrialModel.study_id == study_id)
            .scalar()
        )
        batch = []
        for trial in trials:
            batch.append(row(number, trial))
            number += 1
            if len(batch) == flush_every:
                session.add_all(batch)
                session.flush()
                batch = []
        session.add_all(batch)
