"""ServingBaseline: the Evaluator's baseline is the model TF Serving serves now.

TFX's Resolver nodes (LatestBlessedModelStrategy) do not run on open-source Kubeflow
Pipelines, so the baseline comes from the one place both runners share: the serving
directory. The latest complete version there is copied into this component's Model
artifact. With nothing pushed yet, or when the served model predates the current data contract
(features.DATA_CONTRACT_VERSION: it cannot parse this run's examples), the candidate
itself becomes the baseline, so "not worse than the baseline" holds trivially and only
the absolute bound decides.
"""

import os

from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.utils import io_utils, path_utils

from components import serving_push
from fer_data import features
from model import model_metadata

SOURCE_PROPERTY = "baseline_source"
IS_CANDIDATE_PROPERTY = "is_candidate"  # 1: no served model, the candidate is its own baseline


@tfx.dsl.components.component
def ServingBaseline(
    candidate: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    baseline: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    model_base_path: tfx.dsl.components.Parameter[str],
    served_version: tfx.dsl.components.Parameter[int] = 0,
) -> None:
    """Copies the served model (or, on a first push, the candidate) into `baseline`.

    ``served_version``: as :func:`ServedModel`'s, so that a new push is a new baseline for
    a cached candidate too (TFX's Resolver would resolve a new one): a blessing against
    an older served model never decides a push."""
    version = serving_push.latest_version(model_base_path)
    if version is not None and not model_metadata.reads_current_examples(
        os.path.join(model_base_path, str(version))
    ):
        print(
            f"Served version {version} predates data contract "
            f"{features.DATA_CONTRACT_VERSION} (it parses other tf.Examples): "
            "it cannot be evaluated on this run's data"
        )
        label = f"served version {version} is not comparable: candidate compared with itself"
        source, version = path_utils.serving_model_path(candidate.uri), None
    elif version is None:
        source = path_utils.serving_model_path(candidate.uri)
        label = "none pushed yet: candidate compared with itself"
    else:
        source = os.path.join(model_base_path, str(version))
        label = f"served version {version}"
    io_utils.copy_dir(source, path_utils.serving_model_dir(baseline.uri))
    baseline.set_string_custom_property(SOURCE_PROPERTY, label)
    baseline.set_int_custom_property(IS_CANDIDATE_PROPERTY, int(version is None))
    print(f"Baseline for evaluation: {label} ({source})")


SERVED_VERSION_PROPERTY = "served_version"  # int; 0: nothing comparable is served


@tfx.dsl.components.component
def ServedModel(
    model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    model_base_path: tfx.dsl.components.Parameter[str],
    served_version: tfx.dsl.components.Parameter[int] = 0,
) -> None:
    """The model TF Serving serves now, for the Trainers' warm start (TFX's ``base_model``):
    an empty Model when nothing is served or the served model predates the data contract.

    ``served_version`` is the newest version when the pipeline was built (local runs),
    so that TFX's cache sees a new push; on Kubeflow this step mounts the serving volume
    and is never cached, and the version is read here."""
    version = serving_push.latest_version(model_base_path)
    source = os.path.join(model_base_path, str(version)) if version is not None else None
    if source is not None and not model_metadata.reads_current_examples(source):
        print(f"Served version {version} predates data contract {features.DATA_CONTRACT_VERSION}")
        source, version = None, None
    target = path_utils.serving_model_dir(model.uri)
    if source is None:
        fileio.makedirs(target)
        print("Warm start: nothing comparable is served; the Trainers start from scratch")
    else:
        io_utils.copy_dir(source, target)
        print(f"Warm start from served version {version} ({source})")
    model.set_int_custom_property(SERVED_VERSION_PROPERTY, version or 0)
