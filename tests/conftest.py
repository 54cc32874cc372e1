"""Shared test options: slow and GPU tests are skipped unless asked for."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")

DATA = Path(__file__).parent / "data"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--run-gpu", action="store_true", default=False, help="run tests marked gpu")


def pytest_collection_modifyitems(config, items):
    for marker, option in (("slow", "--run-slow"), ("gpu", "--run-gpu")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"needs {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Test data shipped in tests/data (read-only: never write here)."""
    return DATA
