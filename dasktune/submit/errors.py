"""How the error that ends a run travels from the worker that met it to the caller of
``optimize``, who gets it once: with its type, its traceback and the errors it was raised
from.

A Dask task that raises has its worker log the error ("Compute Failed", with a traceback)
before the caller gets it: a traceback more for every runner that meets the error, around
the one the caller gets. So the tasks of a run (its runners, define-and-run trials) *return*
the error that ends it, as a :class:`RemoteError` the driver raises. Returning also lets a
``BaseException`` (``SystemExit``, ``KeyboardInterrupt``) reach the caller with its type
without taking the worker down. Raising stays for what dasktune did not foresee (a storage
that cannot be reached, say): the worker's log is then where it should show.

It travels as Dask sends the error of a task: pickled with its traceback and chain (tblib,
as distributed does), or, if it cannot be pickled or not loaded at the caller, as an
``Exception`` holding its repr and traceback.
"""

from __future__ import annotations

import traceback
from typing import Any

from tblib import pickling_support  # type: ignore[import-untyped]  # no type hints

from dasktune.submit import pickling


class RemoteError:
    """The error ``error`` that ended a run in one of its tasks; pickles as stated above."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load, _dumps(self.error))

    def __repr__(self) -> str:
        return f"RemoteError({self.error!r})"


def _dumps(error: BaseException) -> tuple[bytes, str]:
    """``error`` pickled with its traceback and chain, or a stand-in; and its text."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    # Without this, pickle drops an exception's traceback and causes: tblib registers a
    # reducer that keeps them for each type of the chain, as distributed's ``error_message``
    # does for the error of a task.
    pickling_support.install(*{type(e) for e in _chain(error)})
    try:
        pickled = pickling.dumps(error)
        pickling.loads(pickled)  # what cannot load here will not at the caller either
    except Exception as e:  # as Dask does: its repr, in an Exception that always pickles
        stand_in = Exception(f"{error!r}, which could not be sent from the worker ({e!r}), raised at:\n{text}")
        pickled = pickling.dumps(stand_in)
    return pickled, text


def _load(pickled: bytes, text: str) -> RemoteError:
    try:
        error = pickling.loads(pickled)
    except Exception as e:  # its type is not importable here, say
        error = Exception(f"An error could not be loaded here ({e!r}); on the worker it was:\n{text}")
    return RemoteError(error)


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and every error it was raised from or while handling."""
    chain: list[BaseException] = []
    todo = [error]
    while todo:
        e = todo.pop()
        if all(e is not seen for seen in chain):
            chain.append(e)
            todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    return chain
