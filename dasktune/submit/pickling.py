"""How a run's study, sampler and objective travel to the workers.

Every runner task gets its own copy of the study's sampler, as every process of Optuna's
own distributed pattern builds its own. Dask pickles task arguments, and some samplers hold a
thread lock for their in-process caches (Optuna's ``NSGAIISampler`` and ``NSGAIIISampler``,
through ``BaseGASampler``), which pickle refuses. A lock guards a process's own threads and
holds no state worth sending: a copy gets a fresh, unlocked one, and the sampler behaves as a
sampler built in that process. Everything else is pickled as Dask would (cloudpickle, so
objectives defined in a notebook travel by value).
"""

from __future__ import annotations

import io
import pickle
import threading
from typing import Any

import cloudpickle

#: Lock types and the factory that makes a fresh one of each.
_LOCKS: dict[type, Any] = {
    type(threading.Lock()): threading.Lock,
    type(threading.RLock()): threading.RLock,
}


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle has no type hints
    def reducer_override(self, obj: Any) -> Any:
        factory = _LOCKS.get(type(obj))
        if factory is not None:
            return factory, ()
        return super().reducer_override(obj)


def dumps(obj: Any) -> bytes:
    """``obj`` pickled as cloudpickle does, with every thread lock in it replaced by a fresh
    one on loading."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    return pickle.loads(data)
