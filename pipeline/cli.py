"""fer-pipeline: run locally (BeamDagRunner), compile for / submit to Kubeflow Pipelines,
run a compiled package here, trace a served model back to its run, and check what it
serves against what it trained on (skew).

``fer-pipeline run`` is also what a cron job calls; its exit code says what happened
(:data:`EXIT_CODES`).
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

from components import node_ids
from fer_data import features
from model import zoo
from pipeline import config as config_lib

DEFAULTS = config_lib.PipelineConfig  # the flags' defaults are the configuration's
DEFAULT_PACKAGE = "fer_pipeline.yaml"  # what compile writes and submit reads

# Exit codes of `fer-pipeline run` (and of the others where they apply).
PUSHED = 0  # a new version is served
FAILED = 1  # the run (or the command) failed; the message says why
NOT_PUSHED = 3  # trained and evaluated; no candidate blessed and better than the served one
NOTHING_NEW = 4  # no new span: every Trainer was cached, nothing trained or pushed
DRIFT_STOP = 5  # the new span drifted from the previous one: stopped before training
DATA_REJECTED = 6  # the data failed validation (schema, quarantine bound, unreadable file)
SKEW = 7  # `skew`: the served images' statistics are skewed from the training data's
OK = PUSHED  # 0: the commands that push nothing succeeded
EXIT_CODES = {
    PUSHED: "pushed",
    FAILED: "failed",
    NOT_PUSHED: "not pushed (nothing blessed or better than the served model)",
    NOTHING_NEW: "nothing new (no new span: nothing trained)",
    DRIFT_STOP: "drift stop",
    DATA_REJECTED: "data rejected",
    SKEW: "skew (served images unlike the training data: `skew`, `run --stop-on-skew`)",
}


def _default_data(run_root: str) -> str:
    """The embedded default: synthetic fer2013 faces, generated once per run root."""
    from fer_data import synthetic_faces

    path = os.path.join(run_root, "data", "synthetic_fer2013.csv")
    if not os.path.exists(path):
        synthetic_faces.write_csv(path, seed=0)
        print(f"No --data given: wrote {synthetic_faces.DEFAULT_ROWS} synthetic faces to {path}")
    return path


def _architectures(text: str) -> Tuple[str, ...]:
    """'all' or comma-separated architecture names."""
    if text.strip() == "all":
        return config_lib.ARCHITECTURES
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = set(names) - set(config_lib.ARCHITECTURES)
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown architecture(s) {sorted(unknown)}; choose from "
            f"{','.join(config_lib.ARCHITECTURES)}"
        )
    return names


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
        "keep blank frames (the schema still flags them: validation stops the run unless "
        "--allow-anomalies is given too)",
    ),
)


def _add_pipeline_args(
    parser: argparse.ArgumentParser,
    data_help: str,
    architectures: Tuple[str, ...],
    package: bool,
) -> None:
    """What a local run and a compiled package share: data, training, blessing, policy.
    ``package``: the flags are `compile`'s, where some set a pipeline parameter's default."""
    default = "all" if architectures == config_lib.ARCHITECTURES else ",".join(architectures)

    def parameter(name: str) -> str:
        """What a flag also is in a package: the default of a run-time parameter."""
        return f"; the default of the pipeline parameter '{name}'" if package else ""

    # fmt: off
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--architectures", type=_architectures, default=architectures,
                        help=f"comma-separated, each in its own Trainer, or 'all' (default: "
                        f"{default}; all: {','.join(config_lib.ARCHITECTURES)})")
    parser.add_argument("--training", choices=("quick", "full"),
                        help="quick: short constant-rate settings that learn in minutes on a "
                        "CPU (the embedded default's); full: each architecture's recipe "
                        + ("(default: full)" if package
                           else "(default: quick without --data, full with it)"))
    parser.add_argument("--warm-start", action="store_true",
                        help="start each Trainer from the served model's weights when it is "
                        "of the same architecture (TFX's base_model)")
    parser.add_argument("--epochs", type=int,
                        help=f"override every recipe's epochs{parameter('epochs')}")
    parser.add_argument("--batch-size", type=int, help="override every recipe's batch size")
    parser.add_argument("--learning-rate", type=float, help="override every recipe's LR")
    parser.add_argument("--weights", help="transfer backbones: imagenet or a .h5 file the "
                                          "Trainer can read (default: random init)")
    parser.add_argument("--test-time-augmentation", choices=("on", "off"),
                        help="serve every model with (on: mirror image and 2-px shifts) or without "
                        "(off) test-time augmentation (default: each recipe's)")
    parser.add_argument("--min-accuracy", type=float, default=DEFAULTS.min_accuracy,
                        help="absolute eval-accuracy bound for blessing"
                        f"{parameter('min_accuracy')}")
    parser.add_argument("--no-ensemble", dest="ensemble", action="store_false",
                        help="no ensemble candidate (the blessed architectures averaged)")
    parser.add_argument("--selection-metric", default=DEFAULTS.selection_metric,
                        choices=features.SELECTION_METRICS,
                        help="how ModelSelector ranks the blessed candidates on eval")
    parser.add_argument("--allow-drift", action="store_true",
                        help="train even when the new data drifted from the previous span's "
                        f"statistics, and make it the new reference{parameter('allow_drift')}")
    parser.add_argument("--request-logs", metavar="DIR",
                        help="request logs (fer-client --log-requests DIR; gs:// too"
                        + ("; as the pods see it" if package else "")
                        + "): before training, compare the faces served since the last push "
                        "with the served model's training data (ServingSkewCheck; it informs, "
                        f"it does not stop training){parameter('request_logs')}")
    parser.add_argument("--stop-on-skew", action="store_true",
                        help=f"with --request-logs: stop the run before Transform on serving "
                        f"skew (exit code {SKEW})")
    parser.add_argument("--allow-anomalies", action="store_true",
                        help="experts: train even when data validation finds anomalies")
    parser.add_argument("--max-quarantine-fraction", type=float,
                        default=DEFAULTS.max_quarantine_fraction,
                        help="the share of unusable rows (malformed or blank) above which "
                        "the data is rejected (default: %(default)s)")
    quality = parser.add_argument_group(
        "data quality policy (default: the safe one; dropped rows are kept in the quarantine)")
    for flag, setting, what in _QUALITY_FLAGS:
        quality.add_argument(flag, dest=setting, action="store_false", default=True, help=what)
    # fmt: on


DATA_PATTERN_HELP = (
    "fer2013 CSV (.csv or .csv.gz) or a pattern of them; '{SPAN}' in it picks the newest "
    "span, e.g. 'incoming/span-{SPAN}/*.csv'"
)
# Set by each verb's parser: the PipelineConfig fields of that verb's own flags.
VERB_SETTINGS = "verb_settings"


def config_from_args(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """Flags -> PipelineConfig: the one path for `run` and `compile`. The flags both verbs
    share (data, training, blessing, data policy), then the fields of the verb's own flags
    (``_run_settings``, ``_compile_settings``)."""
    quick = args.training == "quick" if args.training else not args.data
    for flag, needs in (
        ("stop_on_skew", "--stop-on-skew"),
        ("request_logs_pvc", "--request-logs-pvc"),
    ):
        if getattr(args, flag, None) and not args.request_logs:
            raise SystemExit(f"fer-pipeline: {needs} needs --request-logs")
    trainer = config_lib.TrainerConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weights=args.weights,
        test_time_augmentation={"on": True, "off": False, None: None}[args.test_time_augmentation],
    )
    return config_lib.PipelineConfig(
        max_quarantine_fraction=args.max_quarantine_fraction,
        allow_anomalies=args.allow_anomalies,
        quality_policy={s: False for _, s, _ in _QUALITY_FLAGS if not getattr(args, s)},
        allow_drift=args.allow_drift,
        architectures=args.architectures,
        trainer=trainer,
        warm_start=args.warm_start,
        per_architecture=config_lib.per_architecture_training(trainer, quick=quick),
        min_accuracy=args.min_accuracy,
        selection_metric=args.selection_metric,
        ensemble=args.ensemble,
        request_logs=args.request_logs,
        stop_on_skew=args.stop_on_skew,
        **getattr(args, VERB_SETTINGS)(args),
    )


def _run_settings(args: argparse.Namespace) -> Dict[str, Any]:
    """A local run's: its data (default: the embedded faces), where it keeps things, Beam."""
    paths = config_lib.run_paths(args.run_root)
    return dict(
        data_path=args.data or _default_data(args.run_root),
        pipeline_root=args.pipeline_root or paths["pipeline_root"],
        serving_dir=args.serving_dir or paths["serving_dir"],
        metadata_path=args.metadata_path or paths["metadata_path"],
        beam_direct_running_mode=args.beam_mode,
        enable_cache=not args.no_cache,
    )


