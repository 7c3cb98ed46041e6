"""``python -m benchmarks.curve_tables``: the learning-curve tables of the pruning problems in
:mod:`benchmarks.curves`, written to ``benchmarks/data/`` (committed; well under a minute on
2 cores, run once).

Data: ``load_digits`` (1797 x 64, 10 classes), ``train_test_split(test_size=0.3,
random_state=0, stratify=y)`` (1257 train, 540 validation), features scaled by a
``StandardScaler`` fitted on the training part. Each config is trained epoch by epoch: epoch
``e`` is one ``partial_fit`` pass over the training rows in the order of
``np.random.default_rng(e).permutation`` (the same order for every config, so the configs
differ only by their hyperparameters), and the validation error rate (1 - accuracy) after
each epoch 1..27 is a column ``e1 .. e27``, rounded to 5 significant digits.

- ``curves_digits_sgd.csv``: ``SGDClassifier(learning_rate="constant", shuffle=False,
  random_state=0)``, grid ``loss`` x ``alpha`` x ``eta0`` (3 x 8 x 10 = 240 configs).
- ``curves_digits_mlp.csv``: ``MLPClassifier(solver="adam", batch_size=64, shuffle=False,
  random_state=0)`` with one hidden layer of ``hidden_layer_sizes`` units, grid
  ``hidden_layer_sizes`` x ``learning_rate_init`` x ``alpha`` (6 x 8 x 5 = 240 configs).
  A grid of a few dozen configs would be covered by random search within the budget of
  the pruning figure, pruned or not, and tell the pruners apart by nothing.

One thread per fit, so the tables do not depend on the machine's load; the configs are split
over 2 processes.
"""

from __future__ import annotations

from collections.abc import Iterator
import csv
from concurrent.futures import ProcessPoolExecutor
from functools import cache
import itertools
import time
from typing import Any

import numpy as np

from benchmarks.problems import TABLES

EPOCHS = 27
SGD_FILE, MLP_FILE = "curves_digits_sgd.csv", "curves_digits_mlp.csv"


def _log_grid(low: float, high: float, n: int) -> list[float]:
    return [float(f"{v:.6g}") for v in np.logspace(np.log10(low), np.log10(high), n)]


# Grids: the axes in column order. The log axes span the usable range and past it, so that
# the grid holds slow, fast and diverging configs. MLPClassifier's alpha starts at 0.01: below
# about 0.1 the L2 penalty changes no curve (1e-5 .. 1e-1 gave the same errors to 3 digits).
GRIDS: dict[str, dict[str, list[Any]]] = {
    SGD_FILE: {"loss": ["log_loss", "hinge", "modified_huber"], "alpha": _log_grid(1e-5, 1.0, 8),
               "eta0": _log_grid(1e-5, 3.0, 10)},
    MLP_FILE: {"hidden_layer_sizes": [8, 16, 32, 64, 128, 256], "learning_rate_init": _log_grid(1e-4, 0.3, 8),
               "alpha": _log_grid(1e-2, 30.0, 5)},
}


@cache
def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_val), y_train, y_val


def _model(file: str, params: dict[str, Any]) -> Any:
    from sklearn.linear_model import SGDClassifier
    from sklearn.neural_network import MLPClassifier

    if file == SGD_FILE:
        return SGDClassifier(learning_rate="constant", shuffle=False, random_state=0, **params)
    return MLPClassifier(**{**params, "hidden_layer_sizes": (params["hidden_layer_sizes"],)},
                         solver="adam", batch_size=64, shuffle=False, random_state=0)


def curve(file: str, params: dict[str, Any]) -> list[float]:
    """Validation error rate after each epoch 1..EPOCHS of one config."""
    import warnings

    from threadpoolctl import threadpool_limits

    x_train, x_val, y_train, y_val = _data()
    model, classes, errors = _model(file, params), np.unique(y_train), []
    with threadpool_limits(limits=1), warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # diverging configs warn (overflow); their error is real
        for epoch in range(1, EPOCHS + 1):
            order = np.random.default_rng(epoch).permutation(len(y_train))
            model.partial_fit(x_train[order], y_train[order], classes=classes)
            errors.append(float(f"{1.0 - model.score(x_val, y_val):.5g}"))
    return errors


def points(file: str) -> Iterator[dict[str, Any]]:
    grid = GRIDS[file]
    for values in itertools.product(*grid.values()):
        yield dict(zip(grid, values))


def crossings(rows: np.ndarray, early: int = 3) -> float:
    """Fraction of configs whose rank at epoch ``early`` and at the last differ by more than a
    quarter of the grid: the curves cross, so early values mislead a pruner."""
    ranks = [np.argsort(np.argsort(rows[:, e - 1], kind="stable"), kind="stable") for e in (early, EPOCHS)]
    return float(np.mean(np.abs(ranks[0] - ranks[1]) > len(rows) / 4))


def main() -> None:
    TABLES.mkdir(exist_ok=True)
    with ProcessPoolExecutor(2) as pool:
        for file in GRIDS:
            start, params = time.time(), list(points(file))
            rows = list(pool.map(curve, itertools.repeat(file), params))
            with (TABLES / file).open("w", newline="") as f:
                out = csv.writer(f)
                out.writerow([*GRIDS[file], *(f"e{e}" for e in range(1, EPOCHS + 1))])
                out.writerows([*p.values(), *(f"{v:.5g}" for v in r)] for p, r in zip(params, rows))
            values = np.array(rows)
            print(f"{file}: {len(rows)} configs in {time.time() - start:.1f} s; final error "
                  f"best {values[:, -1].min():.4f}, median {np.median(values[:, -1]):.4f}; "
                  f"rank at e3 vs e{EPOCHS} moves > 1/4 of the grid: {crossings(values):.0%}")


if __name__ == "__main__":
    main()
