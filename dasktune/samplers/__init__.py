"""Samplers made for many trials at once: :class:`ParallelSampler` and the pure rules it
chooses by (:mod:`dasktune.samplers.rules`)."""

from __future__ import annotations

from dasktune.samplers.parallel import ParallelSampler
from dasktune.samplers.rules import Limits

__all__ = ["Limits", "ParallelSampler"]
