from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import Stack, kafka_bootstrap  # noqa: E402

# Quix Streams and confluent-kafka are imported through tidegate, which keeps their import-time
# deprecation noise out of the test output.
import tidegate.pipeline  # noqa: E402,F401


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kafka() -> str:
    return kafka_bootstrap()


@pytest.fixture
def stack(tmp_path: Path, kafka: str) -> Iterator[Stack]:
    s = Stack(tmp_path, kafka)
    try:
        yield s
    finally:
        s.stop()
