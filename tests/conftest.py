"""Shared test setup: the project's Keras choice and quiet TensorFlow logs; under
pytest-xdist (`make test`), the end-to-end files first, longest first."""

import collections
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The end-to-end files, longest first (each several minutes on 2 vCPU: docs/BENCHMARKS.md
# "make test"). Started first, on separate workers, they overlap; the short files fill in.
E2E_FILES = ("tests/test_pipeline_e2e.py", "tests/test_kubeflow_e2e.py", "tests/test_demo.py")


def pytest_collection_modifyitems(session, config, items):
    """End-to-end tests first: their node processes then run beside a pytest process that
    has not yet built the model zoo in-process (tests/test_models.py), which keeps the
    suite's peak memory (process tree) down. Order within each group is unchanged."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


class _EndToEndFirst(collections.OrderedDict):
    """pytest-xdist's work queue (file -> its tests), which xdist fills largest file first
    (by number of tests), kept with the E2E_FILES in front, in their order."""

    def __setitem__(self, scope, tests):
        super().__setitem__(scope, tests)
        for name in reversed(E2E_FILES):
            if name in self:
                self.move_to_end(name, last=False)


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` with the end-to-end files handed out first (else xdist's own)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    scheduler = LoadFileScheduling(config, log)
    scheduler.workqueue = _EndToEndFirst()
    return scheduler
