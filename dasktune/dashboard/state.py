"""What the Tuning page shows, kept up to date from the storage plugin at O(changes).

The dashboard only reads: for each study it keeps a :class:`StudyView`, which asks the
study's :class:`~dasktune.storage.host.StorageHost` for the trials changed since the view's
cursor in the host's change log (the same question every DaskStorage client asks), and
folds them into its counters, best value and compact trial rows. Each view keeps its own
log of the trial numbers it updated, so a page (or a JSON client) asks in turn only for what
changed since *its* cursor. Nothing here walks a whole study after the first read.
"""

from __future__ import annotations

from collections import Counter
from collections import deque
from collections.abc import Mapping
import math
import time
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from dasktune.storage import wire
from dasktune.storage.host import StorageHost
from dasktune.storage.replica import better
from dasktune.storage.wire import FAIL_REASON

STATES = [state.name for state in TrialState]
#: Window over which "trials per minute" is measured.
_RATE_SECONDS = 60.0


def trial_row(trial: FrozenTrial, worker: str | None = None) -> dict[str, Any]:
    """A trial as the page and the JSON endpoint show it (times in ms since the epoch)."""

    def ms(moment: Any) -> float | None:
        return None if moment is None else moment.timestamp() * 1000.0

    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": trial.values,
        "params": {k: v if _plain(v) else str(v) for k, v in trial.params.items()},
        "intermediate": [[step, value] for step, value in sorted(trial.intermediate_values.items())],
        "start": ms(trial.datetime_start),
        "complete": ms(trial.datetime_complete),
        "worker": worker,
        "fail_reason": trial.system_attrs.get(FAIL_REASON),
        "user_attrs": {k: v for k, v in trial.user_attrs.items() if _plain(v)},
    }


def _plain(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


class StudyView:
    """The dashboard's picture of one study."""

    def __init__(self, storage: str, host: StorageHost, meta: Mapping[str, Any]) -> None:
        self.storage, self.host = storage, host
        self.study_id: int = meta["id"]
        self.name: str = meta["name"]
        self.directions = [StudyDirection(d).name.lower() for d in meta["directions"]]
        self.cursor = 0  # position in the host's change log
        self.rows: dict[int, dict[str, Any]] = {}  # trial number -> row
        self.log: list[int] = []  # trial numbers, in the order this view updated them
        self.counts: Counter[str] = Counter()
        self.best: dict[str, Any] | None = None  # single objective: the best row
        self.started: float | None = None
        self.updated: float | None = None
        #: Each parameter's distribution, as the first trial that had it set it: what
        #: decides its axis (log, categories in their order).
        self.distributions: dict[str, BaseDistribution] = {}
        self.running: set[int] = set()  # numbers of the RUNNING trials
        self._completions: deque[float] = deque()

    def refresh(self) -> bool:
        """Fold in what changed since the last refresh; ``False`` if the study is gone."""
        deltas, missing = self.host.deltas({self.study_id: self.cursor}, [self.study_id])
        if missing:
            return False
        for delta in deltas:
            self.cursor = delta["cursor"]
            for packed in delta["trials"]:
                data = wire.unpack_trial(packed)
                trial = wire.decode_trial(data)
                for name, distribution in trial.distributions.items():
                    self.distributions.setdefault(name, distribution)
                self._update(trial_row(trial, data["worker"]))
        return True

    def _update(self, row: dict[str, Any]) -> None:
        old = self.rows.get(row["number"])
        if old is not None:
            self.counts[old["state"]] -= 1
        self.counts[row["state"]] += 1
        self.rows[row["number"]] = row
        if row["state"] == "RUNNING":
            self.running.add(row["number"])
        else:
            self.running.discard(row["number"])
        self.log.append(row["number"])
        moment = row["complete"] or row["start"]
        if moment is not None and (self.updated is None or moment > self.updated):
            self.updated = moment
        if row["start"] is not None and (self.started is None or row["start"] < self.started):
            self.started = row["start"]
        if row["state"] == "COMPLETE" and (old is None or old["state"] != "COMPLETE"):
            self._completions.append(row["complete"] or time.time() * 1000.0)
            if len(self.directions) == 1 and self._better(row):
                self.best = row

    def _better(self, row: dict[str, Any]) -> bool:
        value = row["values"][0]
        if self.best is None:
            return not math.isnan(value)
        best = self.best
        return better(value, row["number"], best["values"][0], best["number"], self.directions[0] == "maximize")

    def since(self, cursor: int) -> tuple[list[dict[str, Any]], int]:
        """Rows changed since ``cursor`` (a position in this view's log), latest form once."""
        if cursor > len(self.log) or cursor < 0:
            cursor = 0  # a cursor from before a restart of the scheduler
        changed = dict.fromkeys(self.log[cursor:])
        return [self.rows[number] for number in changed], len(self.log)

    def summary(self) -> dict[str, Any]:
        """The study's line in the index of studies."""
        horizon = time.time() * 1000.0 - _RATE_SECONDS * 1000.0
        while self._completions and self._completions[0] < horizon:
            self._completions.popleft()
        best: Any = None
        if self.best is not None:
            best = {"number": self.best["number"], "value": self.best["values"][0]}
        return {
            "storage": self.storage,
            "study": self.name,
            "directions": self.directions,
            "trials": {state: self.counts.get(state, 0) for state in STATES},
            "n_trials": len(self.rows),
            "best": best,
            "trials_per_minute": len(self._completions) * 60.0 / _RATE_SECONDS,
            "started": self.started,
            "updated": self.updated,
        }


class TuningState:
    """Every study of every storage the plugin hosts, as the dashboard sees them."""

    def __init__(self, hosts: Mapping[str, StorageHost]) -> None:
        self.hosts = hosts
        self.views: dict[tuple[str, int], StudyView] = {}

    def refresh(self) -> list[StudyView]:
        """All current studies, each brought up to date."""
        current = []
        for storage, host in list(self.hosts.items()):
            for meta in host.store.get_all_studies():
                key = (storage, meta["id"])
                view = self.views.get(key)
                if view is None or view.host is not host:  # new, or its storage was reopened
                    view = self.views[key] = StudyView(storage, host, meta)
                if view.refresh():
                    current.append(view)
        live = {(v.storage, v.study_id) for v in current}
        for key in [k for k in self.views if k not in live]:
            del self.views[key]
        return current

    def study(self, storage: str, name: str) -> StudyView:
        """The view of study ``name`` in ``storage``; ``KeyError`` naming it if none."""
        host = self.hosts.get(storage)
        if host is None:
            raise KeyError(f"No DaskStorage named {storage!r} on this scheduler.")
        study_id = host.store.get_study_id_from_name(name)
        key = (storage, study_id)
        view = self.views.get(key)
        if view is None or view.host is not host:
            meta = next(m for m in host.store.get_all_studies() if m["id"] == study_id)
            view = self.views[key] = StudyView(storage, host, meta)
        if not view.refresh():
            raise KeyError(f"Study {name!r} was deleted.")
        return view
