"""The problems of the parallel-quality figure (:mod:`benchmarks.parallel`): minimization
problems whose optimum is known, each an Optuna define-by-run objective without the waiting.

Test functions (standard definitions, as in Surjanovic & Bingham's library of test
functions), all-float search spaces:

- ``Hartmann-6``: x in [0, 1]^6, f* = -3.322368 at (0.20169, 0.150011, 0.476874, 0.275332,
  0.311652, 0.6573);
- ``Ackley-5``: a = 20, b = 0.2, c = 2 pi, x in [-32.768, 32.768]^5, f* = 0 at 0;
- ``Rosenbrock-10``: x in [-5, 10]^10, f* = 0 at (1, ..., 1).

Tuning problems on data that ships with scikit-learn, evaluated once on a grid and looked up
(:mod:`benchmarks.tables` makes the tables; live fits would cost the 2 cores far more than
the sampler does, and the timing would measure scikit-learn). The sampler still sees a
float / int / categorical search space over the grid's whole range: a categorical parameter
picks its slice of the table, and between grid values of the other parameters (log-spaced)
the value is interpolated, multilinearly in the logarithms of the parameters. So the surface
is continuous and exact at the grid points (every value is a real CV result or a mix of
neighbouring ones); snapping to the nearest grid point instead would make the regret 0 as
soon as a sampler lands in the best cell, and the ratios of the report meaningless. The
optimum is the best value of the table (interpolation never goes below its corners).

- ``GBM breast_cancer``: ``HistGradientBoostingClassifier``, 3-fold stratified CV log-loss;
  ``learning_rate`` float (log), ``max_leaf_nodes``, ``max_iter``, ``min_samples_leaf`` int
  (log);
- ``SVR diabetes``: ``SVR`` after ``StandardScaler``, 5-fold CV mean squared error of the
  standardized target; ``kernel`` categorical, ``C``, ``gamma``, ``epsilon`` float (log).

A conditional search space, the same way on tables:

- ``Model choice diabetes``: ``model`` categorical picks one of four regressors on
  ``load_diabetes`` (standardized target, 5-fold CV mean squared error, as the SVR problem),
  each with parameters of its own that only its trials suggest: ``ridge`` (``ridge_alpha``),
  ``knn`` (``knn_n_neighbors`` int (log), ``knn_weights`` categorical), ``svr`` (RBF kernel:
  ``svr_C``, ``svr_gamma``, ``svr_epsilon``) and ``gbm`` (``HistGradientBoostingRegressor``:
  ``gbm_learning_rate``, ``gbm_max_leaf_nodes``, ``gbm_max_iter``). Each branch is a table of
  its own; the optimum is the best of all four.
"""

from __future__ import annotations

from collections.abc import Callable
import csv
from dataclasses import dataclass
from dataclasses import field
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna

TABLES = Path(__file__).parent / "data"


def hartmann6(x: np.ndarray) -> float:
    alpha = np.array([1.0, 1.2, 3.0, 3.2])
    a = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
    p = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
    return float(-np.sum(alpha * np.exp(-np.sum(a * (x - p) ** 2, axis=1))))


def ackley(x: np.ndarray) -> float:
    return float(-20 * np.exp(-0.2 * np.sqrt(np.mean(x**2))) - np.exp(np.mean(np.cos(2 * np.pi * x)))
                 + 20 + math.e)


def rosenbrock(x: np.ndarray) -> float:
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (x[:-1] - 1) ** 2))


HARTMANN6_ARGMIN = np.array([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])


@dataclass(frozen=True)
class TestFunction:
    """``function`` on the box ``[low, high]^dims``, one float parameter ``x0 ..`` per
    dimension."""

    name: str
    function: Callable[[np.ndarray], float]
    dims: int
    low: float
    high: float
    optimum: float
    continuous = True  # every parameter a float: any duplicate vector is the sampler's doing

    def __call__(self, trial: optuna.Trial) -> float:
        x = np.array([trial.suggest_float(f"x{i}", self.low, self.high) for i in range(self.dims)])
        return self.function(x)


@dataclass(frozen=True)
class Axis:
    """One parameter of a grid table: its Optuna kind, its range, and the grid values."""

    name: str
    kind: str  # "float", "int" (both log-scaled) or "categorical"
    grid: tuple[Any, ...]

    def locate(self, trial: optuna.Trial) -> tuple[int, float]:
        """Suggest the parameter over its whole range; where it falls on the grid: the index
        ``i`` of the grid value below it and its weight ``w`` towards value ``i + 1`` (in log
        scale), ``w = 0`` for a categorical."""
        if self.kind == "categorical":
            return self.grid.index(trial.suggest_categorical(self.name, list(self.grid))), 0.0
        if self.kind == "float":
            value = trial.suggest_float(self.name, self.grid[0], self.grid[-1], log=True)
        else:
            value = trial.suggest_int(self.name, self.grid[0], self.grid[-1], log=True)
        logs = np.log(np.array(self.grid, dtype=float))
        i = int(np.clip(np.searchsorted(logs, math.log(value), side="right") - 1, 0, len(logs) - 2))
        return i, float(np.clip((math.log(value) - logs[i]) / (logs[i + 1] - logs[i]), 0.0, 1.0))

    def parse(self, text: str) -> Any:
        return text if self.kind == "categorical" else type(self.grid[0])(text)


