"""Which Optuna storage a scheduler-side host keeps, named by a URL.

The URL travels to the scheduler and is turned into a storage there, so no storage object
has to be pickled across. Accepted forms:

=============================  =====================================================
``None``                       in memory (lost when the scheduler stops)
``sqlite:///path.db``          Optuna's ``RDBStorage`` (any SQLAlchemy URL Optuna takes:
``postgresql://...``           ``postgresql+psycopg2://``, ``mysql+pymysql://``, ...)
``redis://host:port/db``       ``JournalStorage`` over ``JournalRedisBackend``; add
                               ``?prefix=name`` to keep several apart in one database
``journal:///abs/path.log``    ``JournalStorage`` over ``JournalFileBackend``
=============================  =====================================================

The form of a URL is checked on the client too (:func:`check_url`), before anything is
sent. On the scheduler, :func:`open_on_scheduler` also applies the operator's allow-list
(:data:`ALLOWED_STORAGE`) and turns a failure to open into a ``ValueError`` that says where
the URL was opened: errors cross the wire only as ``[type, message]``, so the message has
to carry everything the user needs.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import dask.config
from optuna.exceptions import StorageInternalError
from optuna.storages import BaseStorage
from optuna.storages import InMemoryStorage
from optuna.storages import JournalStorage
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal import JournalRedisBackend

from dasktune import compat
from dasktune.storage import wire

JOURNAL_SCHEME = "journal://"
_RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")
#: Database servers whose drivers fall back to defaults (a local socket, a database named
#: after the OS user) for a missing host or database: on the scheduler, never what is meant.
_SERVER_SCHEMES = ("postgresql", "mysql")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
ACCEPTED = (
    "None (in memory), 'sqlite:///path.db', 'postgresql://user@host/db', "
    "'redis://host:port/db' or 'journal:///absolute/path.log'"
)
#: Dask config key of the scheduler's allow-list: URL prefixes clients may open there.
ALLOWED_STORAGE = "distributed.dasktune.allowed-storage"
#: Query parameters through which a database URL connects somewhere its prefix does not say.
_REDIRECTING_PARAMS = frozenset({"host", "hostaddr", "port", "service", "unix_socket", "dbname", "database"})


def check_url(url: str | None) -> None:
    """Refuse a storage URL whose form names no storage, before anything opens it.

    Raises:
        TypeError: ``url`` is neither a str nor ``None``.
        ValueError: The scheme is not a supported one, a journal path is not absolute, or
            a PostgreSQL/MySQL URL lacks its host or database; the message names the URL
            and the form to use.
    """
    if url is None:
        return
    if not isinstance(url, str):
        raise TypeError(f"A storage URL must be a str or None, not {type(url).__name__}.")
    if url.startswith(JOURNAL_SCHEME):
        if not url[len(JOURNAL_SCHEME) :].startswith("/"):
            raise ValueError(
                f"Journal storage URL {_shown(url)!r} must name an absolute path, "
                "as in 'journal:///var/lib/dasktune/study.log'."
            )
        return
    if url.startswith(_REDIS_SCHEMES):
        return
    scheme = _rdb_scheme(url)
    if scheme is None:
        raise ValueError(f"Unsupported storage URL {_shown(url)!r}; use {ACCEPTED}.")
    if scheme in _SERVER_SCHEMES:
        from sqlalchemy.engine import make_url  # Optuna's RDBStorage depends on SQLAlchemy

        parsed = make_url(url)
        given = {"host": parsed.host or parsed.query.get("host"), "database": parsed.database}
        missing = [what for what, value in given.items() if not value]
        if missing:
            raise ValueError(
                f"Storage URL {_shown(url)!r} names no {' and no '.join(missing)}: the scheduler "
                f"would connect to its driver's defaults. Use "
                f"'{scheme}://user:password@host:port/database', with the host as the "
                "scheduler sees it."
            )


def open_backend(url: str | None) -> BaseStorage:
    """The Optuna storage named by ``url``, opened in this process.

    Raises:
        TypeError, ValueError: As :func:`check_url`.
        Exception: Whatever the backend raises when it cannot open; on the scheduler,
            :func:`open_on_scheduler` says it clearly.
    """
    check_url(url)
    return _open(url)


def open_on_scheduler(url: str | None) -> BaseStorage:
    """Open ``url`` for a client, in the scheduler's process.

    Raises:
        TypeError: As :func:`check_url`.
        ValueError: The URL's form is wrong (as :func:`check_url`), the scheduler's
            allow-list does not cover it, or it could not be opened; the message names the
            URL, says that it was opened on the scheduler and what to check. The backend's
            own exception is the ``__cause__`` (in the scheduler's log, not on the wire).
    """
    check_url(url)
    if url is None:
        return InMemoryStorage()  # always allowed: it writes nowhere
    check_allowed(url)
    try:
        return _open(url)
    except Exception as e:
        # Errors cross the wire as [type, message]; a driver's OperationalError would
        # arrive as StorageInternalError without the one fact users miss: where it ran.
        cause = getattr(e, "orig", None) or e  # SQLAlchemy wraps the driver's error
        detail = " ".join(str(cause).split()).rstrip(".") or "no message"
        raise ValueError(
            f"Could not open storage {_shown(url)!r} on the scheduler: "
            f"{type(cause).__name__}: {detail}. {_hint(url, e)}"
        ) from e


def _open(url: str | None) -> BaseStorage:
    if url is None:
        return InMemoryStorage()
    if url.startswith(JOURNAL_SCHEME):
        return JournalStorage(JournalFileBackend(url[len(JOURNAL_SCHEME) :]))
    if url.startswith(_REDIS_SCHEMES):
        # ``prefix`` is ours, not redis-py's: it keeps several storages apart in one database.
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        prefix = "".join(v for k, v in query if k == "prefix")
        plain = parts._replace(query=urlencode([(k, v) for k, v in query if k != "prefix"]))
        return JournalStorage(JournalRedisBackend(urlunsplit(plain), prefix=prefix))
    # A pooled connection the database dropped while idle (a restart, a failover, an
    # administrator's pg_terminate_backend) is replaced before use instead of failing the
    # next operation; Optuna sets this for MySQL only.
    return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def lost_connection(error: BaseException) -> BaseException | None:
    """The database driver's error behind ``error`` if it says the connection was lost
    (SQLAlchemy flags such errors ``connection_invalidated`` and refills its pool; redis-py
    raises its ``ConnectionError`` and reconnects on the next command), else ``None``."""
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, "connection_invalidated", False):
            return getattr(seen, "orig", None) or seen
        if type(seen).__name__ == "ConnectionError" and type(seen).__module__.startswith("redis"):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def transactional(backend: BaseStorage) -> bool:
    """Whether a call of ``backend`` that fails on a lost connection left nothing applied
    (one database transaction, rolled back), so that it may be asked again."""
    return isinstance(backend, RDBStorage)


def unreachable(url: str | None, cause: BaseException) -> StorageInternalError:
    """The error for a database that dropped its connection under a call that could not
    be asked again, or again when asked once more."""
    detail = " ".join(str(cause).split()).rstrip(".") or "no message"
    return StorageInternalError(
        f"The database of storage {_shown(url or '')!r} dropped its connection "
        f"({type(cause).__name__}: {detail}). Is it up? The scheduler reconnects by itself "
        "when it is: retry then."
    )


def close(backend: BaseStorage) -> None:
    """Release what an open backend holds: a database's connections, Redis' (on its own
    thread, for a backend that does I/O)."""
    if isinstance(backend, RDBStorage):
        backend.remove_session()
        backend.engine.dispose()
    elif isinstance(backend, JournalStorage):
        compat.close_journal_backend(backend)


def check_allowed(url: str) -> None:
    """Refuse ``url`` unless it starts with a prefix of the :data:`ALLOWED_STORAGE` config.

    Unset, every URL is allowed (memory, ``None``, is never checked). File paths are compared
    normalized (``..`` resolved, relative SQLite paths made absolute against the working
    directory), so a URL cannot climb out of an allowed directory.

    Raises:
        ValueError: The URL is not allowed; the message names it, the config key and the
            allowed prefixes.
    """
    allowed = dask.config.get(ALLOWED_STORAGE, default=None)
    if allowed is None:
        return
    if isinstance(allowed, str):  # one prefix, e.g. from an environment variable
        allowed = [allowed]
    normal = _normalized(url)
    if normal is not None and any(normal.startswith(prefix) for prefix in allowed):
        return
    if normal is None:
        said = " (it sets its own host, port or database in the query string, or is an SQLite URI)"
    else:
        said = "" if normal == url else f" (normalized: {_shown(normal)!r})"
    raise ValueError(
        f"Storage URL {_shown(url)!r}{said} is not allowed on this scheduler: its "
        f"{ALLOWED_STORAGE!r} config allows only URLs starting with {list(allowed)!r}. Use "
        "a URL under one of them, or storage=None (the scheduler's memory); the cluster's "
        "operator sets the list."
    )


def _normalized(url: str) -> str | None:
    """``url`` as the allow-list compares it; ``None`` when its form could escape it."""
    if url.startswith(JOURNAL_SCHEME):
        return JOURNAL_SCHEME + os.path.normpath(url[len(JOURNAL_SCHEME) :])
    scheme = _rdb_scheme(url)
    if scheme == "sqlite" and ":///" in url:
        head, rest = url.split(":///", 1)
        path, sep, query = rest.partition("?")
        if "uri" in dict(parse_qsl(query)):  # SQLite's URI mode: "file:..." is a path of its own
            return None
        return f"{head}:///{os.path.abspath(path)}{sep}{query}"
    if scheme in _SERVER_SCHEMES and _REDIRECTING_PARAMS & {k for k, _ in parse_qsl(urlsplit(url).query)}:
        return None
    return url


def _rdb_scheme(url: str) -> str | None:
    """The database of an SQLAlchemy URL (``postgresql`` for ``postgresql+psycopg://``)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    return scheme if ":" in url and scheme in _RDB_SCHEMES else None


def _hint(url: str, error: Exception) -> str:
    """What to check when ``url`` failed to open on the scheduler with ``error``."""
    where = (
        "Storage URLs are opened by the scheduler's process (not this one): paths and host "
        "names are as the scheduler sees them."
    )
    if isinstance(error, ImportError):
        fix = "Install the database's driver where the scheduler runs (dasktune[postgresql] for PostgreSQL)."
    elif url.startswith(JOURNAL_SCHEME) or _rdb_scheme(url) == "sqlite":
        fix = (
            "The file's directory must exist on the scheduler's machine (or a file system it "
            "shares) and be writable by the scheduler's user."
        )
    else:
        fix = "The server must be reachable from the scheduler's machine, and the database and user must exist."
    return f"{where} {fix}"


def _shown(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def describe(storage: None | str | BaseStorage) -> tuple[str | None, list[dict[str, Any]] | None]:
    """``(url, contents)`` that recreate ``storage`` on the scheduler without pickling it.

    A URL passes as is; an ``RDBStorage`` is named by its (public) URL; an
    ``InMemoryStorage`` travels as a plain-data copy of its studies. Any other storage
    object would have to be taken apart through Optuna's private fields: its URL is asked
    for instead.
    """
    if storage is None or isinstance(storage, str):
        check_url(storage)  # here, before anything is sent to the scheduler
        return storage, None
    if isinstance(storage, InMemoryStorage):
        return None, wire.dump_storage(storage)
    if isinstance(storage, RDBStorage):
        return storage.url, None
    raise TypeError(
        f"DaskStorage cannot move a {type(storage).__name__} to the scheduler; pass its URL "
        f"instead: {ACCEPTED}."
    )

