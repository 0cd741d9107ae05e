"""A bounded load tool for a model server on this machine (loopback addresses only).

``clients`` threads, each with its own channel, send ``requests_per_client`` Predict
calls of ``batch_size`` inputs (1 = single-image mode) and record each call's latency.
Targets other than 127.0.0.0/8, ::1 and localhost are refused; clients, requests, batch
size and duration are capped, and a run stops at ``max_seconds`` whatever is left.
"""

import ipaddress
import socket
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

MAX_CLIENTS = 256
MAX_TOTAL_REQUESTS = 500_000
MAX_BATCH_SIZE = 256
MAX_SECONDS = 600.0


@dataclass
class BenchResult:
    """What a bench run measured; latencies in milliseconds (successful calls)."""

    server: str
    clients: int
    requests_per_client: int
    batch_size: int
    sent: int
    ok: int
    errors: int
    error_codes: Dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    requests_per_s: float = 0.0
    images_per_s: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    stopped_at_time_cap: bool = False

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        codes = ", ".join(f"{c} {n}" for c, n in sorted(self.error_codes.items()))
        return (
            f"{self.clients} clients x {self.requests_per_client} requests, batch "
            f"{self.batch_size}: {self.ok}/{self.sent} ok in {self.seconds:.1f} s; "
            f"{self.requests_per_s:.0f} req/s ({self.images_per_s:.0f} images/s); latency "
            f"p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"max {self.max_ms:.1f} ms; errors {self.errors}"
            + (f" ({codes})" if codes else "")
            + ("; stopped at the time cap" if self.stopped_at_time_cap else "")
        )


def split_host_port(server: str) -> Tuple[str, int]:
    """``host:port`` / ``[::1]:port`` -> (host, port); ValueError when malformed."""
    if server.startswith("["):
        host, sep, port = server[1:].partition("]:")
    else:
        host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"server must be HOST:PORT, got {server!r}")
    return host, int(port)


def check_loopback(server: str) -> None:
    """Raises ValueError unless every address ``server`` names is a loopback address."""
    host, port = split_host_port(server)
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except socket.gaierror as err:
        raise ValueError(f"cannot resolve {host!r}: {err.strerror}") from None
    outside = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if not addresses or outside:
        raise ValueError(
            f"bench only targets loopback addresses (127.0.0.0/8, ::1, localhost); "
            f"{host} is {', '.join(outside or ['unresolvable'])}"
        )


def check_bounds(
    clients: int, requests_per_client: int, batch_size: int, max_seconds: float
) -> None:
    if not 1 <= clients <= MAX_CLIENTS:
        raise ValueError(f"clients must be 1..{MAX_CLIENTS}, got {clients}")
    if requests_per_client < 1 or clients * requests_per_client > MAX_TOTAL_REQUESTS:
        raise ValueError(
            f"clients x requests must be 1..{MAX_TOTAL_REQUESTS}, "
            f"got {clients * requests_per_client}"
        )
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch size must be 1..{MAX_BATCH_SIZE}, got {batch_size}")
    if not 0 < max_seconds <= MAX_SECONDS:
        raise ValueError(f"max seconds must be in (0, {MAX_SECONDS:g}], got {max_seconds}")


def run_bench(
    server: str,
    clients: int,
    requests_per_client: int,
    make_client: Callable[[], Any],
    payloads: Sequence[bytes],
    batch_size: int = 1,
    send: Optional[Callable[[Any, List[bytes]], Any]] = None,
    max_seconds: float = 120.0,
) -> BenchResult:
    """Runs the load; ``make_client()`` builds one client per thread (its retries should be 0).

    ``send(client, batch)`` defaults to ``client.predict_images(batch)``.
    """
    check_loopback(server)
    check_bounds(clients, requests_per_client, batch_size, max_seconds)
    if not payloads:
        raise ValueError("bench needs at least one payload")
    send = send or (lambda client, batch: client.predict_images(batch))
    batches = [
        [payloads[(i * batch_size + j) % len(payloads)] for j in range(batch_size)]
        for i in range(max(1, len(payloads)))
    ]
    latencies: List[List[float]] = [[] for _ in range(clients)]
    codes: List[Counter] = [Counter() for _ in range(clients)]
    sent = [0] * clients
    deadline = [0.0]
    began = [0.0]
    stopped = threading.Event()

    def open_gate() -> None:  # runs once every worker is connected, before any is released
        began[0] = time.perf_counter()
        deadline[0] = time.monotonic() + max_seconds

    start_gate = threading.Barrier(clients + 1, action=open_gate)

    made = [make_client() for _ in range(clients)]

    def worker(index: int) -> None:
        client = made[index]
        try:
            send(client, batches[0])  # connect and warm up outside the measurement
        except Exception:  # noqa: BLE001 - counted below when it keeps failing
            pass
        start_gate.wait()
        mine, errs = latencies[index], codes[index]
        for i in range(requests_per_client):
            if time.monotonic() >= deadline[0]:
                stopped.set()
                break
            batch = batches[(index + i) % len(batches)]
            began = time.perf_counter()
            try:
                send(client, batch)
                mine.append(time.perf_counter() - began)
            except Exception as err:  # noqa: BLE001 - every failure is counted by code
                errs[getattr(err, "code", type(err).__name__)] += 1
            sent[index] += 1
        if hasattr(client, "close"):
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began[0]
    all_latencies = np.array([x for per in latencies for x in per]) * 1000.0
    error_codes: Counter = Counter()
    for per in codes:
        error_codes.update(per)
    ok = int(all_latencies.size)
    total = sum(sent)
    pct = (lambda q: float(np.percentile(all_latencies, q))) if ok else (lambda q: 0.0)
    return BenchResult(
        server=server,
        clients=clients,
        requests_per_client=requests_per_client,
        batch_size=batch_size,
        sent=total,
        ok=ok,
        errors=total - ok,
        error_codes=dict(error_codes),
        seconds=seconds,
        requests_per_s=ok / seconds if seconds else 0.0,
        images_per_s=ok * batch_size / seconds if seconds else 0.0,
        p50_ms=pct(50),
        p95_ms=pct(95),
        p99_ms=pct(99),
        max_ms=float(all_latencies.max()) if ok else 0.0,
        stopped_at_time_cap=stopped.is_set(),
    )
