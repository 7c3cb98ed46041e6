"""Optuna's own conformance suite for third-party storages, run on DaskStorage over every
backend the scheduler can hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from distributed import Client
from optuna.storages import BaseStorage
import pytest

from dasktune import DaskStorage

# Optuna ships this suite for third-party storages since 5.0; on older releases their own
# storage tests run against DaskStorage instead (tests/test_upstream.py).
StorageTestCase = pytest.importorskip(
    "optuna.testing.pytest_storages", reason="Optuna < 5 has no StorageTestCase"
).StorageTestCase


@pytest.fixture(params=["memory", "sqlite", "journal", "postgres", "redis"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    kind = request.param
    if kind == "memory":
        yield None
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'optuna.db'}"
    elif kind == "journal":
        yield f"journal://{tmp_path / 'optuna.log'}"
    else:
        yield request.getfixturevalue(f"{kind}_url")


class TestDaskStorageConformance(StorageTestCase):
    @pytest.fixture
    def storage(self, client: Client, backend_url: str | None) -> BaseStorage:
        return DaskStorage(backend_url, client=client)