def _compile_settings(args: argparse.Namespace) -> Dict[str, Any]:
    """A package's: the defaults of its 'data' and 'retrain' parameters. Where the pods
    find things (pipeline root, serving dir, schema) is the cluster's: :func:`_cluster`,
    applied by the Kubeflow compiler."""
    return dict(data_path=args.data, retrain=args.retrain)


def _failure(error: BaseException) -> Tuple[int, Optional[str]]:
    """(exit code, readable message) of a known data failure, however deeply Beam or a node
    process wrapped it; (FAILED, None) for anything else."""
    known = {
        "DataDriftError": DRIFT_STOP,
        "DataValidationError": DATA_REJECTED,
        "QuarantineBoundExceeded": DATA_REJECTED,
        "CsvHeaderError": DATA_REJECTED,
        "CorruptInputError": DATA_REJECTED,
        "FileNotFoundError": FAILED,
        "ServingSkewError": SKEW,
    }
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if type(error).__name__ in known:
            return known[type(error).__name__], f"{type(error).__name__}: {error}"
        text = str(error)
        for name, code in known.items():
            if f"{name}: " in text:
                detail = text.split(f"{name}: ", 1)[1].split("\n [while running")[0]
                return code, f"{name}: {detail}"
        error = error.__cause__ or error.__context__
    return FAILED, None


