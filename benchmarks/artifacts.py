"""A 1 GiB checkpoint through the scheduler's artifact store (issue 30): does it hold up
the scheduler?

``python -m benchmarks.artifacts [--gib 1] [--out DIR]``: a ``dask scheduler`` process and
one ``dask worker`` process on this machine. A watcher on the scheduler's event loop asks to
wake every 10 ms and records how late it wakes: a tick that a handler holds shows as a late
wake-up. Measured, each while the watcher runs:

- ``idle``: 3 s of nothing, the baseline;
- ``first use``: the worker's first write to the store, of one byte;
- ``upload``: a worker task writes a file of ``--gib`` GiB of random bytes to the store
  (``DaskArtifactStore.write``: parts of 4 MiB, each written to disk on a thread);
- ``download``: the same task reads it back to a file (``open_reader``);
- ``one message`` (the peer: what a store that sends a file whole would do): one write of
  256 MiB in a single message to the same route.

Reported: the time of each transfer and its rate, and how late the scheduler's ticks were:
the largest delay and the 99th percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
from pathlib import Path
import time
from typing import Any

import numpy as np

from benchmarks.common import process_cluster

TICK = 0.01


def _start_watch(dask_scheduler: Any = None) -> None:
    """On the scheduler: record how late a 10 ms sleep wakes, for ever (until read)."""
    lags: list[float] = []

    async def watch() -> None:
        while True:
            began = time.monotonic()
            await asyncio.sleep(TICK)
            lags.append(time.monotonic() - began - TICK)

    dask_scheduler._bench_lags = lags
    dask_scheduler._bench_watch = asyncio.ensure_future(watch())


def _take_lags(dask_scheduler: Any = None) -> list[float]:
    lags = list(dask_scheduler._bench_lags)
    dask_scheduler._bench_lags.clear()
    return lags


def _first_write() -> None:
    """A worker's first use of the store (the plugin's check, its first part): not the
    gigabyte's."""
    from dasktune.artifacts import DaskArtifactStore

    DaskArtifactStore().write("bench-first", io.BytesIO(b"x"))


def _make_file(path: str, size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size // 2**24):
            f.write(os.urandom(2**24))


def _upload(path: str) -> float:
    from dasktune.artifacts import DaskArtifactStore

    began = time.monotonic()
    with open(path, "rb") as f:
        DaskArtifactStore().write("bench-1gib", f)
    return time.monotonic() - began


def _download(path: str) -> float:
    import shutil

    from dasktune.artifacts import DaskArtifactStore

    began = time.monotonic()
    with DaskArtifactStore().open_reader("bench-1gib") as reader, open(path, "wb") as f:
        shutil.copyfileobj(reader, f, 2**22)
    return time.monotonic() - began


def _one_message(size: int) -> float:
    from distributed import get_client

    from dasktune.artifacts import DaskArtifactStore

    store = DaskArtifactStore()
    store.write("bench-small", io.BytesIO(b"x"))  # the plugin is there
    client = get_client()
    data = os.urandom(size)
    began = time.monotonic()
    client.sync(client.scheduler.dasktune_artifact_write, artifact_id="bench-whole", part=0, data=data, last=True)
    return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    size = int(args.gib * 2**30)
    rows = []
    with process_cluster(n_workers=1, nthreads=1) as cluster:
        client = cluster.client
        client.run_on_scheduler(_start_watch)
        time.sleep(3)
        rows.append(("idle, 3 s", None, client.run_on_scheduler(_take_lags)))
        path = f"/tmp/dasktune-bench-{os.getpid()}.bin"
        try:
            client.submit(_make_file, path, size, pure=False).result()
            time.sleep(3)  # the page cache's write-back of the file, before anything is timed
            client.run_on_scheduler(_take_lags)  # the file's making is not the upload's
            client.submit(_first_write, pure=False).result()
            rows.append(("first use of the store by the worker (1 byte)", None, client.run_on_scheduler(_take_lags)))
            seconds = client.submit(_upload, path, pure=False).result()
            rows.append((f"upload {args.gib:g} GiB (4 MiB parts)", seconds, client.run_on_scheduler(_take_lags)))
            seconds = client.submit(_download, path + ".back", pure=False).result()
            rows.append((f"download {args.gib:g} GiB", seconds, client.run_on_scheduler(_take_lags)))
            seconds = client.submit(_one_message, 2**28, pure=False).result()
            rows.append(("one message of 256 MiB (the peer)", seconds, client.run_on_scheduler(_take_lags)))
        finally:
            for p in (path, path + ".back"):
                if os.path.exists(p):
                    os.remove(p)
    lines = [
        "# A large checkpoint through the scheduler's artifact store",
        "",
        f"`python -m benchmarks.artifacts --gib {args.gib:g}`: a `dask scheduler` and a `dask worker` process on "
        "this machine (2 cores); a watcher on the scheduler's event loop wakes every 10 ms and records how late.",
        "",
        "| what the worker does | time | rate | ticks | latest tick | 99th percentile |",
        "|---|---|---|---|---|---|",
    ]
    for what, seconds, lags in rows:
        late = np.array(lags) * 1000
        rate = "" if seconds is None else f"{(size if 'GiB' in what else 2**28) / 2**20 / seconds:.0f} MiB/s"
        lines.append(
            f"| {what} | {'' if seconds is None else f'{seconds:.1f} s'} | {rate} | {len(late)} | "
            f"{late.max():.0f} ms | {np.quantile(late, 0.99):.0f} ms |"
        )
    lines.append("")
    text = "\n".join(lines)
    (args.out / "artifacts.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
