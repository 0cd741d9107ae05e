"""EnsembleBuilder: the blessed candidates' SavedModels averaged into one servable model."""

import os
import shutil

import classification_checks
import numpy as np
import pytest
import serving_fixtures as fx
import tensorflow as tf
from tfx.types import standard_artifacts

from components import candidates, ensemble
from fer_data import features
from model import model_metadata


def _candidate(root, arch, favourite, blessed, params=10):
    """A Trainer-shaped model artifact (SavedModel with both signatures) and its blessing."""
    model = standard_artifacts.Model()
    model.uri = str(root / arch / "model")
    serving = os.path.join(model.uri, "Format-Serving")
    shutil.copytree(fx.saved_model_template(favourite), serving)
    model_metadata.write(serving, {"params": params})
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(root / arch / "blessing")
    blessing.set_int_custom_property("blessed", int(blessed))
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(root / arch / "evaluation")
    return {
        candidates.input_name("model", arch): [model],
        candidates.input_name("blessing", arch): [blessing],
        candidates.input_name("evaluation", arch): [evaluation],
    }


def _build(root, table):
    inputs = {}
    for arch, (favourite, blessed) in table.items():
        inputs.update(_candidate(root, arch, favourite, blessed))
    model = standard_artifacts.Model()
    model.uri = str(root / "ensemble")
    ensemble.Executor().Do(inputs, {"model": [model]}, {})
    path = os.path.join(model.uri, "Format-Serving")
    return tf.saved_model.load(path), model_metadata.read(path), model


def _probabilities(loaded, pixels, images):
    by_example = loaded.signatures[features.SERVING_DEFAULT_SIGNATURE](
        examples=tf.constant([features.serving_example(p) for p in pixels])
    )
    by_image = loaded.signatures[features.SERVING_IMAGES_SIGNATURE](images=tf.constant(images))
    return (
        by_example[features.PROBABILITIES_OUTPUT].numpy(),
        by_image[features.PROBABILITIES_OUTPUT].numpy(),
        by_example,
    )


def test_the_blessed_candidates_are_averaged_in_both_signatures(tmp_path):
    loaded, meta, model = _build(tmp_path, {"a": (1, True), "b": (4, True), "c": (6, False)})
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, features.NUM_PIXELS))
    images = [fx.image_bytes(p.reshape(48, 48)) for p in pixels]
    members = [tf.saved_model.load(fx.saved_model_template(f)) for f in (1, 4)]
    expected = [
        np.mean([_probabilities(m, pixels, images)[i] for m in members], axis=0) for i in (0, 1)
    ]
    got_examples, got_images, outputs = _probabilities(loaded, pixels, images)
    np.testing.assert_allclose(got_examples, expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_images, expected[1], rtol=1e-5, atol=1e-6)
    assert list(outputs[features.CLASS_ID_OUTPUT].numpy()) == list(got_examples.argmax(axis=1))
    assert meta["members"] == ["a", "b"] and meta["member_selection"] == "blessed"
    assert meta["params"] == 20 and meta["serving_latency_ms"] > 0
    assert model.get_string_custom_property("architecture") == ensemble.ENSEMBLE


def test_the_ensemble_classifies_as_it_predicts(tmp_path):
    """Its classification signature (members without one, as the fixtures are) answers
    TF Serving's Classify with the averaged probabilities: the predict top class."""
    loaded, _, model = _build(tmp_path, {"a": (1, True), "b": (4, True)})
    faces = np.random.default_rng(1).integers(0, 256, (4, features.NUM_PIXELS))
    classification_checks.check(os.path.join(model.uri, "Format-Serving"), loaded, faces)


def test_with_nothing_blessed_every_candidate_is_a_member(tmp_path):
    _, meta, _ = _build(tmp_path, {"a": (1, False), "b": (4, False)})
    assert meta["members"] == ["a", "b"] and meta["member_selection"].startswith("all")


def test_an_ensemble_of_nothing_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one member"):
        ensemble.build([], str(tmp_path / "out"))
