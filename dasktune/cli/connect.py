"""Reaching a scheduler and its studies from the command line, with errors a person can act on."""

from __future__ import annotations

import argparse
import hashlib
import time
from urllib.parse import quote

from distributed import Client
from distributed import LocalCluster
from distributed.security import Security
import optuna

from dasktune.cli import probe
from dasktune.storage import DaskStorage
from dasktune.storage.backends import check_url
from dasktune.storage.protocol import scheduler_rpc
from dasktune.storage.wire import METADATA_KEY


class CommandError(Exception):
    """A failure the command reports in one line (no traceback) before exiting non-zero."""


def connect(args: argparse.Namespace) -> Client:
    """A client of ``args.scheduler``, within ``args.connect_timeout`` seconds.

    What answers at the address is looked at first (:mod:`dasktune.cli.probe`): distributed
    itself would wait without end at a web server, or fail with a traceback at some other
    service, so only an address where a Dask scheduler greeted is handed to it.

    Raises:
        CommandError: One line naming what answers at the address, if not a scheduler this
            client can use, and what to pass instead; or why connecting failed.
    """
    deadline = time.monotonic() + args.connect_timeout
    tls_options = bool(args.tls_ca_file or args.tls_cert or args.tls_key)
    try:
        security = Security(
            tls_ca_file=args.tls_ca_file,
            tls_client_cert=args.tls_cert,
            tls_client_key=args.tls_key,
            require_encryption=True,
        ) if tls_options else Security()
        context = security.get_connection_args("client")["ssl_context"]
    except (OSError, ValueError) as e:  # a missing or unreadable certificate file (ssl.SSLError is an OSError)
        raise CommandError(f"cannot use the TLS options --tls-ca-file/--tls-cert/--tls-key: {e}") from None
    try:
        address = probe.reach(args.scheduler, deadline, context, tls_options)
    except probe.AddressError as e:
        raise CommandError(str(e)) from None
    try:
        return Client(address, timeout=max(deadline - time.monotonic(), 0.1), security=security)
    except (OSError, TimeoutError) as e:
        raise CommandError(
            f"the Dask scheduler at {address} answered, but connecting to it did not finish "
            f"within --connect-timeout {args.connect_timeout:g} s ({e})."
        ) from None
    except (ImportError, RuntimeError, TypeError, ValueError) as e:  # versions, TLS settings
        raise CommandError(f"cannot connect to the Dask scheduler at {address}: {e}") from None


def local_cluster(n_workers: int) -> LocalCluster:
    """The embedded cluster of commands run without ``--scheduler``."""
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True)


def tuning_url(client: Client) -> str | None:
    """The URL of the Tuning page on the scheduler's dashboard (``.../tuning``), as this
    client reaches it; ``None`` when the scheduler serves no dashboard."""
    try:
        link = client.dashboard_link
    except KeyError:  # the scheduler reports no dashboard service
        return None
    if not link:
        return None
    # Dask's link template ends in /status; a proxied one (JupyterHub) keeps its prefix.
    base = link[: -len("/status")] if link.endswith("/status") else link.rstrip("/")
    return f"{base}/tuning"


def study_url(client: Client, storage: str, study: str) -> str | None:
    """The stable URL of one study's page: ``/tuning/study/<storage>/<study>``, both names
    percent-encoded (a study name may hold ``/``, spaces, anything)."""
    tuning = tuning_url(client)
    if tuning is None:
        return None
    return f"{tuning}/study/{quote(storage, safe='')}/{quote(study, safe='')}"


def require_plugin(client: Client) -> None:
    """:class:`CommandError` unless the scheduler hosts dasktune's storage plugin."""
    if not client.get_metadata(METADATA_KEY, default=False):
        raise CommandError(
            f"the scheduler at {scheduler_rpc(client).address} has no dasktune plugin, so it holds "
            "no studies. Start it with `dask scheduler --preload dasktune`, or let a client "
            "install the plugin (`dasktune run ...` or dasktune.DaskStorage() do)."
        )


def storage_name(url: str | None, name: str | None) -> str:
    """The DaskStorage name the CLI uses for ``url``: stable, so commands agree on it."""
    if name is not None:
        return name
    if url is None:
        return "dasktune"
    return "dasktune-" + hashlib.sha1(url.encode()).hexdigest()[:10]


def check_storage_url(args: argparse.Namespace) -> None:
    """:class:`CommandError` if ``--storage`` names no storage: checked before connecting,
    so a bad URL creates nothing."""
    try:
        check_url(args.storage)
    except (TypeError, ValueError) as e:
        raise CommandError(f"cannot use --storage {args.storage!r}: {e}") from None


def open_storage(client: Client, args: argparse.Namespace) -> DaskStorage:
    """The storage ``--storage`` / ``--storage-name`` name, created on the scheduler if need be.

    Raises:
        CommandError: The scheduler cannot open it (the message says why, and where).
    """
    try:
        return DaskStorage(args.storage, name=storage_name(args.storage, args.storage_name), client=client)
    except (TypeError, ValueError) as e:  # what the scheduler said, as one line
        raise CommandError(str(e)) from None


def storages(client: Client, args: argparse.Namespace) -> list[DaskStorage]:
    """The storages a read command looks in: the one named by ``--storage`` /
    ``--storage-name`` if given (opened from its URL, e.g. after a scheduler restart),
    otherwise every storage on the scheduler."""
    if args.storage is not None:
        return [open_storage(client, args)]
    require_plugin(client)
    names = client.sync(scheduler_rpc(client).dasktune_storage_names)
    if args.storage_name is not None:
        if args.storage_name not in names:
            raise CommandError(
                f"no storage named {args.storage_name!r} on the scheduler at "
                f"{scheduler_rpc(client).address}; it has {names or 'none'}."
            )
        names = [args.storage_name]
    return [DaskStorage(name=name, client=client, register=False) for name in names]


def load_for_reading(study_name: str, storage: DaskStorage) -> optuna.Study:
    """The study ``study_name`` of ``storage``, to read: its sampler is Optuna's cheapest to
    make (the default, TPE, inspects its own signature each time: a tenth of a millisecond a
    study, ten when ``studies`` lists a hundred), since nothing samples from it."""
    return optuna.load_study(study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler())


def find_study(client: Client, args: argparse.Namespace) -> tuple[optuna.Study, DaskStorage]:
    """The study named ``args.study`` in the storages :func:`storages` looks in, to read
    (:func:`load_for_reading`), and the storage that holds it."""
    found = []
    for storage in storages(client, args):
        try:  # loading it is what asks the storage whether it holds the study
            found.append((load_for_reading(args.study, storage), storage))
        except KeyError:
            continue
    if not found:
        raise CommandError(
            f"no study named {args.study!r} on the scheduler at {scheduler_rpc(client).address}. "
            "`dasktune studies` lists the studies it holds (pass --storage URL for a study "
            "kept in a database the scheduler has not opened yet)."
        )
    if len(found) > 1:
        raise CommandError(
            f"study {args.study!r} exists in several storages: "
            f"{', '.join(storage.name for _, storage in found)}; choose one with --storage-name."
        )
    return found[0]
