"""fer-pipeline: run locally (BeamDagRunner), compile for / submit to Kubeflow Pipelines."""

import argparse
import contextlib
import logging
import os
import sys
from typing import Dict, List, Optional, Tuple

from components import node_ids
from fer_data import features
from pipeline import config as config_lib

DEFAULTS = config_lib.PipelineConfig  # the flags' defaults are the configuration's
DEFAULT_PACKAGE = "fer_pipeline.yaml"  # what compile writes and submit reads


def _default_data(run_root: str) -> str:
    """The embedded default: synthetic fer2013 faces, generated once per run root."""
    from fer_data import synthetic_faces

    path = os.path.join(run_root, "data", "synthetic_fer2013.csv")
    if not os.path.exists(path):
        synthetic_faces.write_csv(path, seed=0)
        print(f"No --data given: wrote {synthetic_faces.DEFAULT_ROWS} synthetic faces to {path}")
    return path


def _architectures(text: str) -> Tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = set(names) - set(config_lib.ARCHITECTURES)
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown architecture(s) {sorted(unknown)}; choose from "
            f"{','.join(config_lib.ARCHITECTURES)}"
        )
    return names


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    # fmt: off
    parser.add_argument("--architectures", type=_architectures, default=config_lib.ARCHITECTURES,
                        help="comma-separated, each in its own Trainer (default: all: "
                        f"{','.join(config_lib.ARCHITECTURES)})")
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs")
    parser.add_argument("--batch-size", type=int, help="override every recipe's batch size")
    parser.add_argument("--learning-rate", type=float, help="override every recipe's LR")
    parser.add_argument("--weights", help="transfer backbones: imagenet or a local .h5 file "
                                          "(default: random init)")
    parser.add_argument("--test-time-augmentation", choices=("on", "off"),
                        help="serve every model with (on: mirror image and 2-px shifts) or without "
                        "(off) test-time augmentation (default: each recipe's)")
    parser.add_argument("--min-accuracy", type=float, default=DEFAULTS.min_accuracy,
                        help="absolute eval-accuracy bound for blessing")
    parser.add_argument("--no-ensemble", dest="ensemble", action="store_false",
                        help="no ensemble candidate (the blessed architectures averaged)")
    parser.add_argument("--selection-metric", default=DEFAULTS.selection_metric,
                        choices=features.SELECTION_METRICS,
                        help="how ModelSelector ranks the blessed candidates on eval")
    # fmt: on


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    """Drift and data quality policy flags, for local runs and compiled packages alike."""
    # fmt: off
    parser.add_argument("--allow-drift", action="store_true",
                        help="train even when the train split drifted from the previous "
                        "run's statistics, and make this run the new reference")
    quality = parser.add_argument_group(
        "data quality policy (default: the safe one; dropped rows are kept in the quarantine)")
    for flag, setting, what in _QUALITY_FLAGS:
        quality.add_argument(flag, dest=setting, action="store_false", default=True, help=what)
    # fmt: on


def _quality_policy(args: argparse.Namespace) -> Dict[str, bool]:
    """The policy settings the flags turned off (config.PipelineConfig.quality_policy)."""
    return {setting: False for _, setting, _ in _QUALITY_FLAGS if not getattr(args, setting)}


def _trainer_config(args: argparse.Namespace) -> config_lib.TrainerConfig:
    tta = {"on": True, "off": False, None: None}[args.test_time_augmentation]
    return config_lib.TrainerConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weights=args.weights,
        test_time_augmentation=tta,
    )


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    # fmt: off
    parser.add_argument("--data", help="fer2013 CSV (.csv or .csv.gz); default: synthetic faces")
    parser.add_argument("--run-root", default=config_lib.DEFAULT_RUN_ROOT,
                        help="where pipeline root, metadata and serving dir go by default")
    parser.add_argument("--pipeline-root", help="default: <run-root>/pipeline_root")
    parser.add_argument("--serving-dir", help="default: <run-root>/serving")
    parser.add_argument("--metadata-path", help="SQLite MLMD; default: <run-root>/metadata.sqlite")
    _add_training_args(parser)
    _add_data_args(parser)
    parser.add_argument("--max-quarantine-fraction", type=float,
                        default=DEFAULTS.max_quarantine_fraction)
    parser.add_argument("--allow-anomalies", action="store_true",
                        help="experts: train even when data validation finds anomalies")
    parser.add_argument("--no-cache", action="store_true", help="rerun every step")
    parser.add_argument("--beam-mode", default=DEFAULTS.beam_direct_running_mode,
                        choices=config_lib.BEAM_MODES,
                        help=f"DirectRunner mode; auto: in_memory on <= "
                             f"{config_lib.IN_MEMORY_MAX_CPUS} CPUs, else multi_processing")
    parser.add_argument("--summary-json",
                        help="where the run summary goes (default: <run-root>/summary.json)")
    parser.add_argument("--verbose", action="store_true",
                        help="show the full TF/Beam/TFX log on the console instead of "
                        "writing it to <run-root>/logs/")
    # fmt: on