@dataclass(frozen=True)
class GridTable:
    """A tuning problem looked up in a table of values on the grid of ``axes``."""

    name: str
    file: str
    axes: tuple[Axis, ...]
    values: np.ndarray = field(init=False, repr=False, compare=False)
    continuous = False  # int and categorical parameters: a repeated vector can be fair

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", self._load())

    @property
    def optimum(self) -> float:
        return float(self.values.min())

    def __call__(self, trial: optuna.Trial) -> float:
        located = [axis.locate(trial) for axis in self.axes]
        value = 0.0
        for corner in itertools.product((0, 1), repeat=len(located)):
            weight = math.prod(w if c else 1 - w for c, (_, w) in zip(corner, located))
            if weight > 0:
                value += weight * self.values[tuple(i + c for c, (i, _) in zip(corner, located))]
        return float(value)

    def points(self) -> list[dict[str, Any]]:
        """Every grid point, in the table's order."""
        return grid_points(self.axes)

    def _load(self) -> np.ndarray:
        values = np.full([len(axis.grid) for axis in self.axes], np.nan)
        path = TABLES / self.file
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: make it with `python -m benchmarks.tables`.")
        with path.open() as f:
            for row in csv.DictReader(f):
                index = tuple(axis.grid.index(axis.parse(row[axis.name])) for axis in self.axes)
                values[index] = float(row["value"])
        if np.isnan(values).any():
            raise ValueError(f"{path} lacks {int(np.isnan(values).sum())} grid points; remake it.")
        return values


def grid_points(axes: tuple[Axis, ...]) -> list[dict[str, Any]]:
    """Every point of the grid of ``axes``."""
    points: list[dict[str, Any]] = [{}]
    for axis in axes:
        points = [{**p, axis.name: v} for p in points for v in axis.grid]
    return points


def _log_grid(low: float, high: float, n: int) -> tuple[float, ...]:
    return tuple(float(f"{v:.6g}") for v in np.logspace(math.log10(low), math.log10(high), n))


GBM_AXES = (
    Axis("learning_rate", "float", _log_grid(0.01, 1.0, 9)),
    Axis("max_leaf_nodes", "int", (2, 4, 8, 16, 32, 64)),
    Axis("max_iter", "int", (10, 30, 100, 300)),
    Axis("min_samples_leaf", "int", (2, 8, 32)),
)
SVR_AXES = (
    Axis("kernel", "categorical", ("rbf", "sigmoid")),
    Axis("C", "float", _log_grid(1e-2, 1e3, 16)),
    Axis("gamma", "float", _log_grid(1e-4, 1.0, 13)),
    Axis("epsilon", "float", _log_grid(1e-2, 1.0, 5)),
)
GBM_FILE, SVR_FILE = "gbm_breast_cancer.csv", "svr_diabetes.csv"


CHOICE_AXES = {
    "ridge": (Axis("ridge_alpha", "float", _log_grid(1e-3, 1e3, 13)),),
    "knn": (Axis("knn_n_neighbors", "int", (1, 2, 4, 8, 16, 32, 64, 128)),
            Axis("knn_weights", "categorical", ("uniform", "distance"))),
    "svr": (Axis("svr_C", "float", _log_grid(1e-2, 1e3, 11)),
            Axis("svr_gamma", "float", _log_grid(1e-4, 1.0, 9)),
            Axis("svr_epsilon", "float", _log_grid(1e-2, 1.0, 5))),
    "gbm": (Axis("gbm_learning_rate", "float", _log_grid(0.01, 1.0, 9)),
            Axis("gbm_max_leaf_nodes", "int", (2, 4, 8, 16, 32, 64)),
            Axis("gbm_max_iter", "int", (10, 30, 100, 300))),
}


def choice_file(model: str) -> str:
    return f"choice_diabetes_{model}.csv"


@dataclass(frozen=True)
class ModelChoice:
    """A conditional search space: the categorical ``model`` picks one of ``branches``, a
    table whose parameters only that branch's trials suggest."""

    name: str
    branches: tuple[GridTable, ...]  # each named for its model
    continuous = False

    @property
    def optimum(self) -> float:
        return min(branch.optimum for branch in self.branches)

    def __call__(self, trial: optuna.Trial) -> float:
        model = trial.suggest_categorical("model", [branch.name for branch in self.branches])
        return next(branch for branch in self.branches if branch.name == model)(trial)


Problem = TestFunction | GridTable | ModelChoice

_MAKERS: dict[str, Callable[[], Problem]] = {
    "Hartmann-6": lambda: TestFunction("Hartmann-6", hartmann6, 6, 0.0, 1.0, hartmann6(HARTMANN6_ARGMIN)),
    "Ackley-5": lambda: TestFunction("Ackley-5", ackley, 5, -32.768, 32.768, 0.0),
    "Rosenbrock-10": lambda: TestFunction("Rosenbrock-10", rosenbrock, 10, -5.0, 10.0, 0.0),
    "GBM breast_cancer": lambda: GridTable("GBM breast_cancer", GBM_FILE, GBM_AXES),
    "SVR diabetes": lambda: GridTable("SVR diabetes", SVR_FILE, SVR_AXES),
    "Model choice diabetes": lambda: ModelChoice(
        "Model choice diabetes", tuple(GridTable(model, choice_file(model), axes) for model, axes in CHOICE_AXES.items())),
}
NAMES = tuple(_MAKERS)


def problem(name: str) -> Problem:
    """The problem called ``name``, one of :data:`NAMES` (a grid table is read from
    ``benchmarks/data`` here, and travels to the workers inside the objective)."""
    if name not in _MAKERS:
        raise ValueError(f"No problem {name!r}; the problems are {', '.join(NAMES)}.")
    return _MAKERS[name]()
