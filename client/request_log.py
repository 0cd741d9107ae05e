"""Sampled request logs in TF Serving's own format: TFRecord files of ``PredictionLog``.

Open-source TF Serving has no request logger (its ``logging_config`` needs one that only
Google's build registers), so requests are logged where they pass through code of this
project: the client library (``FerClient(..., request_log=RequestLog(DIR, rate))``,
``fer-client --log-requests DIR --log-sample-rate R``) and, later, the development
server (``serving/`` may import this module). ``fer-pipeline skew`` reads the files.

A request never waits for its log and never fails because of it: :meth:`RequestLog.log`
decides by sampling, puts the request and its answer on a bounded queue and returns; one
writer thread serializes and writes. A full queue drops the record and counts it
(:attr:`RequestLog.dropped`); a write error counts it too (:attr:`RequestLog.errors`).

Sampling is systematic with a random start: after n requests exactly ``floor(n*rate + u)``
were sampled (``u`` uniform in [0, 1), drawn once), which is n*rate in expectation and
never more than ``ceil(n*rate)``.

Files: ``<DIR>/prediction_log-<start>-<pid>-<id>-<seq>.tfrecord`` (features.REQUEST_LOG_SUFFIX),
written as ``....tfrecord.part`` and renamed when complete (rotation or close), so a
reader sees whole files only. Each file holds at most :data:`MAX_FILE_BYTES`, and a
logger keeps at most :data:`MAX_FILES` files (the oldest are deleted): a logger never
holds more than MAX_FILE_BYTES * MAX_FILES bytes on disk. A local folder, a mounted
volume or a ``gs://`` path (TensorFlow's file systems) all work.

Retention: many loggers may share a folder (client pods on one volume or bucket path),
and a logger that is gone (a pod replaced, a process killed) prunes nothing any more.
So whenever a logger starts a file it also deletes every log file in the folder, any
logger's, complete or ``.part``, last written more than :data:`RETENTION_SECONDS` ago.
"""

import atexit
import logging
import math
import os
import queue
import random
import threading
import time
import uuid
from collections import deque
from typing import Any, Deque, Optional, Tuple

from fer_data import features

log = logging.getLogger(__name__)

# The bounds of one logger, in one place (docs/SERVING.md "Request logs").
MAX_FILE_BYTES = 16 << 20  # a log file is rotated before it grows beyond this
MAX_FILES = 16  # files a logger keeps: at most 256 MiB on disk
RETENTION_SECONDS = 7 * 24 * 3600  # any logger's files older than this are deleted
QUEUE_RECORDS = 1024  # sampled requests waiting for the writer; more are dropped
CLOSE_SECONDS = 10.0  # what close() waits for the writer to drain the queue

FILE_PREFIX = "prediction_log"
PART_SUFFIX = ".part"  # a file being written
# TFRecord framing per record: length (8 bytes), its CRC (4), the data, its CRC (4).
RECORD_OVERHEAD = 16

# Kinds of request, as PredictionLog's log_type field names them.
PREDICT = "predict_log"
CLASSIFY = "classify_log"

_STOP = object()


