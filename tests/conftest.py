"""Shared test setup: the project's Keras choice and quiet TensorFlow logs."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(session, config, items):
    """End-to-end tests first: their node processes then run beside a pytest process that
    has not yet built the model zoo in-process (tests/test_models.py), which keeps the
    suite's peak memory (process tree) down. Order within each group is unchanged."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)
