"""``dasktune export``: a study copied out of the scheduler into another Optuna storage.

``optuna.copy_study`` writes trial by trial, each in a transaction of its own: on SQLite a
dozen queries and a commit per trial, on a journal file a lock, a write and an fsync per
trial. Here the study is read in one request, and its trials are written in bulk wherever
the target allows: batched inserts in one transaction for a database
(:func:`dasktune.compat.rdb_add_trials`), one append for a journal file. Any other target (a
Redis journal) is written trial by trial, as ``copy_study`` does. Either way a progress bar
shows on stderr, and an export that fails leaves no partial study behind.

A study with a live run is copied as it stands, RUNNING trials as RUNNING, unless the user
waits for the run to end (``--wait``, or yes when asked at a terminal); the command says
which trials it copied in which state.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path
import sys
import time
from typing import Any

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import BaseStorage
from optuna.storages import JournalStorage
from optuna.storages import RDBStorage
from optuna.storages.journal import BaseJournalBackend
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial
from tqdm import tqdm

import dasktune
from dasktune import compat
from dasktune.cli import render
from dasktune.cli.connect import CommandError
from dasktune.cli.connect import connect
from dasktune.cli.connect import find_study
from dasktune.storage.backends import check_url
from dasktune.storage.backends import JOURNAL_SCHEME
from dasktune.storage import wire
from dasktune.storage.backends import open_backend


def export(args: argparse.Namespace) -> int:
    """Copy a study into another Optuna storage (e.g. SQLite for optuna-dashboard)."""
    url = export_url(args.to)
    try:  # before connecting: a malformed --to is a usage error, and creates nothing
        check_url(url)
    except (ValueError, TypeError) as e:
        raise CommandError(f"cannot use --to {args.to!r}: {e}") from None
    with connect(args) as client:
        study, storage = find_study(client, args)
        live = [r for r in storage.find_runs(compat.study_id(study)) if not r["done"]]
        waited = bool(live) and (args.wait or _wants_to_wait(study, live))
        for run in live if waited else []:
            print(f"Waiting for run {run['run_id']} to end (Ctrl-C stops waiting, not the run).", flush=True)
            dasktune.attach(study, run["run_id"]).wait(show_progress_bar=True)
        name = args.as_name or study.study_name
        started = time.perf_counter()  # what optuna.copy_study(to_storage=URL) would do from here
        try:  # once the study is found: opening a SQLite or journal URL creates its file
            target = open_backend(url)
        except Exception as e:  # the driver's own error: a missing directory, a refused login
            raise CommandError(f"cannot open --to {args.to!r}: {type(e).__name__}: {e}") from None
        copied = copy_study(study, target, url, name)
        by_state = render.counts(copied)
        print(
            f"Exported {len(copied)} trials of study {args.study!r} to {args.to} as {name!r} "
            f"({render.counts_line(by_state).removeprefix('Trials: ')}); copied in "
            f"{time.perf_counter() - started:.2f} s."
        )
        _export_artifacts(study, copied, args.artifacts or _artifacts_beside(url))
    unfinished = " and ".join(f"{by_state[s]} {s}" for s in ("RUNNING", "WAITING") if by_state[s])
    if unfinished and live and not waited:
        print(
            f"Run {', '.join(r['run_id'] for r in live)} of the study was live: its {unfinished} "
            "trials are copied in that state, and stay so in the copy. Export again once it "
            "ends, or pass --wait to wait for it."
        )
    elif unfinished:
        print(
            f"The {unfinished} trials are copied in that state: no dasktune run of the study "
            "is live (another process runs them, or they were lost)."
        )
    return 0


def _artifacts_beside(url: str) -> Path | None:
    """Where a file target's artifacts go by default: a directory beside the file."""
    for scheme in ("sqlite:///", JOURNAL_SCHEME):
        if url.startswith(scheme):
            path = Path(url.removeprefix(scheme))
            return path.with_name(path.name + "-artifacts")
    return None


def _export_artifacts(study: optuna.Study, trials: list[FrozenTrial], directory: Path | None) -> None:
    """Copy the artifacts of ``study`` and its ``trials`` (those ``optuna.artifacts``
    lists) from the scheduler's artifact store into a file-system store at ``directory``,
    for ``optuna-dashboard URL --artifact-dir DIRECTORY``."""
    storage = compat.study_storage(study)
    metas = [*optuna.artifacts.get_all_artifact_meta(study)]
    for trial in trials:
        metas += optuna.artifacts.get_all_artifact_meta(trial, storage=storage)
    if not metas:
        return
    if directory is None:
        print(f"The study has {len(metas)} artifacts on the scheduler: pass --artifacts DIR to copy them.")
        return
    from dasktune.artifacts import DaskArtifactStore

    directory.mkdir(parents=True, exist_ok=True)
    source, target = DaskArtifactStore(), optuna.artifacts.FileSystemArtifactStore(str(directory))
    missing = 0
    for meta in metas:
        try:
            with source.open_reader(meta.artifact_id) as reader:
                target.write(meta.artifact_id, reader)
        except ArtifactNotFound:
            missing += 1  # uploaded to another store (a user's own), or removed
    gone = f"; {missing} are not in the scheduler's store (another store holds them?)" if missing else ""
    print(f"Copied {len(metas) - missing} artifacts to {directory} (optuna-dashboard --artifact-dir {directory}){gone}.")


