"""fer-pipeline: run the pipeline locally (compile/submit for Kubeflow live in kubeflow_runner)."""
import argparse
import json
import logging
import os
import sys
from typing import List, Optional

from pipeline import config as config_lib

DEFAULT_SYNTHETIC_ROWS = 2100


def _default_data(run_root: str) -> str:
    """The embedded default: synthetic fer2013 faces, generated once per run root."""
    from pipeline import synthetic_faces

    path = os.path.join(run_root, "data", "synthetic_fer2013.csv")
    if not os.path.exists(path):
        synthetic_faces.write_csv(path, num_rows=DEFAULT_SYNTHETIC_ROWS, seed=0)
        print(f"No --data given: wrote {DEFAULT_SYNTHETIC_ROWS} synthetic faces to {path}")
    return path


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    defaults = config_lib.TrainerConfig()
    parser.add_argument("--data", help="fer2013 CSV (.csv or .csv.gz); default: synthetic faces")
    parser.add_argument("--run-root", default=config_lib.DEFAULT_RUN_ROOT,
                        help="where pipeline root, metadata and serving dir go by default")
    parser.add_argument("--pipeline-root", help="default: <run-root>/pipeline_root")
    parser.add_argument("--serving-dir", help="default: <run-root>/serving")
    parser.add_argument("--metadata-path", help="SQLite MLMD; default: <run-root>/metadata.sqlite")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--architecture", default=defaults.architecture)
    parser.add_argument("--min-accuracy", type=float, default=0.3,
                        help="absolute eval-accuracy bound for blessing")
    parser.add_argument("--max-quarantine-fraction", type=float, default=0.01)
    parser.add_argument("--allow-anomalies", action="store_true",
                        help="experts: train even when data validation finds anomalies")
    parser.add_argument("--no-cache", action="store_true", help="rerun every step")
    parser.add_argument("--beam-mode", default="multi_processing",
                        choices=["in_memory", "multi_threading", "multi_processing"])
    parser.add_argument("--summary-json", help="also write the run summary here")


def config_from_args(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """Flags -> PipelineConfig (the only place flags meet configuration)."""
    run_root = args.run_root
    trainer = config_lib.TrainerConfig(architecture=args.architecture, epochs=args.epochs,
                                       batch_size=args.batch_size)
    return config_lib.PipelineConfig(
        data_path=args.data or _default_data(run_root),
        pipeline_root=args.pipeline_root or os.path.join(run_root, "pipeline_root"),
        serving_dir=args.serving_dir or os.path.join(run_root, "serving"),
        metadata_path=args.metadata_path or os.path.join(run_root, "metadata.sqlite"),
        max_quarantine_fraction=args.max_quarantine_fraction,
        allow_anomalies=args.allow_anomalies,
        trainer=trainer,
        min_accuracy=args.min_accuracy,
        beam_direct_running_mode=args.beam_mode,
        enable_cache=not args.no_cache)


def _known_failure(error: BaseException) -> Optional[str]:
    """The readable message of a data/validation failure, however deeply Beam wrapped it."""
    from components.data_validation_gate import DataValidationError
    from components.fer2013_example_gen.csv_rows import CsvHeaderError
    from components.fer2013_example_gen.executor import QuarantineBoundExceeded

    names = [cls.__name__ for cls in (DataValidationError, QuarantineBoundExceeded,
                                      CsvHeaderError, FileNotFoundError)]
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
    from pipeline import local_runner

    config = config_from_args(args)
    try:
        summary = local_runner.run(config, summary_json=args.summary_json)
    except Exception as error:  # pylint: disable=broad-except
        message = _known_failure(error)
        if message is None:
            raise
        print(f"fer-pipeline: run failed: {message}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    if summary.get("pushed"):
        print(f"Pushed model: {summary['pushed_path']}")
    else:
        print("No model was pushed (not blessed): see the eval metrics above.")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="fer-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the pipeline with BeamDagRunner")
    _add_run_args(run_parser)
    run_parser.set_defaults(handler=run_command)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