def outcome(summary: dict) -> int:
    """The exit code of a run that completed: pushed, nothing new, or not pushed."""
    cached = set(summary.get("cached_nodes", []))
    trainers = [n for n in summary.get("node_seconds", {}) if node_ids.kind(n) == node_ids.TRAINER]
    if summary.get("pushed") and node_ids.PUSHER not in cached:
        return PUSHED
    if trainers and all(n in cached for n in trainers):
        return NOTHING_NEW
    return NOT_PUSHED


def run_command(args: argparse.Namespace) -> int:
    from pipeline import fork_server
    from pipeline.local import run_log  # light: the log takes over before TensorFlow is imported

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
                # The heavy nodes' server imports while this process builds the run.
                fork_server.start()
                from pipeline.local import runner as local_runner

                summary = local_runner.run(config, summary_json, console=console)
            except Exception:
                if not args.verbose:
                    logging.exception("The run failed")  # the traceback, into the log
                raise
    except Exception as error:  # pylint: disable=broad-except
        code, message = _failure(error)
        if message is None:
            if args.verbose:
                raise
            message = f"{type(error).__name__}: {str(error).strip()[:500]}"
        print(f"fer-pipeline: run failed ({EXIT_CODES[code]}): {message}", file=sys.stderr)
        if not args.verbose:
            print(f"fer-pipeline: the traceback is in {log}", file=sys.stderr)
        return code
    code = outcome(summary)
    print(f"Summary (JSON): {summary_json}")
    if summary.get("report"):
        print(f"Report: {summary['report']}")
    data = (summary.get("ingest") or {}).get("data") or {}
    if data.get("span") is not None:
        print(
            f"Data: span {data['span']}"
            + (f" version {data['version']}" if data.get("version") is not None else "")
            + f", files fingerprint {data.get('input_fingerprint')}"
        )
    print(
        {
            PUSHED: f"Pushed model: {summary.get('pushed_path')}",
            NOTHING_NEW: "Nothing new: every Trainer was cached (same data, settings and "
            "code as an earlier run); nothing was trained or pushed.",
            NOT_PUSHED: "No model was pushed (none blessed, or not better than the served "
            "one): see the eval accuracy below.",
        }[code]
    )
    if summary.get("serving_skew"):
        print(f"Serving skew check: {summary['serving_skew']['message']}")
    print(format_table(summary))
    print(f"Outcome: {EXIT_CODES[code]} (exit code {code})")
    return code


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


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    # fmt: off
    _add_pipeline_args(
        parser,
        DATA_PATTERN_HELP + "; default: the embedded synthetic faces",
        zoo.CPU_ARCHITECTURES,
        package=False,
    )
    parser.set_defaults(**{VERB_SETTINGS: _run_settings})
    parser.add_argument("--run-root", default=config_lib.DEFAULT_RUN_ROOT,
                        help="where pipeline root, metadata and serving dir go by default")
    parser.add_argument("--pipeline-root", help="default: <run-root>/pipeline_root")
    parser.add_argument("--serving-dir", help="default: <run-root>/serving")
    parser.add_argument("--metadata-path", help="SQLite MLMD; default: <run-root>/metadata.sqlite")
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