# --flag -> the quality.Policy setting it turns off.
_QUALITY_FLAGS = (
    ("--keep-train-duplicates", "dedupe_train", "train on every copy of a duplicated image"),
    (
        "--keep-conflicting-labels",
        "drop_conflicting_labels",
        "train on images whose copies carry different labels",
    ),
    (
        "--keep-eval-leakage",
        "drop_eval_seen_in_train",
        "keep eval images that also occur in train (model selection sees them)",
    ),
    (
        "--keep-blank-images",
        "drop_blank",
        "keep blank frames (the schema still flags them: add --allow-anomalies)",
    ),
)


def config_from_args(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """Flags -> PipelineConfig (the only place flags meet configuration)."""
    run_root = args.run_root
    trainer = _trainer_config(args)
    paths = config_lib.run_paths(run_root)
    return config_lib.PipelineConfig(
        data_path=args.data or _default_data(run_root),
        pipeline_root=args.pipeline_root or paths["pipeline_root"],
        serving_dir=args.serving_dir or paths["serving_dir"],
        metadata_path=args.metadata_path or paths["metadata_path"],
        max_quarantine_fraction=args.max_quarantine_fraction,
        allow_anomalies=args.allow_anomalies,
        quality_policy=_quality_policy(args),
        allow_drift=args.allow_drift,
        architectures=args.architectures,
        trainer=trainer,
        per_architecture=config_lib.per_architecture_training(trainer, embedded_data=not args.data),
        min_accuracy=args.min_accuracy,
        selection_metric=args.selection_metric,
        ensemble=args.ensemble,
        beam_direct_running_mode=args.beam_mode,
        enable_cache=not args.no_cache,
    )


def _known_failure(error: BaseException) -> Optional[str]:
    """The readable message of a data/validation failure, however deeply Beam wrapped it."""
    from components.data_validation_gate import DataValidationError
    from components.fer2013_example_gen.executor import QuarantineBoundExceeded
    from fer_data.fer2013_csv import CsvHeaderError

    names = [
        cls.__name__
        for cls in (DataValidationError, QuarantineBoundExceeded, CsvHeaderError, FileNotFoundError)
    ]
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if type(error).__name__ in names:
            return f"{type(error).__name__}: {error}"
        text = str(error)
        for name in names:
            if f"{name}: " in text:
                return name + ": " + text.split(f"{name}: ", 1)[1].split("\n [while running")[0]
        error = error.__cause__ or error.__context__
    return None


def run_command(args: argparse.Namespace) -> int:
    from pipeline import run_log  # light: the log takes over before TensorFlow is imported

    config = config_from_args(args)
    summary_json = args.summary_json or os.path.join(args.run_root, "summary.json")
    log = run_log.log_path(args.run_root)
    if not args.verbose:
        print(f"Full log of this run: {log}", flush=True)
    try:
        with (
            contextlib.nullcontext(sys.stdout) if args.verbose else run_log.output_to_log(log)
        ) as console:
            try:
                from pipeline import local_runner

                summary = local_runner.run(config, summary_json, console=console)
            except Exception:
                if not args.verbose:
                    logging.exception("The run failed")  # the traceback, into the log
                raise
    except Exception as error:  # pylint: disable=broad-except
        message = _known_failure(error)
        if message is None:
            if args.verbose:
                raise
            message = f"{type(error).__name__}: {str(error).strip()[:500]}"
        print(f"fer-pipeline: run failed: {message}", file=sys.stderr)
        if not args.verbose:
            print(f"fer-pipeline: the traceback is in {log}", file=sys.stderr)
        return 2
    print(f"Summary (JSON): {summary_json}")
    if summary.get("report"):
        print(f"Report: {summary['report']}")
    print(
        f"Pushed model: {summary['pushed_path']}"
        if summary.get("pushed")
        else "No model was pushed (none blessed): see the eval accuracy below."
    )
    print(format_table(summary))
    return 0


def format_table(summary: dict) -> str:
    """One line per architecture (eval accuracy, blessed, size, speed, time and memory of
    its Trainer and Evaluator); then the winner, its test accuracy and the run's totals."""
    seconds, peaks = summary.get("node_seconds", {}), summary.get("node_peak_rss_mib", {})

    def node(node_id: str) -> str:
        if not seconds.get(node_id):
            return f"{'cached':>15}"
        peak = peaks.get(node_id)
        return f"{seconds[node_id]:>7.1f}s" + (
            f" {peak / 1024:>4.1f}GB" if peak is not None else "       "
        )

    lines = [
        f"{'architecture':<14}{'eval acc':>9}{'blessed':>8}{'params':>12}{'img/s':>7}"
        f"{'Trainer':>15}{'Evaluator':>15}"
    ]
    for arch, row in summary.get("architectures", {}).items():
        accuracy = (row.get("eval") or {}).get("accuracy")
        lines.append(
            f"{arch:<14}{'-' if accuracy is None else f'{accuracy:.4f}':>9}"
            f"{'yes' if row.get('blessed') else 'no':>8}{row.get('params')!s:>12}"
            f"{round(row['images_per_second']) if row.get('images_per_second') else '-'!s:>7}"
            f"{node(node_ids.model_node(arch))}{node(node_ids.evaluator(arch))}"
        )
    selection = summary.get("selection") or {}
    test = summary.get("test") or {}

    def accuracy_of(metrics: dict) -> str:
        return "-" if metrics.get("accuracy") is None else f"{metrics['accuracy']:.4f}"

    lines.append(
        f"selected: {selection.get('winner') or 'none (nothing blessed)'}; "
        f"PrivateTest accuracy of {selection.get('best_candidate')}: "
        f"{accuracy_of(test)} as published, "
        f"{accuracy_of(test.get('leakage_free') or {})} leakage-free"
    )
    if "seconds" in summary:
        largest = max(peaks.values(), default=0)
        lines.append(
            f"run: {summary['seconds']:.0f} s; peak memory: largest node process "
            f"{largest / 1024:.1f} GB, runner process "
            f"{summary.get('runner_peak_rss_mib', 0) / 1024:.1f} GB"
        )
    return "\n".join(lines)


def _add_compile_args(parser: argparse.ArgumentParser) -> None:
    # fmt: off
    defaults = config_lib.KubeflowConfig()
    parser.add_argument("--output", default=DEFAULT_PACKAGE, help="KFP package (.yaml)")
    parser.add_argument("--image", default=defaults.image,
                        help="container image with this project (see Dockerfile)")
    parser.add_argument("--data", default=defaults.data_path, help="fer2013 CSV URI in the cluster")
    parser.add_argument("--pipeline-root", default=defaults.pipeline_root)
    parser.add_argument("--serving-dir", default=defaults.serving_dir,
                        help="volume/URI shared with TF Serving (kubernetes/)")
    parser.add_argument("--serving-pvc", default=defaults.serving_pvc,
                        help="PVC mounted at --serving-dir in the Pusher and baseline steps; "
                        "'' for none (e.g. a gs:// serving dir)")
    parser.add_argument("--schema-dir", default=defaults.schema_dir,
                        help="folder of schema.pbtxt as the pods see it (the image's)")
    parser.add_argument("--beam-runner", default=defaults.beam_runner,
                        choices=["DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner"])
    parser.add_argument("--beam-arg", action="append", default=[],
                        help="extra Beam flag for the Beam steps, e.g. --beam-arg=--project=P")
    parser.add_argument("--trainer-gpus", type=int, default=defaults.trainer.gpus,
                        help="nvidia.com/gpu per Trainer pod (0 = CPU)")
    _add_training_args(parser)
    _add_data_args(parser)
    # fmt: on


def compile_command(args: argparse.Namespace) -> int:
    import dataclasses

    from pipeline import kfp_package, kubeflow_runner

    defaults = config_lib.KubeflowConfig()
    kubeflow = config_lib.KubeflowConfig(
        image=args.image,
        pipeline_root=args.pipeline_root,
        serving_dir=args.serving_dir,
        serving_pvc=args.serving_pvc or None,
        schema_dir=args.schema_dir,
        data_path=args.data,
        beam_runner=args.beam_runner,
        beam_extra_args=tuple(args.beam_arg),
        trainer=dataclasses.replace(defaults.trainer, gpus=args.trainer_gpus),
    )
    config = config_lib.PipelineConfig(
        data_path=args.data,
        min_accuracy=args.min_accuracy,
        architectures=args.architectures,
        selection_metric=args.selection_metric,
        ensemble=args.ensemble,
        quality_policy=_quality_policy(args),
        allow_drift=args.allow_drift,
        trainer=_trainer_config(args),
    )
    try:
        print(f"Compiled {kubeflow_runner.compile_pipeline(config, kubeflow, args.output)}")
    except kfp_package.PackageError as error:
        print(f"fer-pipeline: {error}", file=sys.stderr)
        return 1
    return 0


def _pairs(pairs: List[str], flag: str, value_required: bool = False) -> Dict[str, str]:
    """``KEY=VALUE`` flags -> {KEY: VALUE}; exits with one line on a malformed pair."""
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not key or not sep or (value_required and not value):
            raise SystemExit(f"fer-pipeline: {flag} expects KEY=VALUE, got {pair!r}")
        parsed[key] = value
    return parsed


def submit_command(args: argparse.Namespace) -> int:
    from pipeline import kubeflow_runner

    try:
        message = kubeflow_runner.submit(
            args.package,
            host=args.host,
            experiment=args.experiment,
            run_name=args.run_name,
            namespace=args.namespace,
            params=_pairs(args.param, "--param"),
            service_account=args.service_account,
            dry_run=args.dry_run,
        )
    except kubeflow_runner.SubmitError as error:
        print(f"fer-pipeline: {error}", file=sys.stderr)
        return 1
    print(message)
    return 0


def run_package_command(args: argparse.Namespace) -> int:
    from pipeline import kfp_package, package_runner

    pvcs = _pairs(args.pvc, "--pvc", value_required=True)
    try:
        results = package_runner.run_package(
            args.package,
            pipeline_root=args.pipeline_root,
            backend=args.backend,
            pvc_dirs=pvcs,
            run_id=args.run_id,
        )
    except (kfp_package.PackageError, package_runner.PackageRunError, ValueError) as error:
        print(f"fer-pipeline: {error}", file=sys.stderr)
        return 1
    ran = sum(r.state == "ran" for r in results)
    print(
        f"{ran} of {len(results)} tasks ran; skipped: "
        f"{', '.join(r.task for r in results if r.state == 'skipped') or 'none'}"
    )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    # fmt: off
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="fer-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the pipeline with BeamDagRunner")
    _add_run_args(run_parser)
    run_parser.set_defaults(handler=run_command)
    compile_parser = commands.add_parser("compile", help="compile for Kubeflow Pipelines (v2)")
    _add_compile_args(compile_parser)
    compile_parser.set_defaults(handler=compile_command)
    submit_parser = commands.add_parser("submit", help="submit a compiled package with kfp")
    submit_parser.add_argument("--host", required=True, help="KFP API endpoint URL")
    submit_parser.add_argument("--package", default=DEFAULT_PACKAGE)
    submit_parser.add_argument("--experiment", default=config_lib.DEFAULT_PIPELINE_NAME)
    submit_parser.add_argument("--run-name")
    submit_parser.add_argument("--namespace")
    submit_parser.add_argument("--param", action="append", default=[], help="k=v")
    submit_parser.add_argument("--service-account",
                               help="service account of the run's pods (default: KFP's)")
    submit_parser.add_argument("--dry-run", action="store_true",
                               help="validate the package, contact no server")
    submit_parser.set_defaults(handler=submit_command)
    package_parser = commands.add_parser(
        "run-package", help="run a compiled package here as open-source KFP would "
                            "(an emulation of its driver and launcher, not KFP)")
    package_parser.add_argument("package", help="compiled package (.yaml)")
    package_parser.add_argument("--pipeline-root",
                                help="local folder (default: the package's, if local)")
    package_parser.add_argument("--backend", default="2.5",
                                help="KFP backend semantics: 2.0 (2.0-2.4), 2.5 (executor-logs "
                                "output, uuid in output URIs), 2.15 (outputFile in the "
                                "task root)")
    package_parser.add_argument("--pvc", action="append", default=[],
                                help="NAME=DIR: a PVC the package mounts, as a local folder")
    package_parser.add_argument("--run-id", help="default: a new random id")
    package_parser.set_defaults(handler=run_package_command)
    args = parser.parse_args(argv)
    return args.handler(args)
    # fmt: on


if __name__ == "__main__":
    sys.exit(main())
