"""Pipeline configuration: the DirectRunner mode picked for the machine, the embedded
default's Trainer settings against flags, the summary table."""

import argparse
import dataclasses
import os

import pytest

from pipeline import config as config_lib
from pipeline.config import PipelineConfig, direct_running_mode


@pytest.mark.parametrize(
    "cpus, mode",
    [(1, "in_memory"), (2, "in_memory"), (4, "multi_processing"), (16, "multi_processing")],
)
def test_auto_mode_follows_the_cpu_count(cpus, mode):
    assert direct_running_mode("auto", cpus) == mode
    config = PipelineConfig("faces.csv")
    args = config.beam_pipeline_args(cpus)
    assert f"--direct_running_mode={mode}" in args
    # in_memory: one worker (more only split bundles under one GIL); else one per CPU.
    assert f"--direct_num_workers={1 if mode == 'in_memory' else 0}" in args


def test_an_explicit_mode_is_kept_on_any_machine():
    config = PipelineConfig(
        "faces.csv", beam_direct_running_mode="multi_threading", beam_num_workers=3
    )
    assert config.beam_pipeline_args(cpus=2)[:2] == [
        "--direct_running_mode=multi_threading",
        "--direct_num_workers=3",
    ]


def test_beam_steps_do_not_make_tfx_build_and_leak_a_package_of_itself(tmp_path, monkeypatch):
    """Without a dependency flag every Beam step builds an sdist of TFX into a temp dir it
    never deletes (49 MB each)."""
    from tfx.utils import dependency_utils

    from pipeline.config import KubeflowConfig
    from pipeline.kubeflow import runner as kubeflow_runner

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    kubeflow_args = kubeflow_runner.beam_pipeline_args(KubeflowConfig(image="registry/fer:1"))
    for args in (PipelineConfig("faces.csv").beam_pipeline_args(), kubeflow_args):
        assert dependency_utils.make_beam_dependency_flags(args) == args
    assert list(tmp_path.iterdir()) == []
    assert "--sdk_container_image=registry/fer:1" in kubeflow_args
    setup_file = PipelineConfig("faces.csv").beam_pipeline_args()[-1].split("=", 1)[1]
    assert os.path.isfile(setup_file) and os.path.basename(setup_file) == "setup.py"


def test_cluster_beam_workers_run_the_pipeline_image_unless_told_otherwise(tmp_path, monkeypatch):
    """A cluster runner's workers get the pipeline image too (no sdist built per step);
    a dependency the user names replaces it instead of being contradicted."""
    from tfx.utils import dependency_utils

    from pipeline.config import KubeflowConfig
    from pipeline.kubeflow import runner as kubeflow_runner

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    flink = KubeflowConfig(
        image="registry/fer:1",
        beam_runner="FlinkRunner",
        beam_extra_args=("--flink_master=f:8081",),
    )
    args = kubeflow_runner.beam_pipeline_args(flink)
    assert args == [
        "--runner=FlinkRunner",
        "--sdk_container_image=registry/fer:1",
        "--flink_master=f:8081",
    ]
    assert dependency_utils.make_beam_dependency_flags(args) == args
    assert list(tmp_path.iterdir()) == []

    own = dataclasses.replace(flink, beam_extra_args=("--sdk_container_image=registry/beam:2",))
    assert kubeflow_runner.beam_pipeline_args(own) == [
        "--runner=FlinkRunner",
        "--sdk_container_image=registry/beam:2",
    ]
    packaged = dataclasses.replace(flink, beam_extra_args=("--setup_file", "/src/setup.py"))
    assert not any("registry/fer:1" in a for a in kubeflow_runner.beam_pipeline_args(packaged))


def test_an_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="beam mode must be one of auto, in_memory"):
        PipelineConfig("faces.csv", beam_direct_running_mode="multiprocessing").beam_pipeline_args()


