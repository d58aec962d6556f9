"""Shared test fixtures (for tests/ and plugins/*/tests). The embedded synthetic benchmark is
generated once per test session (at scale 1, seed 0) into a session cache folder, through the
same code path users take."""

from __future__ import annotations

from pathlib import Path

import pytest

from avbench.registry import DatasetInfo

SYNTHETIC = DatasetInfo("synthetic", generator="avbench.datasets.synthetic:generate_fakeavceleb",
                        reads_as="fakeavceleb")
SYNTHETIC_KODF = DatasetInfo("synthetic-kodf",
                             generator="avbench.datasets.synthetic:generate_kodf",
                             reads_as="kodf")


@pytest.fixture(scope="session")
def avbench_cache(tmp_path_factory) -> Path:
    """A cache folder for the session (never the user's own cache)."""
    return tmp_path_factory.mktemp("avbench-cache")


@pytest.fixture(scope="session")
def synthetic_root(avbench_cache) -> Path:
    """Root of the FakeAVCeleb-shaped synthetic set (scale 1, seed 0)."""
    from avbench.datasets.resolve import ensure_generated

    return ensure_generated(SYNTHETIC, scale=1, seed=0, cache=avbench_cache)


@pytest.fixture(scope="session")
def synthetic_kodf_root(avbench_cache) -> Path:
    """Root of the KoDF-shaped synthetic set (scale 1, seed 0)."""
    from avbench.datasets.resolve import ensure_generated

    return ensure_generated(SYNTHETIC_KODF, scale=1, seed=0, cache=avbench_cache)


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(avbench_cache):
    """Tests never touch the user's cache or reach a model hub."""
    import os

    old = {k: os.environ.get(k) for k in ("AVBENCH_CACHE", "HF_HUB_OFFLINE")}
    os.environ["AVBENCH_CACHE"] = str(avbench_cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


#: fixtures whose first use generates a synthetic set (half a minute): the tests that take
#: them belong to the full suite, not to the quick one (``pytest -m "not slow"``)
GENERATING = {"synthetic_root", "synthetic_kodf_root", "synthetic_benchmark"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if GENERATING & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
