"""A Trainer's fixed cost with and without AutoGraph converting tf_keras' internals.

    python -m bench.trainer_startup [--architecture vgg_bn_small] [--epochs 3] [--rows 800]

Runs the pipeline up to Transform on generated faces once, then the Trainer's ``run_fn``
twice on that Transform output, each in a fresh interpreter: as the Trainer runs it
(model/keras_autograph.py: tf_keras is not converted), and with AutoGraph converting
tf_keras as TensorFlow does by default. Prints ``run_fn``'s wall time, the first and the
later epochs' times and the training losses of both (the same losses: the rule changes
how the step is traced, not what it computes).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from bench import common

MODES = ("tf_keras not converted (the Trainer's)", "tf_keras converted (TF's default)")


def _transform_output(path: str, rows: int) -> Tuple[str, str]:
    """Runs the pipeline up to Transform on ``rows`` generated faces: the folders of
    ExampleGen's examples and of the Transform graph."""
    from components import node_ids
    from fer_data import synthetic_faces
    from pipeline.config import PipelineConfig, run_paths
    from pipeline.local import runner

    data = synthetic_faces.write_csv(os.path.join(path, "faces.csv"), num_rows=rows, seed=1)
    config = PipelineConfig(data_path=data, **run_paths(os.path.join(path, "runs")))
    runner.run(config, last_node=node_ids.TRANSFORM)
    [examples] = glob.glob(os.path.join(config.pipeline_root, "Fer2013ExampleGen", "examples", "*"))
    [graph] = glob.glob(os.path.join(config.pipeline_root, "Transform", "transform_graph", "*"))
    return examples, graph


def child(
    examples: str, transform_graph: str, architecture: str, epochs: int, convert: bool
) -> None:
    """In the fresh interpreter: one ``run_fn``; prints its timings as JSON."""
    import tf_keras
    from tfx import v1 as tfx

    from model import keras_autograph, trainer
    from pipeline import config as config_lib

    if convert:  # what TensorFlow does without the project's rule
        keras_autograph.skip_keras_internals = lambda: None
    config = config_lib.PipelineConfig(  # the embedded default's quick settings
        data_path=config_lib.PLACEHOLDER_DATA,
        per_architecture=config_lib.per_architecture_training(
            config_lib.TrainerConfig(), quick=True
        ),
    )
    settings = config.trainer_settings(architecture)
    custom_config = settings.to_custom_config()
    custom_config["recipe"]["epochs"] = epochs
    epoch_seconds: List[float] = []

    class Timer(tf_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.started)

    fit = tf_keras.Model.fit

    def timed_fit(model, *args, callbacks=None, **kwargs):
        return fit(model, *args, callbacks=[*(callbacks or []), Timer()], **kwargs)

    tf_keras.Model.fit = timed_fit
    out = tempfile.mkdtemp(prefix="fer-bench-trainer-")
    started = time.perf_counter()
    trainer.run_fn(
        tfx.components.FnArgs(
            train_files=[os.path.join(examples, "Split-train", "*")],
            eval_files=[os.path.join(examples, "Split-eval", "*")],
            transform_output=transform_graph,
            serving_model_dir=os.path.join(out, "serving"),
            model_run_dir=os.path.join(out, "run"),
            custom_config=custom_config,
        )
    )
    seconds = time.perf_counter() - started
    from model import model_metadata

    history = model_metadata.read(os.path.join(out, "serving"))["history"]
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"run_fn_s": seconds, "epochs_s": epoch_seconds, "loss": history["loss"]}))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", default="vgg_bn_small")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--results", default=common.DEFAULT_RESULTS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # examples graph convert
    args = parser.parse_args(argv)
    if args.child:
        examples, graph, convert = args.child
        child(examples, graph, args.architecture, args.epochs, convert == "1")
        return 0

    work = tempfile.mkdtemp(prefix="fer-bench-trainer-startup-")
    try:
        examples, graph = _transform_output(work, args.rows)
        rows: List[Dict[str, Any]] = []
        for mode, convert in zip(MODES, ("0", "1")):
            found = subprocess.run(
                [sys.executable, "-m", "bench.trainer_startup", "--child", examples, graph]
                + [convert, "--architecture", args.architecture, "--epochs", str(args.epochs)],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(found.stdout.strip().splitlines()[-1])
            epochs = result["epochs_s"]
            rows.append(
                {
                    "mode": mode,
                    "run_fn s": result["run_fn_s"],
                    "first epoch s": epochs[0],
                    "later epochs s (mean)": sum(epochs[1:]) / max(len(epochs) - 1, 1),
                    "losses": " ".join(f"{loss:.4f}" for loss in result["loss"]),
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.architecture}, {args.epochs} epochs on {args.rows} generated faces\n")
    columns = ["mode", "run_fn s", "first epoch s", "later epochs s (mean)", "losses"]
    print(common.markdown_table(rows, columns))
    common.append_results(
        args.results,
        "trainer_startup",
        rows,
        {"architecture": args.architecture, "epochs": args.epochs, "faces": args.rows},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