def _run_config(tmp_path, *flags):
    from pipeline import cli

    parser = argparse.ArgumentParser()
    cli._add_run_args(parser)  # pylint: disable=protected-access
    return cli.config_from_args(parser.parse_args(["--run-root", str(tmp_path), *flags]))


def test_embedded_default_trains_each_architecture_with_its_demo_settings(tmp_path):
    config = _run_config(tmp_path)  # no --data: the synthetic faces (written once)
    assert os.path.exists(config.data_path)
    for arch, settings in config_lib.SYNTHETIC_DATA_TRAINING.items():
        trainer = config.trainer_for(arch)
        assert {key: getattr(trainer, key) for key in settings} == settings, arch
        assert config.trainer_settings(arch).recipe["epochs"] == settings["epochs"], arch


def test_flags_win_over_the_demo_settings_and_real_data_uses_the_recipes(tmp_path):
    config = _run_config(tmp_path, "--learning-rate", "0.01")
    resnet = config.trainer_for("resnet50")
    assert resnet.learning_rate == 0.01
    assert resnet.epochs == config_lib.SYNTHETIC_DATA_TRAINING["resnet50"]["epochs"]
    vgg = _run_config(tmp_path, "--epochs", "2").trainer_for("vgg")
    demo_vgg = config_lib.SYNTHETIC_DATA_TRAINING["vgg"]
    assert vgg.epochs == 2 and vgg.learning_rate == demo_vgg["learning_rate"]
    assert vgg.recipe_overrides == demo_vgg["recipe_overrides"]
    real = _run_config(tmp_path, "--data", "fer2013.csv.gz")
    assert real.per_architecture == {} and real.trainer_for("resnet50").epochs is None
    assert real.trainer_settings("resnet50").recipe["epochs"] == 30  # the recipe's


def test_summary_table_marks_cached_nodes_and_shows_peaks():
    from pipeline import cli

    table = cli.format_table(
        {
            "architectures": {"vgg": {"eval": {"accuracy": 0.5}, "blessed": True, "params": 10}},
            "node_seconds": {"Trainer_vgg": 0.0, "Evaluator_vgg": 12.5},
            "node_peak_rss_mib": {"Evaluator_vgg": 1536},
            "selection": {"winner": "vgg", "best_candidate": "vgg"},
            "test": {"accuracy": 0.25, "leakage_free": {"accuracy": 0.125}},
            "seconds": 30.0,
            "runner_peak_rss_mib": 1024,
        }
    )
    [row] = [line for line in table.splitlines() if line.startswith("vgg")]
    assert "cached" in row and "12.5s  1.5GB" in row and "0.5000" in row
    assert "0.2500 as published, 0.1250 leakage-free" in table
    assert table.splitlines()[-1] == (
        "run: 30 s; peak memory: largest node process 1.5 GB, runner process 1.0 GB"
    )


def _parser(verb):
    from pipeline import cli

    parser = argparse.ArgumentParser()
    {"run": cli._add_run_args, "compile": cli._add_compile_args}[verb](parser)  # pylint: disable=protected-access
    return parser


COMPILE = ["--image", "r/fer:1", "--pipeline-root", "gs://b/root"]


def test_run_and_compile_turn_the_shared_flags_into_the_same_configuration(tmp_path):
    from pipeline import cli

    shared = ["--data", "gs://b/d.csv", "--architectures", "vgg,improved", "--epochs", "4"]
    shared += ["--allow-drift", "--keep-blank-images", "--allow-anomalies", "--no-ensemble"]
    run = cli.config_from_args(_parser("run").parse_args([*shared, "--run-root", str(tmp_path)]))
    package = cli.config_from_args(_parser("compile").parse_args([*shared, *COMPILE, "--retrain"]))
    verb_fields = {"pipeline_root", "serving_dir", "metadata_path", "retrain", "enable_cache"}
    as_dict = [
        {k: v for k, v in dataclasses.asdict(c).items() if k not in verb_fields}
        for c in (run, package)
    ]
    assert as_dict[0] == as_dict[1]
    assert package.data_path == "gs://b/d.csv" and package.retrain and not run.retrain
    assert run.pipeline_root == str(tmp_path / "pipeline_root")
    assert package.quality_policy == {"drop_blank": False} and package.allow_anomalies