def _add_compile_args(parser: argparse.ArgumentParser) -> None:
    # fmt: off
    defaults = config_lib.KubeflowConfig()
    _add_pipeline_args(parser, DATA_PATTERN_HELP + "; as the pods see it (gs://...). The "
                       "default of the pipeline parameter 'data'", config_lib.ARCHITECTURES,
                       package=True)
    parser.set_defaults(**{VERB_SETTINGS: _compile_settings})
    parser.add_argument("--output", default=DEFAULT_PACKAGE, help="KFP package (.yaml)")
    parser.add_argument("--image", required=True,
                        help="the image of this tree (see Dockerfile, `make image`); without a "
                        "tag, the tag is the code's fingerprint: REGISTRY/fer-pipeline -> "
                        "REGISTRY/fer-pipeline:code-<12 hex>")
    parser.add_argument("--pipeline-root", required=True,
                        help="where the runs' artifacts go: a store TensorFlow writes (gs://...)")
    parser.add_argument("--serving-dir", default=defaults.serving_dir,
                        help="volume/URI shared with TF Serving (kubernetes/)")
    parser.add_argument("--serving-pvc", default=defaults.serving_pvc,
                        help="PVC mounted at --serving-dir in the steps that use it; "
                        "'' for none (e.g. a gs:// serving dir)")
    parser.add_argument("--schema-dir", default=defaults.schema_dir,
                        help="folder of schema.pbtxt as the pods see it (the image's)")
    parser.add_argument("--beam-runner", default=defaults.beam_runner,
                        choices=["DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner"],
                        help="the Beam steps' runner (default: %(default)s, inside each pod)")
    parser.add_argument("--beam-arg", action="append", default=[],
                        help="extra Beam flag for the Beam steps, e.g. --beam-arg=--project=P")
    parser.add_argument("--request-logs-pvc",
                        help="PVC mounted at --request-logs in ServingSkewCheck (the clients' "
                        "request-log volume, kubernetes/README.md); none for a gs:// folder")
    parser.add_argument("--trainer-gpus", type=int, default=defaults.trainer.gpus,
                        help="nvidia.com/gpu per Trainer pod (0: CPU-only clusters)")
    parser.add_argument("--retrain", action="store_true",
                        help="default of the pipeline parameter 'retrain': train even on data "
                        "already trained on with the same settings")
    # fmt: on


