"""Fixed cost of a heavy node's process: a new interpreter against a fork of the server.

    python -m bench.node_startup [--repeats 5]

Each sample starts a process that imports what a heavy node's executor needs (TFX's
Transform executor: TensorFlow, TF Transform, Beam, TFX) and exits: the start-up a node pays
before its work, measured as wall seconds from the request to the exit code, with
``FER_FORK_SERVER=0`` (a new ``python -m``) and through pipeline/fork_server.py (the
server's own start is paid once per run and printed apart).
"""

import argparse
import os
import statistics
import time
from typing import List

from bench import common
from pipeline import fork_server

PROBE = "tfx.components.transform.executor"  # TensorFlow, TFT, Beam, TFX: a heavy node


def _samples(run, repeats: int) -> List[float]:
    seconds = []
    for _ in range(repeats):
        started = time.monotonic()
        with open(os.devnull, "w") as quiet:
            code = run(quiet.fileno())
        if code != 0:
            raise RuntimeError(f"the probe failed with exit code {code}")
        seconds.append(time.monotonic() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", default=common.DEFAULT_RESULTS)
    args = parser.parse_args()
    os.environ[fork_server.ENV_SWITCH] = "0"
    fresh = _samples(lambda fd: fork_server.run(PROBE, [], stdout=fd, stderr=fd), args.repeats)
    os.environ[fork_server.ENV_SWITCH] = "1"
    started = time.monotonic()
    server = fork_server.ForkServer()
    first = _samples(lambda fd: server.run(PROBE, [], stdout=fd, stderr=fd), 1)[0]
    server_start = time.monotonic() - started
    forked = _samples(lambda fd: server.run(PROBE, [], stdout=fd, stderr=fd), args.repeats)
    server.close()
    result = {
        "new interpreter, median s": round(statistics.median(fresh), 2),
        "fork of the server, median s": round(statistics.median(forked), 3),
        "server start (once per run) s": round(server_start, 2),
        "first fork (server ready) s": round(first, 3),
        "repeats": args.repeats,
    }
    print(common.markdown_table([result], list(result)))
    common.append_results(args.results, "node_startup", [result])


if __name__ == "__main__":
    main()
