"""What the Tuning pages, their JSON and ``/metrics`` read: a :class:`HostStorage` per
storage, whose replica is the dashboard's only copy of the studies, and a :class:`ShownStudy`
per study. The pages name an unnamed storage (``dasktune-storage-<32 hex digits>``), and link
to it, by :func:`short_name` unless another storage has that name; a URL may give either.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections import deque
from collections.abc import Callable
from collections.abc import Mapping
from datetime import datetime
from datetime import timedelta
import threading
import weakref
from typing import Any

from optuna.trial import TrialState

from dasktune.dashboard.host_storage import Hosts
from dasktune.dashboard.host_storage import HostStorage
from dasktune.storage.host import StorageHost
from dasktune.storage.replica import StudyReplica

#: How an unnamed storage's name begins (then 32 hex digits).
UNNAMED = "dasktune-storage-"


def short_name(name: str) -> str:
    """``dasktune-storage-2b63d90cf666...`` → ``dasktune-storage-2b63d90c``; others as they are."""
    return name[: len(UNNAMED) + 8] if name.startswith(UNNAMED) and len(name) == len(UNNAMED) + 32 else name


def epoch_ms(moment: datetime | None) -> float | None:
    """A time as the JSON shows it: milliseconds since the epoch."""
    return None if moment is None else moment.timestamp() * 1000.0


class ShownStudy:
    """A study as the pages show it: its storage (``label``: as links name it), its replica,
    its trials by state, completions of the last minute, first start and last change.
    :meth:`update` looks only at new trials and those that had not finished: a finished trial
    never changes (Optuna refuses writes to it)."""

    def __init__(self, storage: str, backend: HostStorage, study: StudyReplica) -> None:
        self.storage, self.label, self.backend, self.study = storage, storage, backend, study
        self.seen = 0  # trials looked at: numbers below this
        self.open: set[int] = set()  # numbers of those that had not finished
        self.finished: Counter[TrialState] = Counter()
        self.completions: deque[datetime] = deque()
        self.started: datetime | None = None
        self.updated: datetime | None = None

    def update(self) -> Counter[TrialState]:
        """The count of each state, brought up to date."""
        trials = self.study.trials
        fresh = [trials[n] for n in sorted(self.open)] + trials[self.seen :]
        self.seen, self.open = len(trials), set()
        for trial in fresh:
            if not trial.state.is_finished():
                self.open.add(trial.number)
            else:
                self.finished[trial.state] += 1
                if trial.state == TrialState.COMPLETE and trial.datetime_complete is not None:
                    self.completions.append(trial.datetime_complete)
            start, end = trial.datetime_start, trial.datetime_complete
            self.updated = max(filter(None, (self.updated, start, end)), default=None)
            self.started = min(filter(None, (self.started, start)), default=None)
        while self.completions and self.completions[0] < datetime.now() - timedelta(minutes=1):
            self.completions.popleft()
        return self.finished + Counter(trials[n].state for n in self.open)

    def summary(self) -> dict[str, Any]:
        """The study as ``/tuning/api/studies`` lists it."""
        counts, best = self.update(), self.study.best
        return {
            "storage": self.storage,
            "study": self.study.name,
            "directions": [d.name.lower() for d in self.study.directions],
            "trials": {state.name: counts[state] for state in TrialState},
            "n_trials": len(self.study.trials),
            "best": None if best is None else {"number": best.number, "value": best.values[0]},
            "trials_per_minute": len(self.completions),
            "started": epoch_ms(self.started),
            "updated": epoch_ms(self.updated),
        }


class TuningState:
    """Every study of every storage of ``hosts()``, read through a :class:`HostStorage` per
    storage (optuna-dashboard's too): on the scheduler's loop, and in optuna-dashboard's
    threads :meth:`storage` only."""

    def __init__(
        self, hosts: Hosts, handlers: Mapping[str, Callable[..., Any]], loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self.hosts, self.handlers, self.loop = hosts, handlers, loop
        self._storages: dict[str, tuple[weakref.ref[StorageHost], HostStorage]] = {}
        self._shown: dict[tuple[str, int], ShownStudy] = {}
        self._lock = threading.RLock()

    def resolve(self, name: str) -> str:
        """The storage called ``name`` or, unambiguously, short-named so; ``KeyError``."""
        names = list(self.hosts())
        matches = [name] if name in names else [n for n in names if short_name(n) == name]
        if len(matches) != 1:
            raise KeyError(f"No DaskStorage named {name!r} on this scheduler.")
        return matches[0]

    def storage(self, name: str) -> HostStorage:
        """The storage called ``name`` (see :meth:`resolve`): a new one when it was reopened,
        since its ids then mean other studies."""
        name = self.resolve(name)
        host = self.hosts()[name]
        with self._lock:
            known = self._storages.get(name)
            if known is None or known[0]() is not host:
                assert self.loop is not None, "the plugin started"
                known = self._storages[name] = (weakref.ref(host), HostStorage(self.hosts, name, self.handlers, self.loop))
                # The plugin drops a storage nobody holds (storage/holders.py): the pages
                # forget it, and their copy of its studies, with it.
                weakref.finalize(host, self._forget, name, known[1])
            return known[1]

    def _forget(self, name: str, storage: HostStorage) -> None:
        with self._lock:  # (re-entrant: the collector may run this inside a locked block)
            if name in self._storages and self._storages[name][1] is storage:
                self._storages = {n: known for n, known in self._storages.items() if n != name}
            self._shown = {key: shown for key, shown in self._shown.items() if shown.backend is not storage}

    def study(self, storage: str, name: str) -> ShownStudy:
        """Study ``name`` of ``storage``, up to date; ``KeyError`` naming what is missing."""
        backend = self.storage(storage)
        try:
            study = backend.study(backend.get_study_id_from_name(name))
        except KeyError:
            raise KeyError(f"No study {name!r} in the DaskStorage {storage!r}.") from None
        shown = self._shown.get((backend.name, study.study_id))
        if shown is None or shown.study is not study:  # new, or its host was rebuilt
            shown = self._shown[backend.name, study.study_id] = ShownStudy(backend.name, backend, study)
        short = short_name(backend.name)
        shown.label = short if [short_name(n) for n in self.hosts()].count(short) == 1 else backend.name
        return shown

    def studies(self) -> list[ShownStudy]:
        """Every study, up to date, by storage and name."""
        found = []
        for storage, host in list(self.hosts().items()):
            for meta in host.studies():
                try:
                    found.append(self.study(storage, meta["name"]))
                except KeyError:
                    continue  # deleted meanwhile
        self._shown = {(s.storage, s.study.study_id): s for s in found}
        return sorted(found, key=lambda s: (s.label, s.study.name))
