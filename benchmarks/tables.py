"""``python -m benchmarks.tables``: the grid tables of the tuning problems in
:mod:`benchmarks.problems`, written to ``benchmarks/data/`` (committed; about 10 minutes on
2 cores, run once).

Each grid point is evaluated once, deterministically (fixed CV splits, ``random_state=0``),
on one thread: the tables are the problems' ground truth, so they must not depend on the
machine's load.

- ``gbm_breast_cancer.csv``: ``HistGradientBoostingClassifier(early_stopping=False,
  random_state=0)`` on ``load_breast_cancer`` (569 x 30), mean log-loss over a 3-fold
  ``StratifiedKFold(shuffle=True, random_state=0)``.
- ``svr_diabetes.csv``: ``make_pipeline(StandardScaler(), SVR(...))`` on ``load_diabetes``
  (442 x 10) with the target standardized (its mean and deviation over all 442 rows: a
  change of units), mean squared error over a 5-fold ``KFold(shuffle=True,
  random_state=0)``. The sigmoid kernel diverges at large ``C * gamma``: those points keep
  their real (huge) error.
- ``choice_diabetes_<model>.csv``: the branches of the conditional problem, on the SVR
  problem's data, target and folds: ``Ridge``, ``KNeighborsRegressor`` and ``SVR(kernel="rbf")``
  after ``StandardScaler``, and ``HistGradientBoostingRegressor(early_stopping=False,
  random_state=0)``.

``python -m benchmarks.tables [FILE ...]`` writes only the tables named (all by default).
"""

from __future__ import annotations

from collections.abc import Callable
import csv
from functools import cache
from functools import partial
import sys
import time
from typing import Any

import numpy as np

from benchmarks.problems import Axis
from benchmarks.problems import CHOICE_AXES
from benchmarks.problems import choice_file
from benchmarks.problems import GBM_AXES
from benchmarks.problems import GBM_FILE
from benchmarks.problems import grid_points
from benchmarks.problems import SVR_AXES
from benchmarks.problems import SVR_FILE
from benchmarks.problems import TABLES


@cache
def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return x, y


def gbm_value(params: dict[str, Any]) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_score
    from sklearn.model_selection import StratifiedKFold

    x, y = _data("breast_cancer")
    model = HistGradientBoostingClassifier(early_stopping=False, random_state=0, **params)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    return float(-cross_val_score(model, x, y, cv=cv, scoring="neg_log_loss").mean())


def svr_value(params: dict[str, Any]) -> float:
    from sklearn.model_selection import cross_val_score
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    x, y = _data("diabetes")
    y = (y - y.mean()) / y.std()
    model = make_pipeline(StandardScaler(), SVR(**params))
    cv = KFold(5, shuffle=True, random_state=0)
    return float(-cross_val_score(model, x, y, cv=cv, scoring="neg_mean_squared_error").mean())


def choice_value(model: str, params: dict[str, Any]) -> float:
    """A branch of the conditional problem: ``params`` are named ``<model>_<parameter>``."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import cross_val_score
    from sklearn.model_selection import KFold
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    x, y = _data("diabetes")
    y = (y - y.mean()) / y.std()
    kwargs = {name.removeprefix(f"{model}_"): value for name, value in params.items()}
    estimator = {
        "ridge": lambda: make_pipeline(StandardScaler(), Ridge(**kwargs)),
        "knn": lambda: make_pipeline(StandardScaler(), KNeighborsRegressor(**kwargs)),
        "svr": lambda: make_pipeline(StandardScaler(), SVR(kernel="rbf", **kwargs)),
        "gbm": lambda: HistGradientBoostingRegressor(early_stopping=False, random_state=0, **kwargs),
    }[model]()
    cv = KFold(5, shuffle=True, random_state=0)
    return float(-cross_val_score(estimator, x, y, cv=cv, scoring="neg_mean_squared_error").mean())


def write(file: str, axes: tuple[Axis, ...], value: Any) -> None:
    points = grid_points(axes)
    start = time.time()
    TABLES.mkdir(exist_ok=True)
    with (TABLES / file).open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow([axis.name for axis in axes] + ["value"])
        for i, params in enumerate(points):
            out.writerow([params[axis.name] for axis in axes] + [f"{value(params):.10g}"])
            if i % 100 == 99:
                print(f"{file}: {i + 1}/{len(points)} in {time.time() - start:.0f} s", flush=True)
    print(f"{file}: {len(points)} points in {time.time() - start:.0f} s")


def tables() -> dict[str, tuple[tuple[Axis, ...], Callable[[dict[str, Any]], float]]]:
    """Every table: file name -> (axes, value of a grid point)."""
    made = {GBM_FILE: (GBM_AXES, gbm_value), SVR_FILE: (SVR_AXES, svr_value)}
    for model, axes in CHOICE_AXES.items():
        made[choice_file(model)] = (axes, partial(choice_value, model))
    return made


def main() -> None:
    from threadpoolctl import threadpool_limits

    every = tables()
    chosen = sys.argv[1:] or list(every)
    unknown = [file for file in chosen if file not in every]
    if unknown:
        raise SystemExit(f"No table {', '.join(unknown)}; the tables are {', '.join(every)}.")
    with threadpool_limits(limits=1), np.errstate(all="ignore"):
        for file in chosen:
            write(file, *every[file])


if __name__ == "__main__":
    main()