def _cluster(args: argparse.Namespace, image: str) -> config_lib.KubeflowConfig:
    """`compile`'s cluster flags -> KubeflowConfig: the image, where the pods find things,
    Beam, and the Trainer pods' GPUs."""
    defaults = config_lib.KubeflowConfig()
    return config_lib.KubeflowConfig(
        image=image,
        pipeline_root=args.pipeline_root,
        serving_dir=args.serving_dir,
        serving_pvc=args.serving_pvc or None,
        request_logs_pvc=args.request_logs_pvc or None,
        schema_dir=args.schema_dir,
        data_path=args.data,
        beam_runner=args.beam_runner,
        beam_extra_args=tuple(args.beam_arg),
        trainer=dataclasses.replace(defaults.trainer, gpus=args.trainer_gpus),
    )


def compile_command(args: argparse.Namespace) -> int:
    from pipeline.kubeflow import kfp_package
    from pipeline.kubeflow import runner as kubeflow_runner

    if not args.data:
        print(
            "fer-pipeline: compile needs --data: the input as the pods see it (the default of "
            "the pipeline parameter 'data'; `submit --param data=...` changes it per run)",
            file=sys.stderr,
        )
        return FAILED
    kubeflow = _cluster(args, kubeflow_runner.image_reference(args.image))
    try:
        path = kubeflow_runner.compile_pipeline(config_from_args(args), kubeflow, args.output)
    except (kfp_package.PackageError, ValueError) as error:
        print(f"fer-pipeline: {error}", file=sys.stderr)
        return FAILED
    print(f"Compiled {path} for image {kubeflow.image}")
    return PUSHED


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
    from pipeline.kubeflow import runner as kubeflow_runner

    token = None
    if args.token_file:
        try:
            with open(args.token_file) as handle:
                token = handle.read().strip()
        except OSError as error:
            print(f"fer-pipeline: cannot read --token-file: {error}", file=sys.stderr)
            return FAILED
    request = kubeflow_runner.Submission(
        package=args.package,
        host=args.host,
        experiment=args.experiment,
        run_name=args.run_name,
        namespace=args.namespace,
        params=_pairs(args.param, "--param"),
        service_account=args.service_account,
        schedule=args.schedule,
        wait=args.wait,
        timeout_seconds=args.timeout,
        token=token,
    )
    try:
        message, succeeded = kubeflow_runner.submit(request, dry_run=args.dry_run)
    except kubeflow_runner.SubmitError as error:
        print(f"fer-pipeline: {error}", file=sys.stderr)
        return FAILED
    print(message)
    return PUSHED if succeeded else FAILED


def _typed(text: str):
    """A --param value of run-package: a JSON number/bool if it parses as one, else text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool)) else text


def run_package_command(args: argparse.Namespace) -> int:
    from pipeline.kubeflow import kfp_package, package_runner

    pvcs = _pairs(args.pvc, "--pvc", value_required=True)
    try:
        results = package_runner.run_package(
            args.package,
            pipeline_root=args.pipeline_root,
            backend=args.backend,
            pvc_dirs=pvcs,
            run_id=args.run_id,
            parameters={k: _typed(v) for k, v in _pairs(args.param, "--param").items()},
        )
    except (kfp_package.PackageError, package_runner.PackageRunError, ValueError) as error:
        print(f"fer-pipeline: {error}", file=sys.stderr)
        return FAILED
    ran = sum(r.state == "ran" for r in results)
    print(
        f"{ran} of {len(results)} tasks ran; skipped: "
        f"{', '.join(r.task for r in results if r.state == 'skipped') or 'none'}"
    )
    return PUSHED


def lineage_command(args: argparse.Namespace) -> int:
    from pipeline import model_lineage

    try:
        print(
            model_lineage.describe(
                args.model_base_path, args.version, args.metadata_path, as_json=args.json
            )
        )
    except (LookupError, FileNotFoundError, ValueError) as error:
        print(f"fer-pipeline: {error}", file=sys.stderr)
        return FAILED
    return PUSHED


def skew_command(args: argparse.Namespace) -> int:
    """Request logs vs the served model's training statistics (components/serving_skew.py)."""
    from components import serving_skew

    try:
        result = serving_skew.check(args.logs, args.model_base_path)
    except serving_skew.SkewCheckError as error:
        print(f"fer-pipeline: skew: {error}", file=sys.stderr)
        return FAILED
    print(serving_skew.summary(result))
    if args.report:
        print(f"Report: {serving_skew.write_report(result, args.report)}")
    return SKEW if result.skewed else OK


