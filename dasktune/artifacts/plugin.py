"""The scheduler half of :class:`~dasktune.artifacts.DaskArtifactStore`: artifact files on
the scheduler's disk, written and read in parts.

Routes it adds to ``scheduler.handlers``:

``dasktune_artifact_write(artifact_id, part, data, last)``
    Append ``data`` to the artifact being written (``part`` 0 starts it afresh); with
    ``last``, the artifact is complete and replaces any earlier one of that id.
``dasktune_artifact_read(artifact_id, offset, size)``
    Up to ``size`` bytes of the artifact from ``offset`` (fewer at its end), or
    ``{"missing": id}``.
``dasktune_artifact_remove(artifact_id)``
    Delete it (``{"missing": id}`` if there is none).

A part is at most :data:`~dasktune.artifacts.store.PART_BYTES` (4 MiB): a large file never
crosses the scheduler's event loop in one piece, and every disk access runs on a thread, so
uploading a checkpoint of a gigabyte holds no scheduler tick for long (see the README's
"Checkpoints" for the figure).

State and cleanup: the files, in the directory named by the Dask config
``distributed.dasktune.artifact-dir`` (kept when the scheduler closes: give it one that
outlives the scheduler to keep artifacts across restarts) or else a temporary directory
made at the first write or read and deleted with everything in it when the scheduler
closes (a scheduler that is killed leaves it behind, as it leaves any temporary file). An artifact is
kept until it is removed (``ArtifactStore.remove``; a trial's earlier checkpoint is removed
when it saves a new one). A write that never finished leaves a ``.part`` file, removed when
the same id is written again, or with the temporary directory.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
import re
import shutil
import tempfile
from typing import Any
from typing import BinaryIO

import dask.config
from distributed import Scheduler
from distributed.diagnostics.plugin import SchedulerPlugin

#: Dask config key: where the scheduler keeps artifact files (a temporary directory if unset).
DIRECTORY_CONFIG = "distributed.dasktune.artifact-dir"
#: The plugin's name on the scheduler (one per scheduler).
NAME = "dasktune-artifacts"
#: What an artifact id may be: Optuna's are UUIDs; nothing that could leave the directory.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ArtifactPlugin(SchedulerPlugin):
    """Serves artifact parts from the scheduler's disk (see the module docstring)."""

    name = NAME

    def __init__(self) -> None:
        self._directory: Path | None = None
        self._temporary = False

    @property
    def directory(self) -> Path:
        """Where the files are, made on first use (a scheduler nobody stores anything on
        makes no directory)."""
        if self._directory is None:
            configured = dask.config.get(DIRECTORY_CONFIG, None)
            if configured:
                Path(configured).mkdir(parents=True, exist_ok=True)
                self._directory = Path(configured)
            else:
                self._directory, self._temporary = Path(tempfile.mkdtemp(prefix="dasktune-artifacts-")), True
        return self._directory

    async def start(self, scheduler: Scheduler) -> None:
        scheduler.handlers.update(
            {
                "dasktune_artifact_write": self.write,
                "dasktune_artifact_read": self.read,
                "dasktune_artifact_remove": self.remove,
            }
        )

    async def close(self) -> None:
        if self._temporary and self._directory is not None:
            await asyncio.to_thread(shutil.rmtree, self._directory, True)

    def path(self, artifact_id: str) -> Path:
        """The file of ``artifact_id``; ``ValueError`` for an id that is not a plain name."""
        if not isinstance(artifact_id, str) or not _ID.fullmatch(artifact_id):
            raise ValueError(f"Not an artifact id: {artifact_id!r}.")
        return self.directory / artifact_id

    def local_store(self) -> LocalArtifactStore:
        """The same files as an Optuna artifact store for this process (the dashboard's
        threads): plain file access, no messages."""
        return LocalArtifactStore(self)

    async def write(self, artifact_id: str, part: int, data: bytes, last: bool) -> dict[str, Any]:
        path = self.path(artifact_id)
        await asyncio.to_thread(_append, path, part, data, last)
        return {"ok": True}

    async def read(self, artifact_id: str, offset: int, size: int) -> dict[str, Any] | bytes:
        path = self.path(artifact_id)
        try:
            return await asyncio.to_thread(_read, path, offset, size)
        except FileNotFoundError:
            return {"missing": artifact_id}

    async def remove(self, artifact_id: str) -> dict[str, Any]:
        path = self.path(artifact_id)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return {"missing": artifact_id}
        return {"ok": True}


def _partial(path: Path) -> Path:
    """Where an artifact is written before it replaces ``path``, so that readers see the old
    artifact or the whole new one, never a part."""
    return path.with_name(path.name + ".part")


def _append(path: Path, part: int, data: bytes, last: bool) -> None:
    with _partial(path).open("wb" if part == 0 else "ab") as f:
        f.write(data)
    if last:
        _partial(path).replace(path)


def _read(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)


class LocalArtifactStore:
    """The scheduler's artifact files as an Optuna artifact store, for code that runs in the
    scheduler's process, off its event loop (optuna-dashboard's threads)."""

    def __init__(self, plugin: ArtifactPlugin) -> None:
        self.plugin = plugin

    def open_reader(self, artifact_id: str) -> BinaryIO:
        try:
            return self.plugin.path(artifact_id).open("rb")
        except FileNotFoundError:
            raise _not_found(artifact_id) from None

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        path = self.plugin.path(artifact_id)
        with _partial(path).open("wb") as f:
            shutil.copyfileobj(content_body, f)
        _partial(path).replace(path)

    def remove(self, artifact_id: str) -> None:
        try:
            self.plugin.path(artifact_id).unlink()
        except FileNotFoundError:
            raise _not_found(artifact_id) from None


def _not_found(artifact_id: str) -> Exception:
    # Optuna is imported here, in optuna-dashboard's thread, not when the scheduler starts
    # the plugin (an import of Optuna would hold its event loop for a fifth of a second).
    from optuna.artifacts.exceptions import ArtifactNotFound

    return ArtifactNotFound(f"No artifact {artifact_id!r} on the scheduler.")
