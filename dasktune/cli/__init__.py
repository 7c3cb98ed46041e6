"""The ``dasktune`` command line: a demo, running objectives on a cluster, and managing its
studies (``studies``, ``show``, ``best``, ``export``, ``cancel``, ``delete``).

``parser`` holds the arguments and every check that needs no cluster (it imports only the
standard library, so ``--help`` and usage errors are instant); ``commands`` does the work,
importing Optuna and distributed, and is imported only once the arguments are good.

Every command exits 0 on success, 1 when the objective failed, 2 with a one-line
``error:`` that says what to do about it, 130 after Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Sequence
import sys

from dasktune.cli.parser import parse


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dasktune`` console script; returns the exit code."""
    args = parse(None if argv is None else list(argv))
    # Imported here, after parsing: Optuna and distributed cost about a second to import.
    from dasktune.cli import commands
    from dasktune.cli.connect import CommandError

    try:
        return commands.execute(args)
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted: the run was stopped and its running trials failed.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