def main(argv: Optional[List[str]] = None) -> int:
    # fmt: off
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(
        prog="fer-pipeline", description=__doc__,
        epilog="exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()),
    )
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
    submit_parser.add_argument("--namespace", help="the profile namespace (multi-user Kubeflow)")
    submit_parser.add_argument("--param", action="append", default=[],
                               help="NAME=VALUE of a pipeline parameter (checked against the "
                               "package before anything is sent)")
    submit_parser.add_argument("--service-account",
                               help="service account of the run's pods (default: KFP's)")
    submit_parser.add_argument("--schedule", metavar="CRON",
                               help="create a recurring run instead: KFP's 6-field cron, "
                               "seconds first, e.g. '0 0 2 * * *' (02:00 daily)")
    submit_parser.add_argument("--wait", action="store_true",
                               help="follow the run to its end; exit 1 unless it succeeded")
    submit_parser.add_argument("--timeout", type=int, default=24 * 3600,
                               help="seconds --wait waits (default: a day)")
    submit_parser.add_argument("--token-file",
                               help="bearer token for a multi-user endpoint (default: the "
                               "kfp client's in-cluster service-account token, if any)")
    submit_parser.add_argument("--dry-run", action="store_true",
                               help="check the package and parameters, print what would be "
                               "created, contact no server")
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
    package_parser.add_argument("--param", action="append", default=[],
                                help="NAME=VALUE of a pipeline parameter (numbers as JSON)")
    package_parser.add_argument("--run-id", help="default: a new random id")
    package_parser.set_defaults(handler=run_package_command)
    lineage_parser = commands.add_parser(
        "lineage", help="where a served version came from: its run, data, code, evaluation "
                        "and, with the run's ML Metadata, the executions and artifacts")
    lineage_parser.add_argument("--model-base-path",
                                default=os.path.join(config_lib.DEFAULT_RUN_ROOT, "serving",
                                                     config_lib.DEFAULT_MODEL_NAME),
                                help="TF Serving's model base path (<serving-dir>/<model>)")
    lineage_parser.add_argument("--version", type=int, help="default: the newest")
    lineage_parser.add_argument("--metadata-path",
                                default=os.path.join(config_lib.DEFAULT_RUN_ROOT,
                                                     "metadata.sqlite"),
                                help="the SQLite ML Metadata of local runs")
    lineage_parser.add_argument("--json", action="store_true")
    lineage_parser.set_defaults(handler=lineage_command)
    skew_parser = commands.add_parser(
        "skew", help="training/serving skew: the per-image statistics of logged requests "
                     f"against the served model's training statistics (exit {SKEW} on skew)")
    skew_parser.add_argument("--logs", required=True, metavar="DIR",
                             help="request logs (fer-client --log-requests DIR; gs:// too)")
    skew_parser.add_argument("--model-base-path", default=lineage_parser.get_default(
                                 "model_base_path"),
                             help="TF Serving's model base path: its newest version's lineage "
                                  "names the training statistics")
    skew_parser.add_argument("--report", metavar="OUT_DIR",
                             help="write index.html with the distributions side by side")
    skew_parser.set_defaults(handler=skew_command)
    args = parser.parse_args(argv)
    return args.handler(args)
    # fmt: on


if __name__ == "__main__":
    sys.exit(main())
