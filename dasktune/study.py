"""``dasktune.create_study``: Optuna's ``create_study`` with the defaults made for a cluster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.study import StudyDirection

from dasktune.samplers import ParallelSampler
from dasktune.storage.proxy import DaskStorage
from dasktune.warm_starts import Source
from dasktune.warm_starts import summary
from dasktune.warm_starts import warm_start as seed_from


def create_study(
    *,
    storage: str | BaseStorage | None = None,
    sampler: BaseSampler | None = None,
    pruner: BasePruner | None = None,
    study_name: str | None = None,
    direction: Literal["minimize", "maximize"] | StudyDirection | None = None,
    load_if_exists: bool = False,
    directions: Sequence[Literal["minimize", "maximize"] | StudyDirection] | None = None,
    warm_start: Sequence[Source] | None = None,
) -> optuna.Study:
    """:func:`optuna.create_study`, with the defaults a study run on a Dask cluster wants.

    - ``storage``: ``None`` keeps the study on the scheduler of the current Dask client, in
      memory (``DaskStorage()``); a URL keeps it there in that database or journal file
      (``DaskStorage(url)``), so that every worker reads and writes it. A
      :class:`~optuna.storages.BaseStorage` is used as given.
    - ``sampler``: ``None`` is :class:`dasktune.ParallelSampler`, which chooses how to sample
      each trial for the number of trials in flight. A sampler you pass is used as given.

    - ``warm_start``: earlier studies (``optuna.load_study(...)``, from any storage) or URLs
      of storages holding one study each, whose completed trials seed this one where they
      fit (see :func:`dasktune.warm_start`, which also says what it skipped and why; here,
      Optuna's logger says how many and why at INFO). Ray Tune's ``points_to_evaluate``
      with ``evaluated_rewards``.

    The other arguments are :func:`optuna.create_study`'s.

    Raises:
        ValueError: A ``warm_start`` URL holds no study, or several.
    """
    if storage is None or isinstance(storage, str):
        storage = DaskStorage(storage)
    study = optuna.create_study(
        storage=storage,
        sampler=sampler if sampler is not None else ParallelSampler(),
        pruner=pruner,
        study_name=study_name,
        direction=direction,
        load_if_exists=load_if_exists,
        directions=directions,
    )
    if warm_start:
        before = len(study.get_trials(deepcopy=False))
        skipped = seed_from(study, warm_start)
        taken = len(study.get_trials(deepcopy=False)) - before
        note = f" (skipped {len(skipped)}: {summary(skipped)})" if skipped else ""
        optuna.logging.get_logger("optuna.dasktune").info(
            f"Warm start: {taken} trials from {len(warm_start)} earlier studies{note}."
        )
    return study
