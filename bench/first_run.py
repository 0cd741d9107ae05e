"""The first run a newcomer makes: ``fer-pipeline run`` on a fresh run root, then again.

Prints the wall time and the peak memory of the whole process tree (the runner and its
node processes; RSS summed over the tree, sampled from /proc every 0.2 s) for both runs,
and the per-node seconds and peaks of the first run from its summary, then whether the
targets of a newcomer's `make run` are met (wall, peak memory, every candidate blessed).
Appends the result to docs/bench_results.jsonl.

    python -m bench.first_run                      # the embedded default, like `make run`
    python -m bench.first_run --data ../shared/data/fer2013.csv.gz
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

from bench import common
from pipeline import cli

_PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_SECONDS = 0.2
# Issue targets for `make run` on the embedded default, warm venv, fresh run folder.
TARGET_WALL_S = 300
TARGET_PEAK_GB = 4.0


def _children() -> Dict[int, List[int]]:
    """pid -> child pids, for every process /proc shows."""
    tree: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        tree.setdefault(int(fields[1]), []).append(int(name))
    return tree


def tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and all its descendants."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * _PAGE
        except OSError:
            pass
    return total


def run_and_measure(command: List[str], expected: int) -> Dict[str, float]:
    """Runs ``command`` (its output goes to this console); wall seconds and peak tree RSS.
    Stops unless it ends with the ``expected`` exit code (pipeline/cli.py)."""
    started = time.perf_counter()
    process = subprocess.Popen(command)  # pylint: disable=consider-using-with
    peak = {"bytes": 0}
    done = threading.Event()

    def sample():
        while not done.wait(SAMPLE_SECONDS):
            peak["bytes"] = max(peak["bytes"], tree_rss_bytes(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    done.set()
    sampler.join()
    if code != expected:
        raise SystemExit(f"{' '.join(command)} ended with exit code {code}, not {expected}")
    return {"wall_s": time.perf_counter() - started, "peak_tree_rss_gb": peak["bytes"] / 2**30}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="fer2013 CSV; default: the embedded synthetic faces")
    parser.add_argument("--run-root", help="default: a new temporary folder")
    parser.add_argument("--results", default=common.DEFAULT_RESULTS)
    args, passthrough = parser.parse_known_args(argv)
    run_root = args.run_root or tempfile.mkdtemp(prefix="fer-first-run-")
    if os.path.exists(os.path.join(run_root, "metadata.sqlite")):
        raise SystemExit(f"{run_root} holds a previous run; the benchmark needs a fresh one")
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "run",
        "--run-root",
        run_root,
        *(["--data", args.data] if args.data else []),
        *passthrough,
    ]
    print(f"== first run: {' '.join(command)}", flush=True)
    first = {"run": "first run", **run_and_measure(command, cli.PUSHED)}
    with open(os.path.join(run_root, "summary.json")) as handle:  # before the second run
        summary = json.load(handle)  # rewrites it
    peaks = summary.get("node_peak_rss_mib", {})
    nodes = [
        {
            "node": node,
            "seconds": seconds,
            "peak_rss_gb": peaks[node] / 1024 if node in peaks else None,
        }
        for node, seconds in summary["node_seconds"].items()
    ]
    first.update(
        largest_node_gb=max(peaks.values(), default=0) / 1024,
        runner_gb=summary.get("runner_peak_rss_mib", 0) / 1024,
    )
    print(f"== second run (nothing new): {' '.join(command)}", flush=True)
    second = run_and_measure(command, cli.NOTHING_NEW)
    rows = [first, {"run": "second run (nothing new)", **second}]
    print(
        common.markdown_table(
            sorted(nodes, key=lambda n: -n["seconds"]), ["node", "seconds", "peak_rss_gb"]
        )
    )
    print(
        common.markdown_table(
            rows, ["run", "wall_s", "peak_tree_rss_gb", "largest_node_gb", "runner_gb"]
        )
    )
    blessed = {a: row["blessed"] for a, row in summary["architectures"].items()}
    for target, met in (
        (f"first run <= {TARGET_WALL_S} s wall", first["wall_s"] <= TARGET_WALL_S),
        (f"peak tree RSS <= {TARGET_PEAK_GB} GB", first["peak_tree_rss_gb"] <= TARGET_PEAK_GB),
        (f"every candidate blessed {blessed}", all(blessed.values())),
    ):
        print(f"target: {target}: {'met' if met else 'NOT met'}")
    common.append_results(
        args.results,
        "first_run",
        rows,
        {"data": args.data or "embedded synthetic faces", "run_root": run_root, "nodes": nodes},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
