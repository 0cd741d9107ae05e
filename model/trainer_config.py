"""TrainerConfig: the schema of the Trainer's custom_config, owned by the trainer.

The pipeline builds one per architecture (pipeline/config.py ``PipelineConfig.trainer_for``)
and passes it as JSON; ``model.trainer.run_fn`` reads it back. Nothing heavy here.
"""

import dataclasses
from typing import Any, Dict, Optional

DEFAULT_ARCHITECTURE = "improved"


@dataclasses.dataclass
class TrainerConfig:
    """What one Trainer needs; travels as the Trainer's custom_config (JSON).

    ``epochs``, ``batch_size``, ``learning_rate``, ``augmentation`` and
    ``test_time_augmentation`` override the
    architecture's recipe (``RECIPE`` in model/zoo/<arch>.py: optimizer, LR
    schedule, augmentation, label smoothing, early stopping) when set; None keeps the
    recipe's value.
    """

    architecture: str = DEFAULT_ARCHITECTURE
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    augmentation: Optional[bool] = None  # False: none; None/True: the recipe's
    # Test-time augmentation of the served model: None: the recipe's; False: none; True:
    # every transform model/zoo/recipe.py knows (TTA_TRANSFORMS).
    test_time_augmentation: Optional[bool] = None
    # Recipe settings replaced as a whole, applied after the fields above (keys of the
    # recipe schema, model/zoo/recipe.py; the result is validated), e.g.
    # {"lr_schedule": None, "label_smoothing": 0.0}.
    recipe_overrides: Optional[Dict[str, Any]] = None
    weights: Optional[str] = None  # None / 'imagenet' / path to a local .h5 (transfer models)
    class_weighting: str = "sqrt_balanced"  # none | balanced | sqrt_balanced (for Disgust)
    mixed_precision: str = "auto"  # auto (on when a GPU is visible) | on | off
    xla: bool = False
    shuffle_buffer: int = 10_000
    # After training, BatchNormalization statistics are recomputed exactly over this many
    # un-augmented training images, and over an eighth of them before each epoch's
    # validation (model/trainer.py); 0 keeps Keras' moving averages.
    bn_recalibration_examples: int = 8192
    seed: int = 42

    def to_custom_config(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_custom_config(cls, custom_config: Optional[Dict[str, Any]]) -> "TrainerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(custom_config or {}) - known
        if unknown:
            raise ValueError(f"unknown trainer settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**(custom_config or {}))
