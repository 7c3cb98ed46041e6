"""The problems of the pruning benchmark: learning curves whose every epoch is known, so a
pruner's savings and its losses (a good config stopped early) are exact and cost no fits.

A problem suggests a config, ``curve(key)`` is its validation error after each step
1..``steps`` (lower is better), ``best`` the best final (step ``steps``) value over the whole
space, the optimum of the regret, and ``finals`` the final values of every config (or of a
dense sample), to choose targets as percentiles.

- ``SGD digits`` and ``MLP digits``: tables made by :mod:`benchmarks.curve_tables`.
  ``load_digits`` (1797 x 64), ``train_test_split(test_size=0.3, random_state=0,
  stratify=y)``, ``StandardScaler`` fitted on the 1257 training rows; the metric is the
  error rate (1 - accuracy) on the 540 validation rows after each of 27 epochs, an epoch
  being one ``partial_fit`` pass over the training rows shuffled by
  ``np.random.default_rng(epoch)``.

  - ``SGD digits``: ``SGDClassifier(learning_rate="constant", random_state=0)``; ``loss`` in
    {log_loss, hinge, modified_huber}, ``alpha`` in 1e-5 .. 1 (8 values, log-spaced),
    ``eta0`` in 1e-5 .. 3 (10 values): 240 configs.
  - ``MLP digits``: ``MLPClassifier(solver="adam", batch_size=64, random_state=0)`` with one
    hidden layer; ``hidden_layer_sizes`` in {8, 16, 32, 64, 128, 256} units,
    ``learning_rate_init`` in 1e-4 .. 0.3 (8 values), ``alpha`` in 1e-2 .. 30 (5 values;
    below 0.1 it changes no curve): 240 configs.

  Each axis is suggested with ``suggest_categorical`` over its grid values, so a trial is
  exactly one row of the table; the key is the tuple of the values in column order.

- ``Synthetic curves``: ``lr`` float in [1e-4, 1] (log) and ``width`` float in [0, 1];
  with ``u = log10(lr)``, the error after step t is ``floor + (0.9 - floor) exp(-rate t)``
  plus noise (0.9: chance on 10 classes, as digits). ``rate = 1.5 lr^0.25 (0.5 + width)``:
  a large lr or width learns fast.
  ``floor = 0.05 + 0.04 (u + 2)^2 + 0.08 (width - 0.5)^2 - 0.035 g``, g a narrow Gaussian
  bump (sd 0.25 in u, 0.06 in width) at lr = 1e-2, width = 0.8: the fastest configs level
  off high by step 2-3 while better ones are still falling, so the curves cross. The noise
  is ``|N(0, 1)| (0.1 gap + 0.02 lr)`` at each step (gap = what is left above the floor; a
  high lr is noisy), from an RNG seeded by the params' bytes: the curve is a pure function
  of the key ``(lr, width)``. The noise is never negative, so ``best`` is the noise-free
  minimum at step 27 (a 401 x 401 grid in (u, width), zoomed in 3 times), which no config
  beats; ``finals`` are the final values of 4096 points uniform in (u, width) (seed 0).
"""

from __future__ import annotations

from collections.abc import Callable
import csv
from dataclasses import dataclass
import struct
from typing import Any
import zlib

import numpy as np
import optuna

from benchmarks.problems import TABLES

STEPS = 27
Key = tuple[Any, ...]  # the params in suggest order


@dataclass(frozen=True)
class CurveProblem:
    """A pruning problem: ``suggest`` a config, look up its whole ``curve``."""

    name: str
    steps: int
    suggest: Callable[[optuna.Trial], Key]
    curve: Callable[[Key], np.ndarray]
    best: float
    finals: np.ndarray


