"""Shared fixtures: run backend-sensitive tests under every CPU kernel set."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests import gradcheck.py and tolerances.py

import engine  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """The full differential run (hundreds of cases) runs only when asked for by a -m expression
    that names it; the default run keeps its fixed sample (tests/test_differential.py)."""
    if "differential" in (config.option.markexpr or ""):
        return
    kept = [i for i in items if i.get_closest_marker("differential") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.fixture(params=["numpy", "native"])
def backend(request):
    """Runs the test once with each CPU kernel set, restoring the previous one after."""
    previous = engine.backend.current()
    engine.backend.use(request.param)
    yield request.param
    engine.backend.use(previous)


@pytest.fixture
def threads():
    """engine.set_num_threads for the test to call; the thread count is restored after."""
    before = engine.get_num_threads()
    yield engine.set_num_threads
    engine.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    engine.manual_seed(0)
