"""Sampled request logs (client/request_log.py): TF Serving's PredictionLog in rotated,
size-bounded TFRecord files, written off the caller's thread, never more than sampled."""

import glob
import math
import os
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from client import request_log
from client.request_log import PREDICT, RequestLog, Sampler
from fer_data import features


def _call(index: int, payload: int = 16):
    """A real PredictRequest (one tf.Example) and PredictResponse, tagged by ``index``."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = features.MODEL_NAME
    request.model_spec.signature_name = features.SERVING_DEFAULT_SIGNATURE
    example = features.serving_example(np.full(features.NUM_PIXELS, index % 256))
    request.inputs[features.EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto([example]))
    response = predict_pb2.PredictResponse()
    response.model_spec.version.value = index
    response.outputs["padding"].CopyFrom(tf.make_tensor_proto(np.zeros(payload, np.float32)))
    return request, response


def _logs(directory):
    return sorted(glob.glob(os.path.join(directory, "*" + features.REQUEST_LOG_SUFFIX)))


def _records(directory):
    """Every record of the complete files, parsed as PredictionLog (TensorFlow's reader)."""
    files = _logs(directory)
    if not files:
        return []
    return [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(files)
    ]


def test_sampling_takes_the_rate_exactly_in_expectation_and_never_more():
    for rate in (0.0, 0.1, 0.25, 1 / 3, 0.5, 0.97, 1.0):
        for seed in range(20):
            sampler, taken = Sampler(rate, seed), 0
            for n in range(1, 301):
                taken += sampler.take()
                assert math.floor(n * rate + 1e-9) <= taken <= math.ceil(n * rate - 1e-9)
    # 10 requests at 0.25: 2 or 3 are logged, 2.5 on average over random starts.
    samplers = [Sampler(0.25, seed) for seed in range(4000)]
    counts = [sum(sampler.take() for _ in range(10)) for sampler in samplers]
    assert set(counts) == {2, 3} and abs(np.mean(counts) - 2.5) < 0.04
    with pytest.raises(ValueError, match="0..1"):
        Sampler(1.5)


def test_rate_one_logs_every_request_in_tf_serving_s_format_and_tfx_reads_it(tmp_path):
    from tfx_bsl.tfxio import raw_tf_record

    directory = str(tmp_path / "logs")
    with RequestLog(directory, 1.0) as log:
        calls = [_call(i) for i in range(50)]
        assert all(log.log(PREDICT, *call) for call in calls)
    assert log.sampled == log.written == 50 and log.dropped == log.errors == 0
    records = _records(directory)
    assert [r.WhichOneof("log_type") for r in records] == ["predict_log"] * 50
    for record, (request, response) in zip(records, calls):
        assert record.predict_log.request == request
        assert record.predict_log.response == response
    assert not glob.glob(os.path.join(directory, "*" + request_log.PART_SUFFIX))
    # TFX's own reader of raw records (tfx_bsl's TFXIO, in Beam, as TFX's components read).
    import apache_beam as beam
    from apache_beam.testing import util as beam_util

    tfxio = raw_tf_record.RawTfRecordTFXIO(_logs(directory), "record", ["test"])
    expected = [r.SerializeToString() for r in records]
    with beam.Pipeline() as pipeline:
        raw = pipeline | tfxio.RawRecordBeamSource()
        beam_util.assert_that(raw, beam_util.equal_to(expected))


def test_rate_zero_writes_nothing(tmp_path):
    directory = str(tmp_path / "logs")
    with RequestLog(directory, 0.0) as log:
        assert not any(log.log(PREDICT, *_call(i)) for i in range(100))
    assert log.sampled == log.written == 0
    assert os.listdir(directory) == []


def test_a_fraction_is_logged_exactly(tmp_path):
    directory = str(tmp_path / "logs")
    with RequestLog(directory, 0.2, seed=3) as log:
        for i in range(200):
            log.log(PREDICT, *_call(i))
    assert len(_records(directory)) == log.written == 40


def test_rotation_bounds_each_file_and_keeps_the_newest_files(tmp_path):
    directory = str(tmp_path / "logs")
    size = len(
        prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=_call(1)[0], response=_call(1)[1])
        ).SerializeToString()
    )
    per_file = 3
    bound = per_file * (size + request_log.RECORD_OVERHEAD) + 5
    with RequestLog(directory, 1.0, max_file_bytes=bound, max_files=4) as log:
        for i in range(40):
            log.log(PREDICT, *_call(i))
            time.sleep(0.001)  # let the writer keep up: this test is about rotation
    files = _logs(directory)
    assert len(os.listdir(directory)) == len(files) == 4  # 14 written, the oldest 10 deleted
    assert all(os.path.getsize(f) <= bound for f in files)
    assert files == list(log.files())
    versions = [r.predict_log.response.model_spec.version.value for r in _records(directory)]
    assert versions == list(range(30, 40))  # 3 + 3 + 3 + the 40th alone


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    directory = str(tmp_path / "logs")
    big = [_call(i, payload=1 << 18) for i in range(4)]  # 1 MiB answers: slow to serialize
    with RequestLog(directory, 1.0, queue_records=2) as log:
        slowest = 0.0
        for i in range(300):
            started = time.perf_counter()
            log.log(PREDICT, *big[i % 4])
            slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 0.05  # never waits for the writer
    assert log.dropped > 0 and log.written + log.dropped == log.sampled == 300
    assert len(_records(directory)) == log.written


