"""Training speed: the Trainer's input path against a seed-style in-memory ``fit``.

    python -m bench.training --data ../shared/data/fer2013.csv.gz --architectures improved,vgg

For each architecture, the same model (random init), batch size and number of steps:
(a) the pipeline's path — ``model.trainer.load_examples`` + ``batches`` over the
Transform output (gzipped TFRecords, tft-normalised), and (b) the seed's path — Keras
``fit`` on numpy arrays parsed from the CSV and scaled by 1/255. Two epochs of ``--steps``
steps each; images/s is measured on the second (the first builds graphs and caches).
The Transform output comes from running the pipeline up to Transform under ``--run-root``
(cached after the first time).
"""

import argparse
import os
import sys
from typing import Dict, List, Tuple

import numpy as np

from bench import common
from fer_data import features, fer2013_csv


def training_arrays(path: str, limit: int) -> Tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` Training rows as ([N,48,48,1] float32 / 255, labels)."""
    labels: List[int] = []
    fields: List[str] = []
    with fer2013_csv.open_text(path) as handle:
        handle.readline()
        for line in handle:
            emotion, pixels, usage = line.rstrip("\r\n").split(",")
            if usage == fer2013_csv.TRAINING:
                labels.append(int(emotion))
                fields.append(pixels)
                if len(labels) == limit:
                    break
    images = np.fromstring(" ".join(fields), dtype=np.uint8, sep=" ")
    return (
        images.reshape((-1,) + features.IMAGE_SHAPE).astype(np.float32) / 255.0,
        np.array(labels, dtype=np.int64),
    )


def transform_outputs(data: str, run_root: str) -> Tuple[str, str]:
    """(train split glob of ExampleGen's examples, transform graph dir), via the pipeline."""
    from tfx.types import artifact_utils

    from components import node_ids
    from pipeline.config import PipelineConfig, run_paths
    from pipeline.local import run_summary
    from pipeline.local import runner as local_runner

    config = PipelineConfig(data_path=os.path.abspath(data), **run_paths(run_root))
    local_runner.run(config, last_node=node_ids.TRANSFORM)
    outputs = run_summary.latest_run_outputs(
        run_summary.open_store(config.metadata_path), config.pipeline_name
    )
    examples = outputs[node_ids.EXAMPLE_GEN]["examples"][-1]
    split_names = artifact_utils.decode_split_names(examples.properties["split_names"].string_value)
    if "train" not in split_names:
        raise SystemExit(f"bench: ExampleGen output has no train split ({split_names})")
    graph = outputs[node_ids.TRANSFORM]["transform_graph"][-1].uri
    return os.path.join(examples.uri, "Split-train", "*"), graph


def _compiled(architecture: str):
    import tf_keras

    from model import zoo

    model, _ = zoo.build_model(architecture, weights=None)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(1e-3),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model


def images_per_second(architecture: str, fit_input: Dict, images: int) -> float:
    from model.trainer import EpochTimer

    timer = EpochTimer()
    _compiled(architecture).fit(epochs=2, callbacks=[timer], verbose=0, **fit_input)
    return images / timer.seconds[-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="fer2013 CSV (.csv or .csv.gz)")
    parser.add_argument("--architectures", default="improved,vgg")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100, help="steps per measured epoch")
    parser.add_argument(
        "--run-root",
        default="runs/bench",
        help="pipeline root/metadata for the Transform output (cached)",
    )
    parser.add_argument("--results", default=common.DEFAULT_RESULTS)
    args = parser.parse_args(argv)

    import tensorflow as tf
    import tensorflow_transform as tft

    from model import trainer

    images = args.steps * args.batch_size
    train_glob, graph_dir = transform_outputs(args.data, args.run_root)
    pipeline_data = trainer.batches(
        trainer.load_examples([train_glob], tft.TFTransformOutput(graph_dir)).take(images),
        args.batch_size,
        shuffle_buffer=images,
    )
    x, y = training_arrays(args.data, images)
    if len(y) < images:
        raise SystemExit(f"bench: only {len(y)} Training rows, need {images}")
    rows = []
    for architecture in [a.strip() for a in args.architectures.split(",") if a.strip()]:
        pipeline_rate = images_per_second(architecture, {"x": pipeline_data}, images)
        seed_rate = images_per_second(
            architecture, {"x": x, "y": y, "batch_size": args.batch_size, "shuffle": True}, images
        )
        rows.append(
            {
                "architecture": architecture,
                "batch": args.batch_size,
                "steps": args.steps,
                "pipeline input, images/s": pipeline_rate,
                "seed numpy fit, images/s": seed_rate,
                "pipeline / seed": pipeline_rate / seed_rate,
            }
        )
        print(
            f"{architecture}: pipeline {pipeline_rate:,.0f} images/s, "
            f"numpy fit {seed_rate:,.0f} images/s",
            flush=True,
        )
    gpus = tf.config.list_physical_devices("GPU")
    print(f"\nTraining throughput, {'GPU ' + str(gpus) if gpus else 'CPU only'}\n")
    print(common.markdown_table(rows, list(rows[0]) if rows else ["architecture"]))
    common.append_results(args.results, "training", rows, {"data": args.data})
    return 0


if __name__ == "__main__":
    sys.exit(main())
