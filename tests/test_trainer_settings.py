"""Each Trainer's settings are resolved when the pipeline is built and recorded as its
custom_config, for the demo's quick settings and for the full recipes. That ML Metadata
holds them after a real run: tests/test_pipeline_e2e.py."""

import argparse
import json

import pytest

from model import zoo
from pipeline import cli


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