def test_a_failing_log_folder_never_fails_a_request(tmp_path):
    directory = tmp_path / "logs"
    log = RequestLog(str(directory), 1.0)
    shutil.rmtree(directory)
    directory.write_text("a file where the folder was")
    for i in range(5):
        log.log(PREDICT, *_call(i))
    log.close()
    assert log.errors > 0 and log.written == 0
    assert not log.log(PREDICT, *_call(9))  # closed: nothing more is taken


def test_32_clients_at_once_keep_the_rate_and_the_size_bound(tmp_path):
    """32 threads log at once through one RequestLog with a small size bound: exactly
    the systematic sample is taken, every sampled record is written or counted as
    dropped, and the files never hold more than max_files x max_file_bytes."""
    import threading

    directory = str(tmp_path / "logs")
    calls = [_call(i) for i in range(8)]
    per_client, rate, max_bytes, max_files = 200, 0.3, 40_000, 3
    start = threading.Barrier(32)

    def client(index):
        start.wait()
        for i in range(per_client):
            log.log(PREDICT, *calls[(index + i) % len(calls)])

    with RequestLog(directory, rate, max_file_bytes=max_bytes, max_files=max_files) as log:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert log.sampled == math.floor(32 * per_client * rate)  # 1,920: 6,400 x 0.3 is whole
    assert log.written + log.dropped == log.sampled
    files = _logs(directory)
    assert len(os.listdir(directory)) == len(files) <= max_files
    assert sum(os.path.getsize(f) for f in files) <= max_files * max_bytes
    assert _records(directory)  # the newest complete files, readable


def test_files_past_retention_are_deleted_whichever_logger_wrote_them(tmp_path):
    """A gone client's files (complete or .part) expire when a logger of the folder starts
    a file; recent ones, and other files, stay."""
    directory = tmp_path / "logs"
    directory.mkdir()
    retention = 3600
    old = time.time() - retention - 60
    stale = {
        "prediction_log-20200101T000000Z-1-aaaaaaaa-000001" + features.REQUEST_LOG_SUFFIX,
        "prediction_log-20200101T000000Z-2-bbbbbbbb-000003" + features.REQUEST_LOG_SUFFIX + ".part",
    }
    recent = "prediction_log-20200101T000000Z-3-cccccccc-000001" + features.REQUEST_LOG_SUFFIX
    for name in (*stale, recent, "notes.txt"):
        (directory / name).write_bytes(b"x")
    for name in (*stale, "notes.txt"):
        os.utime(directory / name, (old, old))
    with RequestLog(str(directory), 1.0, retention_seconds=retention) as log:
        log.log(PREDICT, *_call(1))
    left = set(os.listdir(directory))
    assert not stale & left
    assert {recent, "notes.txt", os.path.basename(log.files()[0])} == left
