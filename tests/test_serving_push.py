"""Atomic, monotonic pushes into TF Serving's layout, and the serving-directory baseline."""

import os

from tfx.types import standard_artifacts

from components import baseline, serving_push
from model import model_metadata


def _saved_model_dir(path, content=b"model", current_contract=True):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "saved_model.pb"), "wb") as handle:
        handle.write(content)
    if current_contract:  # as the Trainer saves it; older models lack the version
        model_metadata.write(str(path), {})
    return str(path)


def test_push_lands_complete_under_a_new_numeric_version(tmp_path):
    base = str(tmp_path / "fer")
    first = serving_push.push_atomically(_saved_model_dir(tmp_path / "m1", b"one"), base)
    second = serving_push.push_atomically(_saved_model_dir(tmp_path / "m2", b"two"), base)
    v1, v2 = int(os.path.basename(first)), int(os.path.basename(second))
    assert v2 > v1  # strictly increasing even within the same second
    assert serving_push.pushed_versions(base) == [v1, v2]
    assert serving_push.latest_version(base) == v2
    assert open(os.path.join(second, "saved_model.pb"), "rb").read() == b"two"
    assert not [n for n in os.listdir(base) if n.startswith(serving_push.TEMP_PREFIX)]


def _tiny_saved_model(path, value):
    import tensorflow as tf

    module = tf.Module()
    module.weight = tf.Variable(value)
    module.scale = tf.function(lambda x: x * module.weight, [tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, str(path))
    return str(path)


def test_the_model_the_newest_version_holds_is_already_served(tmp_path):
    """A rerun's winner that is the served model saved again (a cached candidate, an
    ensemble rebuilt from the same members) is found served by TensorFlow's SavedModel
    fingerprint; other weights, an older version or no fingerprint are not."""
    base = str(tmp_path / "fer")
    model = _tiny_saved_model(tmp_path / "m1", 2.0)
    same = _tiny_saved_model(tmp_path / "m1-again", 2.0)
    other = _tiny_saved_model(tmp_path / "m2", 3.0)
    assert serving_push.already_served(base, model) is None  # nothing served
    v1 = int(os.path.basename(serving_push.push_atomically(model, base)))
    assert serving_push.already_served(base, same) == v1
    assert serving_push.already_served(base, other) is None
    assert serving_push.already_served(base, _saved_model_dir(tmp_path / "m3")) is None
    serving_push.push_atomically(other, base)
    assert serving_push.already_served(base, same) is None  # v1 is no longer the newest


def test_incomplete_and_staging_dirs_are_not_versions(tmp_path):
    base = tmp_path / "fer"
    _saved_model_dir(base / "100")
    os.makedirs(base / "200")  # no saved_model.pb: a copy in progress by someone else
    _saved_model_dir(base / f"{serving_push.TEMP_PREFIX}300")
    assert serving_push.pushed_versions(str(base)) == [100]
    assert serving_push.next_version(str(base), now=50) == 201  # above every numeric dir
    assert serving_push.pushed_versions(str(tmp_path / "missing")) == []


def _run_baseline(tmp_path, base):
    candidate = standard_artifacts.Model()
    _saved_model_dir(tmp_path / "candidate" / "Format-Serving", b"candidate")
    candidate.uri = str(tmp_path / "candidate")
    out = standard_artifacts.Model()
    out.uri = str(tmp_path / "baseline")
    baseline.ServingBaseline.EXECUTOR_SPEC.executor_class().Do(
        {"candidate": [candidate]}, {"baseline": [out]}, {"model_base_path": str(base)}
    )
    with open(os.path.join(out.uri, "Format-Serving", "saved_model.pb"), "rb") as handle:
        return out, handle.read()


def test_baseline_is_the_served_version_or_the_candidate_before_any_push(tmp_path):
    base = tmp_path / "fer"
    out, content = _run_baseline(tmp_path, base)
    assert content == b"candidate"
    assert "none pushed yet" in out.get_string_custom_property(baseline.SOURCE_PROPERTY)

    _saved_model_dir(base / "7", b"served-7")
    _saved_model_dir(base / "9", b"served-9")
    out, content = _run_baseline(tmp_path / "again", base)
    assert content == b"served-9"
    assert out.get_string_custom_property(baseline.SOURCE_PROPERTY) == "served version 9"


def test_a_served_model_of_an_older_data_contract_is_not_the_baseline(tmp_path):
    """A version of data contract 1 (pixels as int64 values) cannot parse this run's examples."""
    base = tmp_path / "fer"
    _saved_model_dir(base / "5", b"old-5", current_contract=False)
    out, content = _run_baseline(tmp_path, base)
    assert content == b"candidate"
    assert out.get_int_custom_property(baseline.IS_CANDIDATE_PROPERTY) == 1
    assert "not comparable" in out.get_string_custom_property(baseline.SOURCE_PROPERTY)


def test_reservations_count_as_taken_versions(tmp_path):
    base = tmp_path / "fer"
    os.makedirs(base / f"{serving_push.RESERVED_PREFIX}500")
    os.makedirs(base / "\u00b2")  # str.isdigit() says yes, int() says no
    _saved_model_dir(base / "\u0663")  # an Arabic-Indic three: not a version either
    assert serving_push.pushed_versions(str(base)) == []
    assert serving_push.next_version(str(base), now=50) == 501
    assert serving_push.reserve_version(str(base)) > 500


def test_concurrent_pushes_never_publish_a_mixed_version(tmp_path):
    """20 trials of two pushes of different models started at the same instant."""
    import threading

    files = [f"variables/part-{i}" for i in range(40)] + ["saved_model.pb"]
    models = {}
    for tag in ("a", "b"):
        for name in files:
            path = tmp_path / tag / name
            os.makedirs(path.parent, exist_ok=True)
            path.write_bytes(tag.encode() * 2048)
        models[tag] = str(tmp_path / tag)
    for trial in range(20):
        base = str(tmp_path / f"serving{trial}" / "fer")
        start, pushed, failures = threading.Barrier(2), [], []

        def push(tag):
            start.wait()
            try:
                pushed.append(serving_push.push_atomically(models[tag], base))
            except Exception as error:  # noqa: BLE001 - reported below
                failures.append(error)

        threads = [threading.Thread(target=push, args=(tag,)) for tag in models]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        assert len(set(pushed)) == 2 and serving_push.pushed_versions(base) == sorted(
            int(os.path.basename(p)) for p in pushed
        )
        for version_dir in pushed:
            contents = {open(os.path.join(version_dir, n), "rb").read()[:1] for n in files}
            assert len(contents) == 1, f"trial {trial}: {version_dir} mixes models"
        # No staging copy or reservation is left behind.
        assert sorted(os.listdir(base)) == sorted(os.path.basename(p) for p in pushed)


def test_version_folders_beyond_int64_are_ignored_and_never_numbered_past(tmp_path, caplog):
    """TF Serving's versions are int64: a folder named 10^20 is no version, and the next
    push is numbered from the real ones, not 10^20 + 1."""
    base = tmp_path / "fer"
    _saved_model_dir(base / "100")
    _saved_model_dir(base / "99999999999999999999")
    _saved_model_dir(base / ("9" * 250))  # a file system allows 255 characters
    _saved_model_dir(base / "\u0663")  # an Arabic-Indic digit: not an ASCII version
    os.makedirs(base / f"{serving_push.RESERVED_PREFIX}99999999999999999999")
    assert serving_push.pushed_versions(str(base)) == [100]
    assert serving_push.latest_version(str(base)) == 100
    assert serving_push.next_version(str(base), now=50) == 101
    assert serving_push.reserve_version(str(base)) < 2**63
    assert "99999999999999999999" in caplog.text  # logged, not silently skipped