class Sampler:
    """Systematic sampling with a random start (thread-safe): take() is True for exactly
    floor(n * rate + u) of the first n calls."""

    def __init__(self, rate: float, seed: Optional[int] = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the sample rate must be in 0..1, got {rate}")
        self.rate = rate
        self._start = random.Random(seed).random()
        self._seen = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            before = math.floor(self._seen * self.rate + self._start)
            self._seen += 1
            return math.floor(self._seen * self.rate + self._start) > before


def _prediction_log(kind: str, request: Any, response: Any) -> bytes:
    """A serialized PredictionLog with ``request`` and ``response`` as ``kind``."""
    from tensorflow_serving.apis import prediction_log_pb2

    record = prediction_log_pb2.PredictionLog()
    entry = getattr(record, kind)
    entry.request.CopyFrom(request)
    entry.response.CopyFrom(response)
    return record.SerializeToString()


class RequestLog:
    """Writes a sample of requests with their answers to rotated TFRecord files in
    ``directory`` (see the module docstring); ``close()`` (or the end of the process)
    completes the current file."""

    def __init__(
        self,
        directory: str,
        sample_rate: float,
        *,
        max_file_bytes: int = MAX_FILE_BYTES,
        max_files: int = MAX_FILES,
        retention_seconds: float = RETENTION_SECONDS,
        queue_records: int = QUEUE_RECORDS,
        seed: Optional[int] = None,
    ) -> None:
        if max_file_bytes <= RECORD_OVERHEAD or max_files < 1 or queue_records < 1:
            raise ValueError("max_file_bytes, max_files and queue_records must be positive")
        import tensorflow as tf  # TFRecord files on any of TensorFlow's file systems

        self._tf = tf
        self.directory = directory
        self.sampler = Sampler(sample_rate, seed)
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.retention_seconds = retention_seconds
        self.sampled = self.written = self.dropped = self.errors = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_records)
        self._stem = "-".join(
            [
                FILE_PREFIX,
                time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                str(os.getpid()),
                uuid.uuid4().hex[:8],
            ]
        )
        self._sequence = 0
        self._writer: Any = None
        self._path = ""
        self._bytes = 0
        self._files: Deque[str] = deque()  # this logger's complete files, oldest first
        self._closed = False
        self._lock = threading.Lock()  # the counters, updated by callers and the writer
        tf.io.gfile.makedirs(directory)
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def log(self, kind: str, request: Any, response: Any) -> bool:
        """Offers one answered request (``kind`` PREDICT or CLASSIFY, the request and
        response protos, not modified afterwards); True when it was queued. Never blocks."""
        if self._closed or not self.sampler.take():
            return False
        try:
            self._queue.put_nowait((kind, request, response))
            queued = True
        except queue.Full:
            queued = False
        with self._lock:
            self.sampled += 1
            self.dropped += not queued
        return queued

    def files(self) -> Tuple[str, ...]:
        """This logger's complete files, oldest first."""
        return tuple(self._files)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            try:
                self._write(_prediction_log(*item))
                if self._writer is not None and self._queue.empty():
                    self._writer.flush()  # idle: what was sampled is on disk
            except Exception as err:  # noqa: BLE001 - a log write never fails a request
                self._failed(err)
        try:
            self._finish_file()
        except Exception as err:  # noqa: BLE001
            self._failed(err)

    def _failed(self, err: Exception) -> None:
        with self._lock:
            self.errors += 1
        if self.errors == 1:
            log.warning("Request log: cannot write to %s: %s", self.directory, err)

    def _write(self, data: bytes) -> None:
        size = len(data) + RECORD_OVERHEAD
        if size > self.max_file_bytes:  # one record larger than a file may be
            with self._lock:
                self.dropped += 1
            return
        if self._writer is not None and self._bytes + size > self.max_file_bytes:
            self._finish_file()
        if self._writer is None:
            self._start_file()
        self._writer.write(data)
        self._bytes += size
        with self._lock:
            self.written += 1

    def _start_file(self) -> None:
        """Deletes the oldest complete files to leave room for this one and the files past
        retention, then opens it."""
        while len(self._files) >= self.max_files:
            self._remove(self._files.popleft())
        self._expire()
        self._sequence += 1
        name = f"{self._stem}-{self._sequence:06d}{features.REQUEST_LOG_SUFFIX}"
        self._path = os.path.join(self.directory, name)
        self._writer = self._tf.io.TFRecordWriter(self._path + PART_SUFFIX)
        self._bytes = 0

    def _remove(self, path: str) -> None:
        try:
            self._tf.io.gfile.remove(path)
        except self._tf.errors.NotFoundError:
            pass  # another logger of the folder removed it

    def _expire(self) -> None:
        """Deletes the folder's log files (any logger's, ``.part`` too) last written more
        than ``retention_seconds`` ago."""
        cutoff = (time.time() - self.retention_seconds) * 1e9
        pattern = os.path.join(self.directory, f"{FILE_PREFIX}-*{features.REQUEST_LOG_SUFFIX}*")
        for path in self._tf.io.gfile.glob(pattern):
            try:
                expired = self._tf.io.gfile.stat(path).mtime_nsec < cutoff
            except self._tf.errors.NotFoundError:
                continue
            if expired:
                self._remove(path)
                if path in self._files:
                    self._files.remove(path)

    def _finish_file(self) -> None:
        """Closes the current file and gives it its final name."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        self._tf.io.gfile.rename(self._path + PART_SUFFIX, self._path, overwrite=True)
        self._files.append(self._path)

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Writes what is queued (waiting at most ``timeout`` seconds) and completes the
        current file; later requests are not logged."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("Request log: the writer did not drain within %g s", timeout)
            return
        self._thread.join(timeout)

    def __enter__(self) -> "RequestLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
