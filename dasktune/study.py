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


def create_study(
    *,
    storage: str | BaseStorage | None = None,
    sampler: BaseSampler | None = None,
    pruner: BasePruner | None = None,
    study_name: str | None = None,
    direction: Literal["minimize", "maximize"] | StudyDirection | None = None,
    load_if_exists: bool = False,
    directions: Sequence[Literal["minimize", "maximize"] | StudyDirection] | None = None,
) -> optuna.Study:
    """:func:`optuna.create_study`, with the defaults a study run on a Dask cluster wants.

    - ``storage``: ``None`` keeps the study on the scheduler of the current Dask client, in
      memory (``DaskStorage()``); a URL keeps it there in that database or journal file
      (``DaskStorage(url)``), so that every worker reads and writes it. A
      :class:`~optuna.storages.BaseStorage` is used as given.
    - ``sampler``: ``None`` is :class:`dasktune.ParallelSampler`, which chooses how to sample
      each trial for the number of trials in flight. A sampler you pass is used as given.

    The other arguments are :func:`optuna.create_study`'s.
    """
    if storage is None or isinstance(storage, str):
        storage = DaskStorage(storage)
    return optuna.create_study(
        storage=storage,
        sampler=sampler if sampler is not None else ParallelSampler(),
        pruner=pruner,
        study_name=study_name,
        direction=direction,
        load_if_exists=load_if_exists,
        directions=directions,
    )
