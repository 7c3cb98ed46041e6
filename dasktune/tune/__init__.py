"""``dasktune.tune``: FLAML's ``run`` / ``report`` API and typed search spaces, on the
cluster, built on :func:`dasktune.optimize`."""

from __future__ import annotations

from dasktune.tune.analysis import ExperimentAnalysis
from dasktune.tune.domains import choice
from dasktune.tune.domains import lograndint
from dasktune.tune.domains import loguniform
from dasktune.tune.domains import qlograndint
from dasktune.tune.domains import qloguniform
from dasktune.tune.domains import qrandint
from dasktune.tune.domains import quniform
from dasktune.tune.domains import randint
from dasktune.tune.domains import uniform
from dasktune.tune.reporting import report
from dasktune.tune.run import run
from dasktune.tune.space import SearchSpace
from dasktune.tune.typed import typed_space

__all__ = [
    "ExperimentAnalysis", "SearchSpace", "choice", "lograndint", "loguniform", "qlograndint",
    "qloguniform", "qrandint", "quniform", "randint", "report", "run", "typed_space", "uniform",
]
