"""Shared fixtures: run backend-sensitive tests under every CPU kernel set."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests import gradcheck.py and tolerances.py

import engine  # noqa: E402


@pytest.fixture(params=["numpy", "native"])
def backend(request):
    """Runs the test once with each CPU kernel set, restoring the previous one after."""
    previous = engine.backend.current()
    engine.backend.use(request.param)
    yield request.param
    engine.backend.use(previous)


@pytest.fixture(autouse=True)
def _seed():
    engine.manual_seed(0)
