"""Trial checkpoints that survive a worker (Ray Tune: ``train.report(checkpoint=...)`` and
``train.get_checkpoint()``).

Inside an objective, :func:`save` keeps the trial's latest state and :func:`load` returns
it. When the trial's worker dies and the trial is retried (``optimize(..., retries=n)``, or
Optuna's ``RetryFailedTrialCallback``: both record the trials retried in the new trial's
``retry_history``), :func:`load` in the retry returns the last checkpoint of the trial it
retries, so the retry resumes there instead of at step 0::

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        state = dasktune.checkpoints.load(trial)
        model, first = (pickle.loads(state) if state else (make_model(lr), 0))
        for epoch in range(first, 10):
            loss = train_one_epoch(model)
            trial.report(loss, epoch)
            dasktune.checkpoints.save(trial, pickle.dumps((model, epoch + 1)))
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

Checkpoints go to an Optuna artifact store: the scheduler's
(:class:`~dasktune.artifacts.DaskArtifactStore`) by default, or any store passed as
``artifact_store`` (``FileSystemArtifactStore``, ``Boto3ArtifactStore``...), the same to
``save`` and ``load``. A trial keeps one: saving removes its previous checkpoint. The id of
the current one is the trial's ``dasktune:checkpoint`` system attribute.
"""

from __future__ import annotations

import functools
import io
import os
from typing import BinaryIO
from typing import TYPE_CHECKING
import uuid

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound

from dasktune import compat
from dasktune.artifacts.store import DaskArtifactStore
from dasktune.storage import DaskStorage

if TYPE_CHECKING:
    from dasktune.compat import ArtifactStore

#: The trial's system attribute holding the artifact id of its latest checkpoint.
CHECKPOINT_ATTR = "dasktune:checkpoint"


def save(
    trial: optuna.Trial,
    data: bytes | str | os.PathLike[str],
    *,
    artifact_store: ArtifactStore | None = None,
) -> str:
    """Keep ``data`` (bytes, or the path of a file) as the trial's checkpoint, replacing its
    previous one; return its artifact id. Returns once the store holds it: a worker that
    dies right after loses nothing of it."""
    store = artifact_store or _scheduler_store()
    storage, trial_id = compat.study_storage(trial.study), compat.trial_id(trial)
    previous = storage.get_trial(trial_id).system_attrs.get(CHECKPOINT_ATTR)
    artifact_id = f"checkpoint-{uuid.uuid4().hex}"
    if isinstance(data, bytes):
        store.write(artifact_id, io.BytesIO(data))
    else:
        with open(data, "rb") as f:
            store.write(artifact_id, f)
    storage.set_trial_system_attr(trial_id, CHECKPOINT_ATTR, artifact_id)
    if isinstance(storage, DaskStorage):
        storage.flush()  # the new id is on the scheduler before the old checkpoint goes
    if previous is not None:
        try:
            store.remove(previous)
        except ArtifactNotFound:
            pass  # removed by someone else already
    return artifact_id


def load(trial: optuna.Trial, *, artifact_store: ArtifactStore | None = None) -> bytes | None:
    """The trial's latest checkpoint; for a retry with none of its own yet, that of the
    latest trial it retries that saved one; ``None`` if there is none."""
    store = artifact_store or _scheduler_store()
    reader = open_checkpoint(trial, store)
    if reader is None:
        return None
    with reader:
        return reader.read()


def open_checkpoint(trial: optuna.Trial, artifact_store: ArtifactStore) -> BinaryIO | None:
    """The checkpoint :func:`load` returns, as a file object to read it from."""
    storage, study_id = compat.study_storage(trial.study), compat.study_id(trial.study)
    own = storage.get_trial(compat.trial_id(trial))
    for number in [own.number, *reversed(own.system_attrs.get("retry_history", []))]:
        earlier = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, number))
        artifact_id = earlier.system_attrs.get(CHECKPOINT_ATTR)
        if artifact_id is not None:
            return artifact_store.open_reader(artifact_id)
    return None


@functools.cache
def _scheduler_store() -> DaskArtifactStore:
    """This process's store on its scheduler (one, so the plugin is checked for once)."""
    return DaskArtifactStore()
