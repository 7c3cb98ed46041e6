"""Reaching a scheduler and its studies from the command line, with errors a person can act on."""

from __future__ import annotations

import argparse
import hashlib

from distributed import Client
from distributed import LocalCluster
from distributed.security import Security
import optuna

from dasktune.storage import DaskStorage
from dasktune.storage.plugin import METADATA_KEY


class CommandError(Exception):
    """A failure the command reports in one line (no traceback) before exiting non-zero."""


def add_scheduler_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--scheduler`` and the TLS options every cluster command takes."""
    parser.add_argument(
        "--scheduler",
        required=required,
        metavar="ADDRESS",
        help="the Dask scheduler, e.g. tcp://10.0.0.5:8786 or tls://host:8786",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds to wait for the scheduler before giving up (5)",
    )
    tls = parser.add_argument_group(
        "TLS", "for a tls:// scheduler (or set them in Dask's distributed.comm.tls config)"
    )
    tls.add_argument("--tls-ca-file", metavar="PATH", help="CA certificate to trust")
    tls.add_argument("--tls-cert", metavar="PATH", help="this client's certificate")
    tls.add_argument("--tls-key", metavar="PATH", help="this client's private key")


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    """``--storage`` / ``--storage-name``: which DaskStorage of the scheduler to use."""
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="where the scheduler keeps the studies: sqlite:///path.db, postgresql://..., "
        "redis://host:port/db or journal:///path.log, as the scheduler sees them "
        "(default: the scheduler's memory)",
    )
    parser.add_argument(
        "--storage-name",
        metavar="NAME",
        help="the DaskStorage name on the scheduler (default: derived from --storage, so "
        "the same URL always means the same storage)",
    )


def connect(args: argparse.Namespace) -> Client:
    """A client of ``args.scheduler``; :class:`CommandError` naming it if it cannot be
    reached within ``args.connect_timeout`` seconds."""
    security = None
    if args.tls_ca_file or args.tls_cert or args.tls_key:
        security = Security(
            tls_ca_file=args.tls_ca_file,
            tls_client_cert=args.tls_cert,
            tls_client_key=args.tls_key,
            require_encryption=True,
        )
    try:
        return Client(args.scheduler, timeout=args.connect_timeout, security=security)
    except (OSError, TimeoutError, TypeError, ValueError) as e:  # TypeError: TLS without certificates
        raise CommandError(
            f"cannot reach the Dask scheduler at {args.scheduler} within "
            f"{args.connect_timeout:g} s ({e}). Check the address, that the scheduler "
            "is running, and for tls:// its --tls-* certificates."
        ) from None


def local_cluster(n_workers: int) -> LocalCluster:
    """The embedded cluster of commands run without ``--scheduler``."""
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True)


def require_plugin(client: Client) -> None:
    """:class:`CommandError` unless the scheduler hosts dasktune's storage plugin."""
    if not client.get_metadata(METADATA_KEY, default=False):
        raise CommandError(
            f"the scheduler at {client.scheduler.address} has no dasktune plugin, so it holds "
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


def open_storage(client: Client, args: argparse.Namespace) -> DaskStorage:
    """The storage ``--storage`` / ``--storage-name`` name, created on the scheduler if need be."""
    return DaskStorage(args.storage, name=storage_name(args.storage, args.storage_name), client=client)


def storages(client: Client, args: argparse.Namespace) -> list[DaskStorage]:
    """The storages a read command looks in: the one named by ``--storage`` /
    ``--storage-name`` if given (opened from its URL, e.g. after a scheduler restart),
    otherwise every storage on the scheduler."""
    if args.storage is not None:
        return [open_storage(client, args)]
    require_plugin(client)
    names = client.sync(client.scheduler.dasktune_storage_names)
    if args.storage_name is not None:
        if args.storage_name not in names:
            raise CommandError(
                f"no storage named {args.storage_name!r} on the scheduler at "
                f"{client.scheduler.address}; it has {names or 'none'}."
            )
        names = [args.storage_name]
    return [DaskStorage(name=name, client=client, register=False) for name in names]


def find_study(client: Client, args: argparse.Namespace) -> optuna.Study:
    """The study named ``args.study`` in the storages :func:`storages` looks in."""
    found = []
    for storage in storages(client, args):
        try:
            storage.get_study_id_from_name(args.study)
        except KeyError:
            continue
        found.append(storage)
    if not found:
        raise CommandError(
            f"no study named {args.study!r} on the scheduler at {client.scheduler.address}. "
            "`dasktune studies` lists the studies it holds (pass --storage URL for a study "
            "kept in a database the scheduler has not opened yet)."
        )
    if len(found) > 1:
        raise CommandError(
            f"study {args.study!r} exists in several storages: "
            f"{', '.join(s.name for s in found)}; choose one with --storage-name."
        )
    return optuna.load_study(study_name=args.study, storage=found[0])
