"""Progress of long steps on the person's console, wherever the step runs.

A runner that keeps the console for itself (pipeline/local/run_log.py sends every other byte
to the run's log file) names the console's file descriptor in ``$FER_CONSOLE_FD``; steps
in child processes inherit it. Without that variable nothing is shown here (the step's
own logging still goes wherever stdout/stderr go).
"""

import os
from typing import Optional, TextIO

CONSOLE_FD_ENV = "FER_CONSOLE_FD"
_WIDTH = 24  # characters of the progress bar


def console_fd() -> Optional[int]:
    """The console's file descriptor a runner named in ``$FER_CONSOLE_FD``, if any."""
    fd = os.environ.get(CONSOLE_FD_ENV, "")
    return int(fd) if fd.isdigit() else None


def console_stream() -> Optional[TextIO]:
    """A line-buffered text stream on the console, or None when no runner offers one."""
    fd = console_fd()
    if fd is None:
        return None
    try:
        return os.fdopen(os.dup(fd), "w", buffering=1)
    except OSError:  # the descriptor was not inherited (e.g. a process started elsewhere)
        return None


def bar(done: int, total: int) -> str:
    """``[#######.................]`` for done/total."""
    filled = _WIDTH * min(max(done, 0), total) // max(total, 1)
    return "[" + "#" * filled + "." * (_WIDTH - filled) + "]"
