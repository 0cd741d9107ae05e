"""What TF Serving's Classify needs of a SavedModel's classification signature, checked
the same way for the Trainer's models (test_signatures.py) and the ensemble's."""

import os

import numpy as np
import tensorflow as tf

from fer_data import features


def signature_defs(export_dir):
    """The SignatureDefs of a SavedModel, as TF Serving reads them from saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as handle:
        (meta_graph,) = saved_model_pb2.SavedModel.FromString(handle.read()).meta_graphs
    return meta_graph.signature_def


def check(export_dir, loaded, faces):
    """The classification SignatureDef is what TF Serving's Classify accepts (method name,
    one string input ``inputs``, ``classes`` string and ``scores`` float [N, 7]); called
    with the pipeline's raw tf.Examples of ``faces`` it answers the 7 labels in every row,
    the predict signature's probabilities as scores, so the same top class."""
    from tensorflow.core.framework import types_pb2

    from fer_data import fer2013_csv

    defs = signature_defs(export_dir)
    classify = defs[features.CLASSIFY_SIGNATURE]
    assert classify.method_name == "tensorflow/serving/classify"
    assert tf.compat.v1.saved_model.is_valid_signature(classify)
    assert {k: v.dtype for k, v in classify.inputs.items()} == {
        features.CLASSIFY_INPUT: types_pb2.DT_STRING
    }
    assert {k: v.dtype for k, v in classify.outputs.items()} == {
        features.CLASSES_OUTPUT: types_pb2.DT_STRING,
        features.SCORES_OUTPUT: types_pb2.DT_FLOAT,
    }
    for name in (features.CLASSES_OUTPUT, features.SCORES_OUTPUT):
        assert classify.outputs[name].tensor_shape.dim[1].size == features.NUM_CLASSES
    for name in (features.SERVING_DEFAULT_SIGNATURE, features.SERVING_IMAGES_SIGNATURE):
        assert defs[name].method_name == "tensorflow/serving/predict"

    raw = fer2013_csv.encode_images([f.astype(np.uint8).tobytes() for f in faces], [0] * len(faces))
    classified = loaded.signatures[features.CLASSIFY_SIGNATURE](inputs=tf.constant(raw))
    predicted = loaded.signatures[features.SERVING_DEFAULT_SIGNATURE](
        examples=tf.constant([features.serving_example(f) for f in faces])
    )
    classes = classified[features.CLASSES_OUTPUT].numpy()
    scores = classified[features.SCORES_OUTPUT].numpy()
    assert classes.shape == scores.shape == (len(faces), features.NUM_CLASSES)
    assert {tuple(c.decode() for c in row) for row in classes} == {features.EMOTIONS}
    probabilities = predicted[features.PROBABILITIES_OUTPUT].numpy()
    np.testing.assert_allclose(scores, probabilities, rtol=1e-5, atol=1e-6)
    assert scores.argmax(axis=1).tolist() == predicted[features.CLASS_ID_OUTPUT].numpy().tolist()
