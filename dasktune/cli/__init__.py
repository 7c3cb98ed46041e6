"""The ``dasktune`` command line: a demo, running objectives on a cluster, and managing its
studies (``studies``, ``show``, ``best``, ``export``, ``cancel``, ``delete``).

``parser`` holds the arguments and every check that needs no cluster (it imports only the
standard library, so ``--help`` and usage errors are instant); ``commands`` does the work,
importing Optuna and distributed, and is imported only once the arguments are good.
``probe`` finds out what answers at the scheduler address before distributed is handed it,
reading the raw socket through ``sockets`` (``connect`` does the handing); ``render`` draws what the commands print; ``export`` and
``objective`` hold the two commands with most to do.

Every command exits 0 on success, 1 when the objective failed, 2 with a one-line
``error:`` that says what to do about it, 130 after Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Sequence
import gc
import logging
import os
import sys
from typing import NoReturn

from dasktune.cli.parser import parse

#: What Ctrl-C leaves behind, by command (``Interrupted.`` for the others).
INTERRUPTED = {
    "run": "Interrupted: the run was stopped and its running trials failed.",
    "demo": "Interrupted: the run was stopped and its running trials failed.",
    "export": "Interrupted: nothing was exported (a run waited for goes on).",
    "delete": "Interrupted: check what is left with `dasktune show`.",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dasktune`` console script; returns the exit code.

    Called without ``argv`` (as the console script is), it reads ``sys.argv`` and ends the
    process itself once its output is flushed (see :func:`_exit`)."""
    args = parse(None if argv is None else list(argv))
    # Imported here, after parsing: Optuna and distributed take half a second to import.
    # The garbage collector would run dozens of times meanwhile and free nothing (modules
    # live until exit): off while they import, and what they made frozen out of its sight.
    gc.disable()
    try:
        from dasktune.cli import commands
        from dasktune.cli.connect import CommandError
    finally:
        gc.freeze()
        gc.enable()

    try:
        code = commands.execute(args)
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(INTERRUPTED.get(args.command, "Interrupted."), file=sys.stderr)
        code = 130
    except BrokenPipeError:  # the reader left (`dasktune studies | head`): nobody to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # as a shell reports a process ended by SIGPIPE
    if argv is None:
        _exit(code)
    return code


def _exit(code: int) -> NoReturn:
    """End the process with ``code``, skipping the interpreter's teardown.

    By now every client, cluster, storage and file a command opened is closed (each in a
    ``with`` block); what remains is freeing a thousand modules one object at a time, a
    sixth of a second of a command's run that nobody needs."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`dasktune studies | head`)
            pass
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