def test_each_verb_says_what_its_shared_flags_do(capsys):
    helps = {}
    for verb in ("run", "compile"):
        with pytest.raises(SystemExit):
            _parser(verb).parse_args(["--help"])
        helps[verb] = " ".join(capsys.readouterr().out.split())
    assert "(default: quick without --data, full with it)" in helps["run"]
    assert "(default: full)" in helps["compile"] and "without --data" not in helps["compile"]
    for parameter in ("epochs", "min_accuracy", "allow_drift"):
        assert f"the default of the pipeline parameter '{parameter}'" in helps["compile"]
        assert f"pipeline parameter '{parameter}'" not in helps["run"]
    for verb in helps:  # the flag it names exists for the verb
        assert "--allow-anomalies" in helps[verb] and "--keep-blank-images" in helps[verb]


def test_a_push_is_a_new_baseline_and_warm_start_for_the_local_cache(tmp_path):
    """Locally, ServingBaseline and ServedModel carry the version served when the pipeline
    is built: a cached candidate is evaluated again against a newly pushed model (a
    blessing against an older one never decides a push)."""
    from components import node_ids
    from pipeline.pipeline import create_components

    config = _run_config(tmp_path, "--architectures", "vgg", "--no-ensemble", "--warm-start")

    def served_versions():
        nodes = create_components(config)
        return {
            n.id: n.exec_properties["served_version"]
            for n in nodes
            if n.id in (node_ids.serving_baseline("vgg"), node_ids.SERVED_MODEL)
        }

    assert served_versions() == {"ServingBaseline_vgg": 0, "ServedModel": 0}
    version = os.path.join(config.model_serving_dir, "1700000000")
    os.makedirs(version)
    open(os.path.join(version, "saved_model.pb"), "wb").close()
    assert served_versions() == {"ServingBaseline_vgg": 1700000000, "ServedModel": 1700000000}


def test_the_serving_skew_check_is_a_node_only_with_request_logs(tmp_path):
    """--request-logs adds ServingSkewCheck and leaves every other node as it was (the
    same exec properties: the cache of earlier runs holds); it informs, so Transform waits
    for it only with --stop-on-skew."""
    from components import node_ids
    from pipeline.pipeline import create_components

    flags = ("--architectures", "vgg", "--no-ensemble")
    plain = {n.id: n for n in create_components(_run_config(tmp_path, *flags))}
    assert node_ids.SERVING_SKEW_CHECK not in plain
    logs = str(tmp_path / "request-logs")
    config = _run_config(tmp_path, *flags, "--request-logs", logs)
    nodes = {n.id: n for n in create_components(config)}
    assert set(nodes) == set(plain) | {node_ids.SERVING_SKEW_CHECK}
    for node_id, node in plain.items():
        assert nodes[node_id].exec_properties == node.exec_properties, node_id
    step = nodes[node_ids.SERVING_SKEW_CHECK]
    properties = step.exec_properties
    assert (properties["request_logs"], properties["model_base_path"]) == (
        logs,
        config.model_serving_dir,
    )
    assert properties["stop_on_skew"] == 0 and properties["logs_state"]
    assert step not in nodes[node_ids.TRANSFORM].upstream_nodes
    stopping = create_components(
        _run_config(tmp_path, *flags, "--request-logs", logs, "--stop-on-skew")
    )
    [transform] = [n for n in stopping if n.id == node_ids.TRANSFORM]
    assert node_ids.SERVING_SKEW_CHECK in {n.id for n in transform.upstream_nodes}
    with pytest.raises(SystemExit, match="--stop-on-skew needs --request-logs"):
        _run_config(tmp_path, "--stop-on-skew")
