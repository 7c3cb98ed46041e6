"""The first answers to recent writes, so that a request retried after a dropped connection
is answered as the first time rather than applied again.

A write's request id is ``"<prefix>-<number>"``, its prefix made once per ``DaskStorage``
object (so per process, in practice). A retry follows the dropped connection of its first
attempt within seconds — the connect timeout at most — and comes from the same process, so
the answers are kept per prefix: the last :data:`PER_PREFIX` of each, and a prefix that has
sent nothing for :data:`IDLE_SECONDS` is forgotten. What is kept is bounded by the processes
writing, not by time or traffic.
"""

from __future__ import annotations

from collections import OrderedDict
import time
from typing import Any

#: Answers kept per prefix: more than a process's threads write while one of them retries.
PER_PREFIX = 1024
#: A prefix that sent no write for this long is forgotten (a retry comes long before).
IDLE_SECONDS = 60.0
#: What :meth:`Answers.find` returns for a request it has no answer to.
MISSING: Any = object()


class Answers:
    """The first answers to recent writes, by request id."""

    def __init__(self) -> None:
        self._by_prefix: dict[str, OrderedDict[str, Any]] = {}
        self._last_used: dict[str, float] = {}

    def __len__(self) -> int:
        return sum(map(len, self._by_prefix.values()))

    def find(self, request_id: str) -> Any:
        """The first answer to ``request_id``, or :data:`MISSING` if there is none."""
        prefix, _, number = request_id.rpartition("-")
        answers = self._by_prefix.get(prefix)
        return MISSING if answers is None else answers.get(number, MISSING)

    def keep(self, request_id: str, answer: Any) -> None:
        prefix, _, number = request_id.rpartition("-")
        answers = self._by_prefix.setdefault(prefix, OrderedDict())
        answers[number] = answer
        if len(answers) > PER_PREFIX:
            answers.popitem(last=False)
        self._last_used[prefix] = time.monotonic()

    def expire(self, now: float | None = None) -> None:
        """Forget the prefixes idle for :data:`IDLE_SECONDS`."""
        horizon = (time.monotonic() if now is None else now) - IDLE_SECONDS
        for prefix in [p for p, used in self._last_used.items() if used < horizon]:
            del self._by_prefix[prefix], self._last_used[prefix]
