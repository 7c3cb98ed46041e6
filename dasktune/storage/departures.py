"""Why a worker left the cluster, as far as Dask knows: the reason its running trials FAIL
with (see :meth:`dasktune.storage.plugin.StoragePlugin.remove_worker`).

Dask's ``remove_worker`` hook says only which stimulus removed the worker; the nanny of a
worker it restarts for memory logs a scheduler event moments before. Together they tell a
memory kill, an unresponsive worker (the scheduler's worker TTL), a retirement, and a
connection that closed (killed, crashed, or its network failed) apart.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import dask.config
from dask.utils import format_bytes

if TYPE_CHECKING:
    from distributed import Scheduler

#: Scheduler event topic under which a nanny reports restarting its worker for memory.
_MEMORY_RESTART = "worker-restart-memory"
#: How recent such an event must be to explain a worker's removal (it arrives moments before).
_MEMORY_RESTART_SECONDS = 30.0


def why_removed(scheduler: Scheduler, worker: str, stimulus_id: str, memory_limit: int) -> str:
    """Why the trials ``worker`` was running failed, as far as Dask knows: its nanny restarted
    it for memory (the nanny's event), it stopped answering (the scheduler's worker TTL), it
    was retired, or its connection closed (killed, crashed, or a network failure)."""
    recent = time.time() - _MEMORY_RESTART_SECONDS
    for stamp, event in reversed(scheduler.get_events(_MEMORY_RESTART)):
        if stamp > recent and isinstance(event, dict) and event.get("worker") == worker:
            share = dask.config.get("distributed.worker.memory.terminate", 0.95)
            limit = f"{share:.0%} of its {format_bytes(memory_limit)}" if memory_limit else "its"
            return (
                f"worker {worker} died while running this trial: its nanny restarted it for "
                f"using {format_bytes(event.get('rss', 0))} of memory, past {limit} memory "
                "limit (distributed.worker.memory.terminate)"
            )
    if stimulus_id.startswith("check-worker-ttl"):
        return (
            f"worker {worker} died while running this trial: it stopped answering the "
            f"scheduler for longer than distributed.scheduler.worker-ttl "
            f"({scheduler.worker_ttl:g} s): hung, or cut off by the network"
        )
    if stimulus_id.startswith("retire-workers"):
        return f"worker {worker} was retired (the cluster scaled down) while running this trial"
    return (
        f"worker {worker} died while running this trial: its connection to the scheduler "
        "closed (the process was killed or crashed, or its network failed)"
    )
