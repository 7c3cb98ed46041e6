"""Where a storage's backend does its I/O on the scheduler: for a database or a file, a
thread of its own (a one-thread pool), one call at a time, so that I/O never blocks the
scheduler's event loop; for memory, the event loop itself (microseconds per call).

At interpreter exit Python stops the threads of every thread pool (the exit hook of
``concurrent.futures``) before distributed's exit hook closes a cluster the script left
open, and closing it still calls on the backends: the last workers leave (their running
trials must FAIL), the periodic sweep runs, the backends close. A call the stopped pool
refuses is then made on the event loop, once the pool's thread has finished its last call,
so calls stay one at a time: nothing is lost, and nothing is logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from typing import TypeVar

T = TypeVar("T")


async def run_on(executor: ThreadPoolExecutor | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the backend's thread ``executor``, or on the event loop (``None``,
    or a pool stopped at interpreter exit)."""
    if executor is None:
        return fn(*args)
    try:
        future = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    except RuntimeError:  # "cannot schedule new futures after [interpreter] shutdown"
        executor.shutdown(wait=True)  # its thread has finished its last call
        return fn(*args)
    return await future
