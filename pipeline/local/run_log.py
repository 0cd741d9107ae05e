"""Where the output of ``fer-pipeline run`` goes.

The console keeps what a person reads: the node lines (pipeline/local/console.py), the
Trainers' epoch progress (model/progress.py) and WARNINGs of this project's own
loggers. Everything else -- TF, Beam, TFX, absl, C++ logs, child processes -- goes to the
run's log file, whose path is printed first. This module imports nothing heavy, so the
redirection starts before TensorFlow is imported and says anything.
"""

import contextlib
import datetime
import logging
import os
import sys
from typing import Iterator, TextIO

from model import progress

_OWN_PACKAGES = ("fer_data", "model", "components", "pipeline")


def log_path(run_root: str) -> str:
    """A new log file name under <run_root>/logs/."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(run_root, "logs", f"run-{stamp}.log")


class _OwnWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        package = record.name.split(".", 1)[0]
        return record.levelno >= logging.WARNING and package in _OWN_PACKAGES


def warnings_handler(stream: TextIO) -> logging.Handler:
    """A logging handler that shows this project's WARNINGs and errors on ``stream``."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(_OwnWarnings())
    handler.setFormatter(logging.Formatter("        %(levelname)s %(message)s"))
    return handler


@contextlib.contextmanager
def output_to_log(path: str) -> Iterator[TextIO]:
    """Send stdout and stderr (file descriptors 1 and 2, so also C++ and child processes)
    to ``path``; yields a stream on the original stdout, which children find through
    ``$FER_CONSOLE_FD`` (model/progress.py)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    os.set_inheritable(saved_out, True)
    with open(path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        os.environ[progress.CONSOLE_FD_ENV] = str(saved_out)
        stream = os.fdopen(os.dup(saved_out), "w", buffering=1)
        handler = warnings_handler(stream)
        logging.getLogger().addHandler(handler)
        try:
            yield stream
        finally:
            logging.getLogger().removeHandler(handler)
            sys.stdout.flush()
            sys.stderr.flush()
            os.environ.pop(progress.CONSOLE_FD_ENV, None)
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            for fd in (saved_out, saved_err):
                os.close(fd)
            stream.close()
