"""A study's change log on the scheduler: which trials changed since a reader's cursor.

Every write to a study appends the id of the trial it changed (or :data:`STUDY_CHANGED` for
the study's own attributes) at the next *position*; a reader's cursor is the position it has
read up to, so "what changed since my cursor" is the distinct ids logged at or after it —
O(changes), never O(study).

A trial written a hundred times (its intermediate values, one by one) would leave a hundred
entries. The log therefore compacts itself, as Optuna's journal takes snapshots: once it
holds more than twice as many entries as distinct ids (and a few), it keeps only each id's
latest entry. Entries keep their positions — a compacted log is the same log with the
superseded entries left out — so every cursor stays valid: the ids logged at or after it are
still exactly those changed since. The log never holds more than ``2 x (ids + slack)``
entries, 16 bytes each.
"""

from __future__ import annotations

from array import array
import bisect

#: Marks a change to the study itself (attributes) in a change log of trial ids.
STUDY_CHANGED = -1
#: Entries a log may hold beyond twice its distinct ids before it compacts (so that a small
#: log does not compact at every write).
_SLACK = 64


class ChangeLog:
    """The change log of one study (see the module docstring)."""

    def __init__(self) -> None:
        self._positions: array[int] = array("q")
        self._ids: array[int] = array("q")
        self._distinct = 0  # distinct ids among the entries, as of the last compaction
        self.end = 0  # the position the next entry takes: a cursor that has read everything

    def __len__(self) -> int:
        return len(self._ids)

    def append(self, changed: int) -> None:
        """Log a change to the trial ``changed`` (or :data:`STUDY_CHANGED`)."""
        self._positions.append(self.end)
        self._ids.append(changed)
        self.end += 1
        if len(self._ids) > 2 * (self._distinct + _SLACK):
            self._compact()

    def since(self, cursor: int) -> list[int]:
        """The distinct ids changed at or after ``cursor`` (a cursor from another log,
        beyond this one's end, reads everything)."""
        if cursor > self.end:
            cursor = 0
        return list(dict.fromkeys(self._ids[bisect.bisect_left(self._positions, cursor) :]))

    def ids(self) -> list[int]:
        """Every id ever logged (each once)."""
        return self.since(0)

    def _compact(self) -> None:
        latest: dict[int, int] = {}
        for position, changed in zip(self._positions, self._ids):
            latest[changed] = position
        kept = sorted(latest.items(), key=lambda item: item[1])
        self._ids = array("q", (changed for changed, _ in kept))
        self._positions = array("q", (position for _, position in kept))
        self._distinct = len(kept)
