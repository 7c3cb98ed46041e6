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
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from optuna.storages import BaseStorage
from optuna.storages import InMemoryStorage
from optuna.storages import JournalStorage
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal import JournalRedisBackend

from dasktune.storage import wire

JOURNAL_SCHEME = "journal://"
_RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
ACCEPTED = (
    "None (in memory), 'sqlite:///path.db', 'postgresql://user@host/db', "
    "'redis://host:port/db' or 'journal:///absolute/path.log'"
)


def open_backend(url: str | None) -> BaseStorage:
    """The Optuna storage named by ``url``; ``ValueError`` naming the URL if it names none."""
    if url is None:
        return InMemoryStorage()
    if not isinstance(url, str):
        raise TypeError(f"A storage URL must be a str or None, not {type(url).__name__}.")
    if url.startswith(JOURNAL_SCHEME):
        path = url[len(JOURNAL_SCHEME) :]
        if not path.startswith("/"):
            raise ValueError(
                f"Journal storage URL {url!r} must name an absolute path, "
                "as in 'journal:///var/lib/dasktune/study.log'."
            )
        return JournalStorage(JournalFileBackend(path))
    if url.startswith(_REDIS_SCHEMES):
        # ``prefix`` is ours, not redis-py's: it keeps several storages apart in one database.
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        prefix = "".join(v for k, v in query if k == "prefix")
        plain = parts._replace(query=urlencode([(k, v) for k, v in query if k != "prefix"]))
        return JournalStorage(JournalRedisBackend(urlunsplit(plain), prefix=prefix))
    if url.split(":", 1)[0].split("+", 1)[0] in _RDB_SCHEMES:
        return RDBStorage(url)
    raise ValueError(f"Unsupported storage URL {url!r}; use {ACCEPTED}.")


def describe(storage: None | str | BaseStorage) -> tuple[str | None, list[dict[str, Any]] | None]:
    """``(url, contents)`` that recreate ``storage`` on the scheduler without pickling it.

    A URL passes as is; a database or journal storage object is named by its URL; an
    in-memory storage travels as a plain-data copy of its studies.
    """
    if storage is None or isinstance(storage, str):
        return storage, None
    if isinstance(storage, _CachedStorage):
        storage = storage._backend
    if isinstance(storage, InMemoryStorage):
        return None, wire.dump_storage(storage)
    if isinstance(storage, RDBStorage):
        return storage.url, None
    if isinstance(storage, JournalStorage):
        backend = storage._backend
        if isinstance(backend, JournalFileBackend):
            return JOURNAL_SCHEME + os.path.abspath(backend._file_path), None
        if isinstance(backend, JournalRedisBackend):
            url = backend._url
            if backend._prefix:
                url += ("&" if "?" in url else "?") + urlencode({"prefix": backend._prefix})
            return url, None
    raise TypeError(
        f"DaskStorage cannot move a {type(storage).__name__} to the scheduler; pass its URL "
        f"instead: {ACCEPTED}."
    )

