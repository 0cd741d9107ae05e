"""Optional server-side batching: concurrent requests to one signature run as one call.

Like TF Serving's ``--enable_batching``: a request waits at most ``batch_timeout_s`` for
others to the same version and signature, up to ``max_batch_size`` rows in all. If a
merged batch fails, its requests are rerun one by one, so a bad request only fails itself.
"""
import logging
import queue
import threading
import time
from typing import Dict, List, Optional

import numpy as np

from serving import errors
from serving.servable import Signature

log = logging.getLogger(__name__)

_STOP = object()


class _Item:
    __slots__ = ("signature", "inputs", "rows", "done", "outputs", "error")

    def __init__(self, signature: Signature, inputs: Dict[str, np.ndarray], rows: int) -> None:
        self.signature = signature
        self.inputs = inputs
        self.rows = rows
        self.done = threading.Event()
        self.outputs: Optional[Dict[str, np.ndarray]] = None
        self.error: Optional[BaseException] = None


def _rows(inputs: Dict[str, np.ndarray]) -> Optional[int]:
    """The common batch size, or None when the inputs cannot be concatenated."""
    sizes = {a.shape[0] if a.ndim else None for a in inputs.values()}
    return sizes.pop() if len(sizes) == 1 and None not in sizes else None


class Batcher:
    """Merges concurrent requests; ``run`` blocks until the request's own outputs are ready."""

    def __init__(self, max_batch_size: int = 64, batch_timeout_s: float = 0.002,
                 num_threads: int = 2) -> None:
        if max_batch_size < 1 or batch_timeout_s < 0 or num_threads < 1:
            raise ValueError("batching needs max_batch_size >= 1, batch_timeout_s >= 0 and "
                             "num_threads >= 1")
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_s
        self._queue: "queue.Queue" = queue.Queue()
        self._stopped = False
        self.batches = 0
        self.merged_requests = 0
        self._threads = [threading.Thread(target=self._work, name=f"batcher-{i}", daemon=True)
                         for i in range(num_threads)]
        for thread in self._threads:
            thread.start()

    def run(self, signature: Signature, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        from serving.inference import PredictionCore
        rows = _rows(inputs)
        if self._stopped or rows is None or rows >= self.max_batch_size:
            return PredictionCore.run(signature, inputs)
        item = _Item(signature, inputs, rows)
        self._queue.put(item)
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.outputs

    def stop(self) -> None:
        self._stopped = True
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=10)

    def _work(self) -> None:
        carry = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is _STOP:
                return
            batch: List[_Item] = [first]
            rows = first.rows
            deadline = time.monotonic() + self.batch_timeout_s
            while rows < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    nxt = (self._queue.get(timeout=remaining) if remaining > 0
                           else self._queue.get_nowait())
                except queue.Empty:
                    break
                if (nxt is not _STOP and nxt.signature is first.signature
                        and rows + nxt.rows <= self.max_batch_size):
                    batch.append(nxt)
                    rows += nxt.rows
                else:
                    carry = nxt
                    break
            self._execute(batch)

    def _execute(self, batch: List[_Item]) -> None:
        try:
            if len(batch) > 1:
                if self._run_merged(batch):
                    return
            for item in batch:
                self._run_one(item)
        except BaseException as err:  # noqa: BLE001 - never leave a caller waiting
            for item in batch:
                if not item.done.is_set():
                    item.error = err
                    item.done.set()

    @staticmethod
    def _run_one(item: _Item) -> None:
        from serving.inference import PredictionCore
        try:
            item.outputs = PredictionCore.run(item.signature, item.inputs)
        except Exception as err:  # noqa: BLE001 - handed to the caller
            item.error = err
        item.done.set()

    def _run_merged(self, batch: List[_Item]) -> bool:
        """Runs the batch as one call and splits the outputs; False to fall back to singles."""
        from serving.inference import PredictionCore
        names = batch[0].inputs.keys()
        if any(item.inputs.keys() != names for item in batch):
            return False
        merged = {n: np.concatenate([item.inputs[n] for item in batch]) for n in names}
        try:
            outputs = PredictionCore.run(batch[0].signature, merged)
        except errors.ServingError:
            return False  # find out which request is bad by running them one by one
        total = sum(item.rows for item in batch)
        if any(not o.ndim or o.shape[0] != total for o in outputs.values()):
            return False
        start = 0
        for item in batch:
            item.outputs = {n: o[start:start + item.rows] for n, o in outputs.items()}
            start += item.rows
            item.done.set()
        self.batches += 1
        self.merged_requests += len(batch)
        return True
