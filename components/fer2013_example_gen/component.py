"""Fer2013ExampleGen: a file-based TFX ExampleGen for the fer2013 CSV layout.

It subclasses FileBasedExampleGen so that TFX's file-based driver (input fingerprint,
span/version, caching) and the KubeflowV2 compiler treat it like any ExampleGen, and
adds a second output: the quarantine of malformed rows.
"""

from typing import Optional, Union

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2
from tfx.types import channel, component_spec, standard_artifacts
from tfx.types.standard_component_specs import FileBasedExampleGenSpec

from components.artifacts import QuarantinedRows
from components.fer2013_example_gen import executor, quality
from fer_data import features


class Fer2013ExampleGenSpec(FileBasedExampleGenSpec):
    """FileBasedExampleGenSpec + the quarantine output and its bound."""

    PARAMETERS = {
        **FileBasedExampleGenSpec.PARAMETERS,
        executor.MAX_QUARANTINE_FRACTION_KEY: component_spec.ExecutionParameter(type=float),
        executor.QUALITY_POLICY_KEY: component_spec.ExecutionParameter(type=str),
        executor.DATA_PATTERN_KEY: component_spec.ExecutionParameter(type=str),
    }
    OUTPUTS = {
        **FileBasedExampleGenSpec.OUTPUTS,
        executor.QUARANTINE_KEY: component_spec.ChannelParameter(type=QuarantinedRows),
    }


def unassigned_rows_output_config(
    train: int = 8, eval_: int = 1, test: int = 1
) -> example_gen_pb2.Output:
    """Hash buckets for rows that carry no Usage value (split names are fixed)."""
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=weight)
                for name, weight in zip(features.SPLITS, (train, eval_, test))
            ]
        )
    )


class Fer2013ExampleGen(FileBasedExampleGen):
    """Ingests a fer2013 CSV (plain or .gz): splits by Usage, quarantines bad rows,
    applies the data quality policy (duplicates, leakage, conflicting labels, blanks).

    Args:
      data_path: the CSV file or a pattern of files (local path or a URI TFX's filesystem
        layer reads); ``{SPAN}`` (and ``{VERSION}``) in it select the newest span, as in
        any TFX file-based ExampleGen.
      data_pattern: what the executor reads where no TFX driver resolved ``data_path``
        (open-source Kubeflow): the same, or the run-time parameter that carries it.
      max_quarantine_fraction: the run fails when more than this fraction of the
        rows is malformed or blank (default 1 %).
      output_config: hash buckets for rows without Usage (default 8:1:1).
      quality_policy: what each split keeps (default: quality.Policy()).
    """

    SPEC_CLASS = Fer2013ExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        data_path: str,
        data_pattern: Optional[Union[str, data_types.RuntimeParameter]] = None,
        max_quarantine_fraction: float = 0.01,
        output_config: Optional[example_gen_pb2.Output] = None,
        quality_policy: Optional[quality.Policy] = None,
    ):
        if not 0.0 <= max_quarantine_fraction <= 1.0:
            raise ValueError(
                f"max_quarantine_fraction must be in [0, 1], got {max_quarantine_fraction}"
            )
        input_base, pattern = executor.split_pattern(data_path)
        spec = Fer2013ExampleGenSpec(
            input_base=input_base,
            input_config=example_gen_pb2.Input(
                splits=[example_gen_pb2.Input.Split(name=executor.INPUT_SPLIT, pattern=pattern)]
            ),
            data_pattern=data_path if data_pattern is None else data_pattern,
            output_config=output_config or unassigned_rows_output_config(),
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            max_quarantine_fraction=max_quarantine_fraction,
            quality_policy=(quality_policy or quality.Policy()).to_json(),
            examples=channel.Channel(type=standard_artifacts.Examples),
            quarantine=channel.Channel(type=QuarantinedRows),
        )
        # Skip FileBasedExampleGen.__init__ (it builds its own spec without quarantine).
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