def _parse(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class _Table:
    """A learning-curve table: one row per config, the axes then ``e1 .. e<steps>``. A class
    with bound methods, not closures, so that a problem pickles for Dask workers."""

    def __init__(self, file: str) -> None:
        path = TABLES / file
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: make it with `python -m benchmarks.curve_tables`.")
        with path.open(newline="") as f:
            header, *rows = list(csv.reader(f))
        n_axes = header.index("e1")
        keys = [tuple(_parse(text) for text in row[:n_axes]) for row in rows]
        self.values: np.ndarray = np.array([row[n_axes:] for row in rows], dtype=float)
        self.rows = {key: i for i, key in enumerate(keys)}
        # Grid values in the table's order (dict.fromkeys keeps the first appearance).
        self.axes = {name: list(dict.fromkeys(key[i] for key in keys)) for i, name in enumerate(header[:n_axes])}

    def suggest(self, trial: optuna.Trial) -> Key:
        return tuple(trial.suggest_categorical(name, grid) for name, grid in self.axes.items())

    def curve(self, key: Key) -> np.ndarray:
        return np.array(self.values[self.rows[key]])  # a copy: the caller may not edit the table


def _table_problem(name: str, file: str) -> CurveProblem:
    table = _Table(file)
    finals = table.values[:, -1].copy()
    return CurveProblem(name, table.values.shape[1], table.suggest, table.curve, float(finals.min()), finals)


LR_RANGE, OPTIMUM_U, OPTIMUM_WIDTH = (1e-4, 1.0), -2.0, 0.8


def _clean(u: np.ndarray, width: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The noise-free synthetic curve at steps ``t`` (broadcast) and its gap to the floor."""
    bump = np.exp(-0.5 * ((u - OPTIMUM_U) / 0.25) ** 2 - 0.5 * ((width - OPTIMUM_WIDTH) / 0.06) ** 2)
    floor = 0.05 + 0.04 * (u - OPTIMUM_U) ** 2 + 0.08 * (width - 0.5) ** 2 - 0.035 * bump
    gap = (0.9 - floor) * np.exp(-1.5 * (10.0**u) ** 0.25 * (0.5 + width) * t)
    return floor + gap, gap


def synthetic_suggest(trial: optuna.Trial) -> Key:
    return trial.suggest_float("lr", *LR_RANGE, log=True), trial.suggest_float("width", 0.0, 1.0)


def synthetic_curve(key: Key) -> np.ndarray:
    lr, width = float(key[0]), float(key[1])
    clean, gap = _clean(np.log10(lr), np.asarray(width), np.arange(1, STEPS + 1))
    rng = np.random.default_rng(zlib.crc32(struct.pack("<dd", lr, width)))
    noisy: np.ndarray = clean + np.abs(rng.standard_normal(STEPS)) * (0.1 * gap + 0.02 * lr)
    return noisy


def _synthetic_problem() -> CurveProblem:
    # best: the minimum of the noise-free final value on a 401 x 401 grid in (u, width),
    # zoomed 3 times around its argmin (numpy only: scipy would double the import time).
    low, high = np.log10(LR_RANGE)
    box, best = np.array([[low, high], [0.0, 1.0]]), np.inf
    for _ in range(4):
        u, width = np.meshgrid(np.linspace(box[0, 0], box[0, 1], 401), np.linspace(box[1, 0], box[1, 1], 401))
        final = _clean(u, width, np.array(STEPS))[0]
        i = np.unravel_index(final.argmin(), final.shape)
        best, step = min(best, float(final[i])), (box[:, 1] - box[:, 0]) / 400
        centre = np.array([u[i], width[i]])
        box = np.clip(np.stack([centre - 4 * step, centre + 4 * step], axis=1), [[low], [0.0]], [[high], [1.0]])
    points = np.random.default_rng(0).random((4096, 2))  # uniform in (u, width)
    finals = np.array([synthetic_curve((float(10 ** (low + a * (high - low))), float(b)))[-1] for a, b in points])
    return CurveProblem("Synthetic curves", STEPS, synthetic_suggest, synthetic_curve, best, finals)


PROBLEMS: dict[str, CurveProblem] = {
    problem.name: problem
    for problem in (_table_problem("SGD digits", "curves_digits_sgd.csv"),
                    _table_problem("MLP digits", "curves_digits_mlp.csv"), _synthetic_problem())
}
