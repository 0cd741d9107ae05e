"""A cache that sees code: each node's cache key holds a fingerprint of the code it runs.

The fingerprints are read from a copy of the tree, which the tests edit. That TFX then
reruns exactly the edited nodes (and what is downstream) is shown on a real run by
tests/test_pipeline_e2e.py.
"""

import shutil

import pytest

from components import exec_properties
from pipeline import code_fingerprint
from pipeline import config as config_lib
from pipeline.pipeline import create_components

ARCHITECTURES = ("improved", "vgg", "vgg_bn_small")


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A copy of the project's packages and schema, which the fingerprints are read from."""
    root = tmp_path / "tree"
    for package in code_fingerprint.PACKAGES:
        shutil.copytree(
            code_fingerprint._package_dir(package),  # pylint: disable=protected-access
            root / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    shutil.copytree(config_lib.PROJECT_ROOT + "/schemas", root / "schemas")
    monkeypatch.setattr(code_fingerprint, "_package_dir", lambda package: str(root / package))
    for cached in (code_fingerprint.source_file, code_fingerprint.direct_imports):
        cached.cache_clear()
    yield root
    for cached in (code_fingerprint.source_file, code_fingerprint.direct_imports):
        cached.cache_clear()


def fingerprints(tree):
    config = config_lib.PipelineConfig(
        data_path="/d/span-{SPAN}/*.csv",
        architectures=ARCHITECTURES,
        schema_dir=str(tree / "schemas"),
    )
    for cached in (code_fingerprint.source_file, code_fingerprint.direct_imports):
        cached.cache_clear()
    return {
        node.id: node.exec_properties.get(exec_properties.CODE_FINGERPRINT)
        for node in create_components(config)
    }


def changed_by(tree, path, edit):
    before, tree_before = fingerprints(tree), code_fingerprint.tree_fingerprint()
    target = tree / path
    target.write_text(edit(target.read_text()))
    after = fingerprints(tree)
    assert code_fingerprint.tree_fingerprint() != tree_before
    return {node for node in before if before[node] != after[node]}


def test_every_node_that_runs_project_code_has_a_fingerprint(tree):
    found = fingerprints(tree)
    # TFX's own executors with no project code: their cache key is TFX's.
    assert {n for n, f in found.items() if f is None} == {"StatisticsGen", "ExampleValidator"}
    assert all(len(f) == 64 for f in found.values() if f is not None)


def test_a_model_edit_changes_exactly_the_trainers_that_run_it(tree):
    def narrower_dense(text):  # the seed's vgg head: Dense 128 -> 64
        assert "Dense(128" in text
        return text.replace("Dense(128", "Dense(64", 1)

    # vgg_bn_small is vgg's layout with batch norm: it runs vgg.py too.
    changed = changed_by(tree, "model/zoo/vgg.py", narrower_dense)
    assert changed == {"Trainer_vgg", "Trainer_vgg_bn_small"}
    assert changed_by(tree, "model/zoo/improved.py", lambda t: t + "\n# x\n") == {
        "Trainer_improved"
    }


def test_shared_code_changes_every_node_that_runs_it(tree):
    evaluators = {f"Evaluator_{c}" for c in (*ARCHITECTURES, "ensemble", "test")}
    readers = {"ModelSelector", "Report"}  # they read the evaluations with its functions
    changed = changed_by(tree, "components/evaluation.py", lambda t: t + "\n# x\n")
    assert changed == evaluators | readers
    trainers = {f"Trainer_{a}" for a in ARCHITECTURES}
    assert changed_by(tree, "model/trainer.py", lambda t: t + "\n# x\n") == trainers
    # The data contract (feature names, bounds) is read by nearly every node.
    assert len(changed_by(tree, "fer_data/features.py", lambda t: t + "\n# x\n")) >= 10


def test_the_schema_is_part_of_the_schema_importers_key(tree):
    changed = changed_by(tree, "schemas/schema.pbtxt", lambda t: t + "\n# a comment\n")
    assert changed == {"ImportSchemaGen"}


def test_nothing_but_the_code_changes_a_fingerprint(tree):
    assert fingerprints(tree) == fingerprints(tree)
    assert changed_by(tree, "client/cli.py", lambda t: t + "\n# x\n") == set()  # no node runs it
