"""The demo problem that ships with dasktune: no data to download.

A polynomial ridge regression fit to noisy samples of a known curve, scored on held-out
points. Its hyperparameters (degree, penalty, feature scaling) interact the way real ones
do: too low a degree underfits, too high overfits unless the penalty grows with it.
"""

from __future__ import annotations

import numpy as np
import optuna


def make_data(seed: int = 0, n: int = 400) -> tuple[np.ndarray, ...]:
    """Train and validation samples of ``sin(3x) + x/2`` with Gaussian noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, size=n)
    y = np.sin(3 * x) + 0.5 * x + rng.normal(0.0, 0.3, size=n)
    split = n * 3 // 4
    return x[:split], y[:split], x[split:], y[split:]


def validation_error(degree: int, alpha: float, scaling: str, seed: int = 0) -> float:
    """Mean squared error on the validation split of a ridge fit with these settings."""
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
        degree=trial.suggest_int("degree", 1, 15),
        alpha=trial.suggest_float("alpha", 1e-6, 10.0, log=True),
        scaling=trial.suggest_categorical("scaling", ["none", "unit", "std"]),
    )
