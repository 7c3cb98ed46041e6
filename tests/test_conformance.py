"""Optuna's own conformance suite for third-party storages, run on DaskStorage over every
backend the scheduler can hold."""

from __future__ import annotations


from distributed import Client
from optuna.storages import BaseStorage
import pytest

from dasktune import DaskStorage

# Optuna ships this suite for third-party storages since 5.0; on older releases their own
# storage tests run against DaskStorage instead (tests/test_upstream.py).
StorageTestCase = pytest.importorskip(
    "optuna.testing.pytest_storages", reason="Optuna < 5 has no StorageTestCase"
).StorageTestCase


class TestDaskStorageConformance(StorageTestCase):
    @pytest.fixture
    def storage(self, client: Client, backend_url: str | None) -> BaseStorage:
        return DaskStorage(backend_url, client=client)