def _wants_to_wait(study: optuna.Study, live: list[wire.RunStatus]) -> bool:
    """Ask, at a terminal, whether to wait for the study's live runs before copying; a
    script (stdin not a terminal) copies at once, and is told so after the copy."""
    if not sys.stdin.isatty():
        return False
    for run in live:
        print(render.run_line(run))
    answer = input(
        f"Study {study.study_name!r} has a live run: wait for it to end before copying? "
        "(otherwise its running trials are copied as RUNNING) [y/N] "
    )
    return answer.strip().lower() in ("y", "yes")


def copy_study(study: optuna.Study, target: BaseStorage, url: str, name: str) -> list[FrozenTrial]:
    """Copy ``study`` (its directions, attributes and trials) into ``target``, opened from
    ``url``, as a study named ``name``; the trials copied, as they were read.

    Raises:
        CommandError: ``target`` already has a study named ``name``.
    """
    source, source_id = compat.study_storage(study), compat.study_id(study)
    trials = source.get_all_trials(source_id, deepcopy=False)  # the whole study, one request
    try:
        study_id = target.create_new_study(study.directions, name)
    except optuna.exceptions.DuplicatedStudyError:
        raise CommandError(f"{url} already has a study named {name!r}; choose another with --as.") from None
    try:
        for key, value in source.get_study_system_attrs(source_id).items():
            target.set_study_system_attr(study_id, key, value)
        for key, value in study.user_attrs.items():
            target.set_study_user_attr(study_id, key, value)
        with tqdm(
            total=len(trials), desc=f"Copying {name!r}", unit="trial", file=sys.stderr, leave=True
        ) as bar:
            _write_trials(target, url, study_id, trials, bar)
    except BaseException:
        target.delete_study(study_id)  # half a copy must not pass for the study
        raise
    return list(trials)


def _write_trials(
    target: BaseStorage, url: str, study_id: int, trials: Sequence[FrozenTrial], bar: tqdm
) -> None:
    """Write ``trials`` into study ``study_id`` of ``target``, in bulk where it can."""
    if isinstance(target, RDBStorage):
        compat.rdb_add_trials(target, study_id, _counted(trials, bar))
    elif url.startswith(JOURNAL_SCHEME):
        journal = _HeldJournal(JournalFileBackend(url[len(JOURNAL_SCHEME) :]))
        writer = JournalStorage(journal)
        for trial in _counted(trials, bar):
            writer.create_new_trial(study_id, template_trial=trial)
        bar.set_postfix_str("writing")
        journal.flush()
    else:
        for trial in _counted(trials, bar):
            target.create_new_trial(study_id, template_trial=trial)


def _counted(trials: Iterable[FrozenTrial], bar: tqdm) -> Iterable[FrozenTrial]:
    for trial in trials:
        yield trial
        bar.update()


class _HeldJournal(BaseJournalBackend):
    """A journal that holds the entries written to it in memory until :meth:`flush` appends
    them to ``backend`` in one write (one lock, one fsync). Reads see ``backend`` as it was
    when this was made, followed by the held entries: what a ``JournalStorage`` over it
    replays to number the trials it creates."""

    def __init__(self, backend: BaseJournalBackend) -> None:
        self.backend = backend
        self.logs = list(backend.read_logs(0))
        self.written = len(self.logs)

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        return self.logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs.extend(logs)

    def flush(self) -> None:
        """Append the held entries to the backend."""
        held = self.logs[self.written :]
        if held:
            self.backend.append_logs(held)
        self.written = len(self.logs)


def export_url(to: str) -> str:
    """A storage URL as DaskStorage takes them; a bare ``*.db`` or ``*.log`` path means a
    SQLite file or a journal file."""
    if "://" in to:
        return to
    path = Path(to).resolve()
    if path.suffix == ".db":
        return f"sqlite:///{path}"
    if path.suffix == ".log":
        return f"{JOURNAL_SCHEME}{path}"
    raise CommandError(
        f"--to {to!r} is neither a storage URL nor a .db (SQLite) or .log (journal) file path."
    )
