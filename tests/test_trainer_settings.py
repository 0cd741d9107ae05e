"""Each Trainer's settings are resolved when the pipeline is built and recorded as its
custom_config: ML Metadata shows the epochs, batch size, learning rate, schedule and
augmentation it trained with, for the demo's quick settings and for the full recipes."""

import argparse
import json

import pytest

from fer_data import synthetic_faces
from model import zoo
from model.zoo import recipe as recipe_lib
from pipeline import cli
from pipeline.local import run_summary


def _run_config(tmp_path, *flags):
    parser = argparse.ArgumentParser()
    cli._add_run_args(parser)  # pylint: disable=protected-access
    return cli.config_from_args(parser.parse_args(["--run-root", str(tmp_path), *flags]))


def _trainer_configs(config, kubeflow=False):
    """Trainer node id -> its custom_config, as the built pipeline holds it."""
    from pipeline.pipeline import create_components

    return {
        node.id: json.loads(node.exec_properties["custom_config"])
        for node in create_components(config, kubeflow=kubeflow)
        if node.id.startswith("Trainer_")
    }


def _recorded_custom_config(metadata_path, pipeline_name, node_id):
    """The custom_config of the newest execution of ``node_id``, read from ML Metadata."""
    store = run_summary.open_store(metadata_path)
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    assert context is not None, f"no node {node_id} in {metadata_path}"
    execution = max(store.get_executions_by_context(context.id), key=lambda e: e.id)
    return json.loads(execution.custom_properties["custom_config"].string_value)


def test_the_trainer_execution_records_the_demo_settings_it_trained_with(tmp_path):
    """A small real run up to the Trainer (`--training quick`, one architecture): the
    custom_config ML Metadata recorded holds the resolved demo settings, not None."""
    from pipeline.local import runner

    data = synthetic_faces.write_csv(str(tmp_path / "faces.csv"), num_rows=210, seed=0)
    config = _run_config(
        tmp_path / "runs",
        *["--data", data, "--training", "quick", "--architectures", "improved"],
        "--no-ensemble",
    )
    runner.run(config, last_node="Trainer_improved")
    recorded = _recorded_custom_config(
        config.metadata_path, config.pipeline_name, "Trainer_improved"
    )
    recipe = recorded["recipe"]
    assert recorded["architecture"] == "improved"
    assert (recipe["epochs"], recipe["batch_size"], recipe["learning_rate"]) == (10, 64, 5e-4)
    assert recipe["lr_schedule"] is None and recipe["label_smoothing"] == 0.0  # constant rate
    assert recipe["augmentation"] == recipe_lib.NO_AUGMENTATION
    assert recipe["early_stopping_patience"] == 10
    assert recipe["test_time_augmentation"] == ["horizontal_flip"]
    assert recorded == config.trainer_settings("improved").to_custom_config()


@pytest.mark.parametrize("kubeflow", [False, True])
def test_with_data_every_trainer_is_built_with_its_full_recipe(tmp_path, kubeflow):
    """`--data` (full recipes), every architecture: checked on the built pipeline's Trainer
    exec properties, locally and for a compiled package."""
    config = _run_config(tmp_path, "--data", "/data/fer2013.csv.gz", "--architectures", "all")
    found = _trainer_configs(config, kubeflow=kubeflow)
    assert set(found) == {f"Trainer_{arch}" for arch in zoo.ARCHITECTURES}
    for arch in zoo.ARCHITECTURES:
        assert found[f"Trainer_{arch}"]["recipe"] == zoo.get_recipe(arch), arch
    vgg = found["Trainer_vgg"]["recipe"]
    assert (vgg["epochs"], vgg["batch_size"], vgg["learning_rate"]) == (52, 64, 1e-3)
    assert vgg["lr_schedule"]["name"] == "cosine" and vgg["augmentation"]["horizontal_flip"]
    resnet = found["Trainer_resnet50"]["recipe"]
    assert (resnet["epochs"], resnet["learning_rate"], resnet["early_stopping_patience"]) == (
        30,
        1e-4,
        8,
    )


def test_flags_reach_the_built_trainers_on_top_of_the_demo_settings(tmp_path):
    config = _run_config(tmp_path, "--epochs", "2", "--batch-size", "16", "--architectures", "vgg")
    [vgg] = _trainer_configs(config).values()
    # --epochs and --batch-size for every architecture; the demo's learning rate stays.
    assert (vgg["recipe"]["epochs"], vgg["recipe"]["batch_size"]) == (2, 16)
    assert vgg["recipe"]["learning_rate"] == 5e-4
