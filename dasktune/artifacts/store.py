"""The client and worker half of the scheduler's artifact store."""

from __future__ import annotations

import io
from typing import Any
from typing import BinaryIO

from distributed import Client
from distributed import get_client
from distributed.protocol.pickle import dumps
from optuna.artifacts.exceptions import ArtifactNotFound

from dasktune.storage.protocol import scheduler_rpc

#: Bytes per message to or from the scheduler: small enough that the scheduler's event loop
#: never handles a large file in one piece, large enough that a gigabyte takes 256 round
#: trips.
PART_BYTES = 4 * 2**20


class DaskArtifactStore:
    """An Optuna artifact store whose files are kept on the Dask scheduler's disk.

    Works wherever the client or worker can reach the scheduler, with no shared file system
    and no configuration; files travel in parts of :data:`PART_BYTES`. Use it as any Optuna
    artifact store::

        store = dasktune.artifacts.DaskArtifactStore()
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=store, file_path="model.pt", study_or_trial=trial
        )

    The scheduler keeps the files until they are removed, in the directory named by the
    Dask config ``distributed.dasktune.artifact-dir``, or in a temporary directory deleted
    when the scheduler closes (see :mod:`dasktune.artifacts.plugin`). The Tuning page's
    optuna-dashboard lists and serves them.

    Args:
        client: The Dask client to talk through; the current one (on a worker, the
            worker's) by default.
    """

    def __init__(self, client: Client | None = None) -> None:
        self._client = client
        self._registered = False

    @property
    def client(self) -> Client:
        if self._client is None or self._client.status in ("closing", "closed"):
            self._client = get_client()
        return self._client

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskArtifactStore, ())  # on another process: that process's client

    def open_reader(self, artifact_id: str) -> BinaryIO:
        first = self._ask("dasktune_artifact_read", artifact_id=artifact_id, offset=0, size=PART_BYTES)
        if isinstance(first, dict):
            raise ArtifactNotFound(f"No artifact {artifact_id!r} on the scheduler.")
        return io.BufferedReader(_PartReader(self, artifact_id, first), buffer_size=PART_BYTES)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        part = 0
        while True:
            data = _read_up_to(content_body, PART_BYTES)
            last = len(data) < PART_BYTES  # a file of whole parts ends with an empty one
            self._ask("dasktune_artifact_write", artifact_id=artifact_id, part=part, data=data, last=last)
            if last:
                return
            part += 1

    def remove(self, artifact_id: str) -> None:
        if "missing" in self._ask("dasktune_artifact_remove", artifact_id=artifact_id):
            raise ArtifactNotFound(f"No artifact {artifact_id!r} on the scheduler.")

    def _ask(self, route: str, **kwargs: Any) -> Any:
        client = self.client
        rpc = scheduler_rpc(client)
        if not self._registered:  # once per store object: idempotent on the scheduler
            from dasktune.artifacts.plugin import ArtifactPlugin
            from dasktune.artifacts.plugin import NAME

            client.sync(rpc.register_scheduler_plugin, plugin=dumps(ArtifactPlugin()), name=NAME, idempotent=True)
            self._registered = True
        return client.sync(getattr(rpc, route), **kwargs)


class _PartReader(io.RawIOBase):
    """An artifact read part by part, as it is consumed."""

    def __init__(self, store: DaskArtifactStore, artifact_id: str, first: bytes) -> None:
        self._store, self._id = store, artifact_id
        self._part, self._at = memoryview(first), 0  # the part in hand, and how much is read
        self._offset, self._done = len(first), len(first) < PART_BYTES

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._at == len(self._part) and not self._done:
            data = self._store._ask("dasktune_artifact_read", artifact_id=self._id, offset=self._offset, size=PART_BYTES)
            if isinstance(data, dict):
                raise ArtifactNotFound(f"The artifact {self._id!r} was removed while it was read.")
            self._part, self._at = memoryview(data), 0
            self._offset, self._done = self._offset + len(data), len(data) < PART_BYTES
        n = min(len(b), len(self._part) - self._at)
        b[:n] = self._part[self._at : self._at + n]
        self._at += n
        return n


def _read_up_to(body: BinaryIO, size: int) -> bytes:
    """``size`` bytes of ``body``, fewer only at its end (a pipe's ``read`` may return less)."""
    chunks, wanted = [], size
    while wanted:
        chunk = body.read(wanted)
        if not chunk:
            break
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)
