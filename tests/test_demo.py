"""The demo problem has the interior optimum its docstring states, and Optuna finds it.

Pure numpy and in-process Optuna: no cluster. ``tests/test_cli.py`` runs ``dasktune demo``.
"""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from dasktune import demo


@pytest.fixture(scope="module")
def grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validation MSE over the demo's space: every degree by 351 log-spaced alphas."""
    degrees = np.arange(demo.DEGREES[0], demo.DEGREES[1] + 1)
    alphas = np.logspace(np.log10(demo.ALPHAS[0]), np.log10(demo.ALPHAS[1]), 351)
    errors = np.array([[demo.validation_error(int(d), float(a)) for a in alphas] for d in degrees])
    return degrees, alphas, errors


def test_the_optimum_is_inside_the_space_where_the_docstring_says(grid) -> None:
    degrees, alphas, errors = grid
    d, a = np.unravel_index(errors.argmin(), errors.shape)
    best = errors.min()
    assert degrees[d] == demo.OPTIMUM["degree"]
    assert abs(np.log10(alphas[a] / demo.OPTIMUM["alpha"])) < 0.05  # 3.0e-4 within 12%
    assert best == pytest.approx(demo.OPTIMUM_MSE, abs=5e-5)
    assert demo.validation_error(**demo.OPTIMUM) == pytest.approx(demo.OPTIMUM_MSE, abs=5e-5)
    # Not on an edge, and every edge visibly worse (the docstring's figures).
    assert 0 < d < len(degrees) - 1 and 0 < a < len(alphas) - 1
    assert errors[:, 0].min() > 1.3 * best and errors[:, -1].min() > 5 * best  # alpha's edges
    assert errors[0].min() > 4.9 * best and errors[-1].min() > 1.45 * best  # degree's edges
    for degree, low, high in [(5, 1.2, 1.3), (8, 1.0, 1.005), (9, 1.0, 1.08), (10, 1.0, 1.08), (11, 1.2, 1.3)]:
        assert low <= errors[degree - 1].min() / best <= high, degree
    for alpha, low, high in [(1e-4, 1.2, 1.3), (1e-3, 1.2, 1.3)]:
        assert low <= demo.validation_error(7, alpha) / best <= high, alpha


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tpe_finds_the_optimum_in_100_trials(seed: int) -> None:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(demo.objective, n_trials=100)
    assert study.best_value <= 1.01 * demo.OPTIMUM_MSE
    assert study.best_params["degree"] in (7, 8)
