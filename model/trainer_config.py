"""What a Trainer trains with: asked for (:class:`TrainerConfig`), then resolved
(:class:`TrainerSettings`, the schema of the Trainer's custom_config).

The pipeline's configuration holds a TrainerConfig per architecture (pipeline/config.py
``PipelineConfig.trainer_for``): the flags' and the demo's overrides of the
architecture's recipe. When the pipeline is built, :func:`resolve` applies them to the
recipe (``RECIPE`` in model/zoo/<arch>.py) once; the resulting TrainerSettings is the
Trainer's custom_config, so ML Metadata records every value the Trainer uses (epochs,
batch size, learning rate, schedule, augmentation, test-time augmentation, ...), and
``model.trainer.run_fn`` only reads it. The one run-time change is the ``epochs``
pipeline parameter (:meth:`TrainerSettings.with_epochs`, components/trainer_component.py).

Light: the registry and the recipe schema are pure Python; reading an architecture's
recipe (in :func:`resolve`) imports its module, and with it tf_keras.
"""

import dataclasses
from typing import Any, Dict, Optional

from model import zoo
from model.zoo import recipe as recipe_lib

DEFAULT_ARCHITECTURE = "improved"
CLASS_WEIGHTINGS = ("none", "balanced", "sqrt_balanced")
MIXED_PRECISION = ("auto", "on", "off")


@dataclasses.dataclass(kw_only=True)
class RunSettings:
    """How a Trainer runs, beside its recipe: the same before and after resolution."""

    weights: Optional[str] = None  # None / 'imagenet' / path to a local .h5 (transfer models)
    class_weighting: str = "sqrt_balanced"  # one of CLASS_WEIGHTINGS (for Disgust)
    mixed_precision: str = "auto"  # one of MIXED_PRECISION; auto: on when a GPU is visible
    xla: bool = False
    shuffle_buffer: int = 10_000
    # After training, BatchNormalization statistics are recomputed exactly over this many
    # un-augmented training images, and over an eighth of them before each epoch's
    # validation (model/trainer.py); 0 keeps Keras' moving averages.
    bn_recalibration_examples: int = 8192
    seed: int = 42


@dataclasses.dataclass(kw_only=True)
class TrainerConfig(RunSettings):
    """What the flags (and the demo's settings) ask of one Trainer.

    ``epochs``, ``batch_size``, ``learning_rate``, ``augmentation`` and
    ``test_time_augmentation`` override the architecture's recipe (optimizer, LR
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


@dataclasses.dataclass(kw_only=True)
class TrainerSettings(RunSettings):
    """Everything one Trainer trains with, resolved; travels as its custom_config (JSON)."""

    architecture: str
    recipe: Dict[str, Any]  # the full recipe (schema: model/zoo/recipe.py)

    def __post_init__(self) -> None:
        recipe_lib.validate_recipe(self.recipe, self.architecture)
        for name, value, allowed in (
            ("class_weighting", self.class_weighting, CLASS_WEIGHTINGS),
            ("mixed_precision", self.mixed_precision, MIXED_PRECISION),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")

    def to_custom_config(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_custom_config(cls, custom_config: Optional[Dict[str, Any]]) -> "TrainerSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        given = set(custom_config or {})
        unknown, missing = given - known, {"architecture", "recipe"} - given
        if unknown or missing:
            raise ValueError(
                f"not resolved trainer settings: unknown {sorted(unknown)}, missing "
                f"{sorted(missing)}; known: {sorted(known)}"
            )
        return cls(**(custom_config or {}))

    def with_epochs(self, epochs: int) -> "TrainerSettings":
        """These settings with the recipe's epochs replaced (the run-time override)."""
        return dataclasses.replace(self, recipe={**self.recipe, "epochs": epochs})


def resolve(config: TrainerConfig) -> TrainerSettings:
    """The settings a Trainer trains with: the architecture's recipe with the config's
    overrides applied, and the config's run settings. Raises ValueError for an unknown
    architecture, recipe key or setting."""
    recipe = zoo.get_recipe(config.architecture)
    for key in ("epochs", "batch_size", "learning_rate"):
        if getattr(config, key) is not None:
            recipe[key] = getattr(config, key)
    if config.augmentation is False:
        recipe["augmentation"] = dict(recipe_lib.NO_AUGMENTATION)
    if config.test_time_augmentation is not None:
        recipe["test_time_augmentation"] = (
            list(recipe_lib.TTA_TRANSFORMS) if config.test_time_augmentation else []
        )
    overrides = config.recipe_overrides or {}
    unknown = set(overrides) - recipe_lib.RECIPE_KEYS
    if unknown:
        raise ValueError(
            f"recipe_overrides: unknown recipe keys {sorted(unknown)}; "
            f"known: {sorted(recipe_lib.RECIPE_KEYS)}"
        )
    recipe.update(overrides)
    recipe_lib.validate_recipe(recipe, f"{config.architecture} with recipe_overrides")
    run = {f.name: getattr(config, f.name) for f in dataclasses.fields(RunSettings)}
    return TrainerSettings(architecture=config.architecture, recipe=recipe, **run)
