"""What every benchmark shares: the machine, the results file, tables, timing."""

import datetime
import json
import os
import platform
import shlex
import sys
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Sequence

DEFAULT_RESULTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "bench_results.jsonl"
)


def machine() -> Dict[str, Any]:
    """CPU model, cores, memory, GPUs visible to TensorFlow, Python and TF versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    memory_gib = None
    try:
        with open("/proc/meminfo") as handle:
            kib = int(next(line.split()[1] for line in handle if line.startswith("MemTotal")))
        memory_gib = round(kib / 2**20, 1)
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "host": platform.node(),
    }
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info


def command_line() -> str:
    """How this benchmark was started, as one shell line."""
    return "python -m " + shlex.join(
        [
            sys.modules["__main__"].__spec__.name
            if getattr(sys.modules["__main__"], "__spec__", None)
            else sys.argv[0]
        ]
        + sys.argv[1:]
    )


def append_results(
    path: str, bench: str, rows: Sequence[Mapping[str, Any]], extra: Mapping[str, Any] = ()
) -> Dict[str, Any]:
    """Appends one JSON line {bench, date, command, machine, rows, ...} to ``path``."""
    record = {
        "bench": bench,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "machine": machine(),
        "rows": list(rows),
    }
    clashes = set(record) & set(dict(extra))
    if clashes:
        raise ValueError(f"extra keys {sorted(clashes)} would overwrite the record's own")
    record.update(extra)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    return record


def read_results(path: str) -> List[Dict[str, Any]]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "–" if value is None else str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table of ``columns`` (missing values shown as –)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


@contextmanager
def stopwatch() -> Iterator[Dict[str, float]]:
    """``with stopwatch() as t: ...`` then ``t["seconds"]``."""
    timing = {"seconds": 0.0}
    started = time.perf_counter()
    try:
        yield timing
    finally:
        timing["seconds"] = time.perf_counter() - started
