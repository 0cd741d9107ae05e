"""Every setting of the pipeline in one place.

Runners and the CLI build a :class:`PipelineConfig` (defaults below, overridden by
flags); ``pipeline.pipeline.create_pipeline`` turns it into TFX components. Components
receive the part they need: each Trainer the settings :meth:`PipelineConfig.trainer_settings`
resolves from its :class:`TrainerConfig` and the architecture's recipe (the schema is the
trainer's: model/trainer_config.py). Imports go one way: this module reads model and
components, never the reverse.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from fer_data import features
from model import trainer_config
from model.trainer_config import TrainerConfig, TrainerSettings
from model.zoo import ARCHITECTURES

DEFAULT_PIPELINE_NAME = "fer2013"
DEFAULT_MODEL_NAME = features.MODEL_NAME
# Trainer settings on the embedded synthetic faces (`make run` without --data), on top
# of each recipe: enough for every architecture to learn visibly above chance (blessed at
# min_accuracy 0.3) in minutes on 2 CPUs, robust to the seed: Adam 1e-3 can leave the plain
# CNNs at chance for 6+ epochs, vgg_bn's augmentation keeps it at chance for 3, resnet50
# learns faster at 3e-4 than at its fine-tuning 1e-4; the plain CNNs' real-data cosine LR
# and label smoothing (augmentation already off) left vgg at chance (0.181) and improved at
# 0.519 after 6 demo epochs, against 0.652 and 0.614 at a constant rate without label
# smoothing (measured: docs/RESULTS.md). At a constant rate the last epoch is not the best
# one, so these runs keep the seed's early stopping, which restores the best epoch's weights.
# improved, a plain 8-layer CNN without batch norm, first sits on the ln 7 plateau: over 6
# seeds it left it after 2 to 4 epochs, and one seed at batch 32 not within 6 (docs/RESULTS.md),
# so it gets 10.
_CONSTANT_RATE = {"lr_schedule": None, "label_smoothing": 0.0, "early_stopping_patience": 10}
SYNTHETIC_DATA_TRAINING: Dict[str, Dict[str, Any]] = {
    "improved": {"epochs": 10, "augmentation": False, "recipe_overrides": _CONSTANT_RATE},
    "vgg": {
        "epochs": 6,
        "learning_rate": 5e-4,
        "augmentation": False,
        "recipe_overrides": _CONSTANT_RATE,
    },
    "vgg_bn_small": {"epochs": 6, "augmentation": False, "recipe_overrides": _CONSTANT_RATE},
    "vgg_bn": {"epochs": 3, "augmentation": False},
    "mobilenet_v2": {"epochs": 10},
    "resnet50": {"epochs": 6, "learning_rate": 3e-4},
}


def run_paths(run_root: str) -> Dict[str, str]:
    """Where a local run under ``run_root`` keeps its pipeline root, served models and ML
    Metadata (PipelineConfig's ``pipeline_root``, ``serving_dir``, ``metadata_path``)."""
    return {
        "pipeline_root": os.path.join(run_root, "pipeline_root"),
        "serving_dir": os.path.join(run_root, "serving"),
        "metadata_path": os.path.join(run_root, "metadata.sqlite"),
    }


def per_architecture_training(trainer: TrainerConfig, quick: bool) -> Dict[str, Dict[str, Any]]:
    """Per-architecture trainer settings of a run: ``quick`` (the embedded synthetic
    faces' default, ``--training quick``), SYNTHETIC_DATA_TRAINING except what ``trainer``
    (the flags) sets for every architecture (``--epochs 3`` replaces the demo's epochs, not
    its learning rates); none for ``--training full`` (each recipe as it is)."""
    if not quick:
        return {}
    return {
        arch: {key: value for key, value in settings.items() if getattr(trainer, key) is None}
        for arch, settings in SYNTHETIC_DATA_TRAINING.items()
    }


DEFAULT_RUN_ROOT = "runs"  # relative to the working directory
# The source tree (a checkout; an editable install): schemas/ and setup.py live here.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# DirectRunner modes; "auto" picks in_memory on machines with at most this many CPUs, where
# starting worker processes costs more than they gain (full FER2013 ExampleGen -> Transform
# on 2 vCPU: 72 s in_memory vs 106 s multi_processing, docs/BENCHMARKS.md), else multi_processing.
BEAM_MODES: Tuple[str, ...] = ("auto", "in_memory", "multi_threading", "multi_processing")
IN_MEMORY_MAX_CPUS = 2


@dataclasses.dataclass
class Resources:
    """Kubernetes requests of one pipeline pod (KubeflowV2 ResourceSpec)."""

    cpu: float
    memory_gib: float
    gpus: int = 0  # nvidia.com/gpu; 0 = CPU only


# Examples of a cluster's values, not usable ones: compile refuses them (kubeflow_runner).
PLACEHOLDER_IMAGE = "REGISTRY/fer-pipeline"
PLACEHOLDER_PIPELINE_ROOT = "gs://BUCKET/pipeline_root"
PLACEHOLDER_DATA = "gs://BUCKET/data/fer2013.csv.gz"


@dataclasses.dataclass
class KubeflowConfig:
    """Compile-time settings of the Kubeflow Pipelines (v2) package."""

    image: str = PLACEHOLDER_IMAGE
    pipeline_root: str = PLACEHOLDER_PIPELINE_ROOT
    serving_dir: str = "/models"  # the PVC shared with TF Serving (kubernetes/base)
    serving_pvc: Optional[str] = "fer-models"  # mounted at serving_dir; None for gs:// etc.
    # The clients' request-log volume (kubernetes/README.md "Request logs"), mounted at
    # PipelineConfig.request_logs in ServingSkewCheck; None for gs:// or no request logs.
    request_logs_pvc: Optional[str] = None
    schema_dir: str = "/pipeline/schemas"  # where the Dockerfile puts schemas/ in the image
    data_path: str = PLACEHOLDER_DATA
    beam_runner: str = "DirectRunner"
    beam_extra_args: Tuple[str, ...] = ()
    trainer: Resources = dataclasses.field(
        default_factory=lambda: Resources(cpu=8, memory_gib=32, gpus=1)
    )
    beam_step: Resources = dataclasses.field(
        default_factory=lambda: Resources(cpu=4, memory_gib=16)
    )
    default_step: Resources = dataclasses.field(
        default_factory=lambda: Resources(cpu=1, memory_gib=4)
    )


@dataclasses.dataclass
class PipelineConfig:
    """The whole pipeline: data, thresholds, training, paths, Beam."""

    data_path: str
    pipeline_root: str = os.path.join(DEFAULT_RUN_ROOT, "pipeline_root")
    serving_dir: str = os.path.join(DEFAULT_RUN_ROOT, "serving")
    metadata_path: str = os.path.join(DEFAULT_RUN_ROOT, "metadata.sqlite")
    pipeline_name: str = DEFAULT_PIPELINE_NAME
    model_name: str = DEFAULT_MODEL_NAME
    schema_dir: str = os.path.join(PROJECT_ROOT, "schemas")
    # Ingest
    max_quarantine_fraction: float = 0.01
    unassigned_split_buckets: Tuple[int, int, int] = (8, 1, 1)  # train/eval/test, rows w/o Usage
    allow_anomalies: bool = False
    # Data quality policy: overrides of components/fer2013_example_gen/quality.Policy
    # (e.g. {"dedupe_train": False}); {} is the safe default policy.
    quality_policy: Dict[str, bool] = dataclasses.field(default_factory=dict)
    # Train even when the train split drifted from the previous run's (DriftCheck), and
    # make this run's statistics the new reference.
    allow_drift: bool = False
    # Train even when this data was already trained on with these settings (Kubeflow's
    # NewDataCheck, components/training_ledger.py); locally --no-cache implies it.
    retrain: bool = False
    # Training, blessing, selection
    architectures: Tuple[str, ...] = ARCHITECTURES  # each trains in its own Trainer
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)  # shared overrides
    # Start each Trainer from the served model's weights when it is of the same
    # architecture (TFX's base_model; components/baseline.py ServedModel).
    warm_start: bool = False
    # Per-architecture overrides on top of `trainer`, e.g. {"resnet50": {"epochs": 5}}.
    per_architecture: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)
    min_accuracy: float = 0.3
    selection_metric: str = "accuracy"  # one of fer_data/features.py SELECTION_METRICS
    # With two or more architectures, one more candidate averages the blessed ones
    # (components/ensemble.py).
    ensemble: bool = True
    # Serving skew before training (components/serving_skew_check.py): the folder of the
    # clients' request logs (client/request_log.py; as the pods see it on Kubeflow, where
    # it is the pipeline parameter 'request_logs'). None (or ''): no such step, the graph is as
    # without it. It informs; with stop_on_skew, skew stops the run before Transform.
    request_logs: Optional[str] = None
    stop_on_skew: bool = False
    # Beam
    beam_direct_running_mode: str = "auto"  # one of BEAM_MODES
    beam_num_workers: int = 0  # 0 = one per CPU (in_memory: always one)
    enable_cache: bool = True

    def trainer_for(self, architecture: str) -> TrainerConfig:
        """The Trainer config of one architecture: shared overrides, then its own."""
        return dataclasses.replace(
            self.trainer, architecture=architecture, **self.per_architecture.get(architecture, {})
        )

    def trainer_settings(self, architecture: str) -> TrainerSettings:
        """What the architecture's Trainer trains with: its recipe, with
        :meth:`trainer_for`'s overrides applied (reads the architecture's module)."""
        return trainer_config.resolve(self.trainer_for(architecture))

    @property
    def statistics_baseline_dir(self) -> str:
        """Where each run's train statistics are kept for the next run's drift check:
        beside the served models, the one place local and Kubeflow runs share."""
        return os.path.join(self.serving_dir, "statistics", self.pipeline_name)

    @property
    def training_ledger_dir(self) -> str:
        """Where Kubeflow runs record what they trained on (components/training_ledger.py),
        beside the served models like the statistics reference."""
        return os.path.join(self.serving_dir, "ledger", self.pipeline_name)

    @property
    def model_serving_dir(self) -> str:
        """TF Serving's model base path: <serving-dir>/<model-name>."""
        return os.path.join(self.serving_dir, self.model_name)

    def beam_pipeline_args(self, cpus: Optional[int] = None) -> List[str]:
        """DirectRunner flags; ``cpus`` (default: this machine's) resolves the "auto" mode.

        ``in_memory`` runs its workers as threads of one process, so it gets one worker:
        more only split the bundles under one GIL (Beam warns so). On the real file, 2
        vCPU, in-process: ExampleGen 25.1 s with two vs 19.2 s with one; StatisticsGen
        faster in two of three noisy paired runs (docs/BENCHMARKS.md).
        ``beam_num_workers`` applies to the other modes.

        ``--setup_file`` names this project as the workers' dependency. Without a
        dependency flag TFX builds an sdist of itself for every Beam step, to stage for
        remote workers (tfx/utils/dependency_utils.py make_beam_dependency_flags): 1.2 s
        and 49 MB left in the temp dir each time, never deleted. The DirectRunner stages
        nothing (its workers run this Python), so here the flag only stops that build."""
        mode = direct_running_mode(self.beam_direct_running_mode, cpus)
        workers = 1 if mode == "in_memory" else self.beam_num_workers
        return [
            f"--direct_running_mode={mode}",
            f"--direct_num_workers={workers}",
            f"--setup_file={os.path.join(PROJECT_ROOT, 'setup.py')}",
        ]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def direct_running_mode(setting: str, cpus: Optional[int] = None) -> str:
    """The DirectRunner mode for a BEAM_MODES ``setting`` on a machine with ``cpus`` CPUs."""
    if setting not in BEAM_MODES:
        raise ValueError(f"beam mode must be one of {', '.join(BEAM_MODES)}, got {setting!r}")
    if setting != "auto":
        return setting
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    return "in_memory" if cpus <= IN_MEMORY_MAX_CPUS else "multi_processing"
