"""The demo problem that ships with dasktune: no data to download, a known answer.

A polynomial ridge regression fit to 25 noisy samples of ``sin(3x) + x/2`` on [-2, 2]
(noise standard deviation 0.3), scored by mean squared error on 1,000 held-out samples.
:func:`objective` tunes the two hyperparameters that matter with so few training points:
too low a ``degree`` underfits, too high a degree or too small a penalty ``alpha``
overfits, too large a penalty flattens the fit. (Features are scaled into [-1, 1], so that
one penalty acts evenly on every power; :func:`validation_error` also takes the unscaled and
standardized features.)

The optimum is inside the search space, not on its edge: degree 7 with ``alpha`` about 3e-4
gives a validation MSE of 0.0997 (:data:`OPTIMUM`, :data:`OPTIMUM_MSE`; the noise alone
costs 0.09). Degree 8 comes within 0.5%, degrees 9-10 within 8%; ``alpha`` at 1e-4 or 1e-3
costs 20-27%, degree 5 or 11 about 25%, and the edges of the space at least 32% (``alpha``
1e-6), 46% (degree 15), five times (degree 1, ``alpha`` 10). Optuna's TPE sampler comes
within 1% of it in 100 trials, so ``dasktune demo`` (200 trials) visibly finds it, and prints
it next to its best trial. ``tests/test_demo.py`` checks all of this against a grid search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import numpy as np

if TYPE_CHECKING:
    import optuna

#: The sample of the demo problem: the seed whose 25 training points make the optimum above.
SEED = 5
#: Where the validation error of :func:`objective` is lowest, and its value there.
OPTIMUM: dict[str, Any] = {"degree": 7, "alpha": 3.0e-4}
OPTIMUM_MSE = 0.0997
#: The search space of :func:`objective`: degree from 1 to 15, alpha log-uniform.
DEGREES = (1, 15)
ALPHAS = (1e-6, 10.0)


def make_data(seed: int = SEED, n_train: int = 25, n_val: int = 1000) -> tuple[np.ndarray, ...]:
    """``x_train, y_train, x_val, y_val``: samples of ``sin(3x) + x/2`` on [-2, 2] with
    Gaussian noise (standard deviation 0.3)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, size=n_train + n_val)
    y = np.sin(3 * x) + 0.5 * x + rng.normal(0.0, 0.3, size=n_train + n_val)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def validation_error(degree: int, alpha: float, scaling: str = "unit", seed: int = SEED) -> float:
    """Mean squared error on the validation samples of a ridge fit on polynomial features
    of ``x / scale`` up to ``degree``, with penalty ``alpha``; ``scaling`` is ``"none"``,
    ``"unit"`` (``x / 2``: into [-1, 1]) or ``"std"`` (by the training standard deviation)."""
    x_train, y_train, x_val, y_val = make_data(seed)
    scale = {"none": 1.0, "unit": 2.0, "std": float(np.std(x_train))}[scaling]

    def features(x: np.ndarray) -> np.ndarray:
        return np.vander(x / scale, degree + 1, increasing=True)

    a = features(x_train)
    weights = np.linalg.solve(a.T @ a + alpha * np.eye(degree + 1), a.T @ y_train)
    return float(np.mean((features(x_val) @ weights - y_val) ** 2))


def objective(trial: optuna.Trial) -> float:
    """The demo's Optuna objective: validation MSE of the ridge model (minimize)."""
    return validation_error(
        degree=trial.suggest_int("degree", *DEGREES),
        alpha=trial.suggest_float("alpha", *ALPHAS, log=True),
    )
