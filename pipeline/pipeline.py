"""create_pipeline(config): the ONE definition that the local and Kubeflow runners use.

fer2013 CSV -> Fer2013ExampleGen (+quarantine, data quality policy) -> StatisticsGen ->
ImportSchemaGen -> ExampleValidator and DriftCheck (vs the previous run's statistics) ->
DataValidationGate -> Transform -> per architecture: Trainer_<arch> ->
ServingBaseline_<arch> -> Evaluator_<arch>; EnsembleBuilder (the blessed candidates
averaged) -> ServingBaseline_ensemble -> Evaluator_ensemble; then ModelSelector (best blessed) ->
Evaluator_test (PrivateTest once: as published and leakage-free) and, when blessed, AtomicPusher ->
<serving-dir>/<model-name>/<version>/; Report (HTML + PNGs) over all of it.
"""

import os
from typing import List, Optional

from tfx import v1 as tfx
from tfx.dsl.components.base import base_node
from tfx.dsl.experimental.conditionals import conditional

from components import evaluation, node_ids
from components.baseline import ServingBaseline
from components.data_validation_gate import DataValidationGate
from components.drift_check import DriftCheck
from components.ensemble import ENSEMBLE, EnsembleBuilder
from components.fer2013_example_gen import Fer2013ExampleGen, unassigned_rows_output_config
from components.fer2013_example_gen.quality import Policy
from components.model_selection import ModelSelector
from components.report.component import ReportComponent
from components.serving_push import AtomicPusher
from pipeline.config import PipelineConfig

TRANSFORM_FN = "components.transform.preprocessing_fn"
RUN_FN = "components.trainer.run_fn"


def create_components(config: PipelineConfig) -> List[base_node.BaseNode]:
    """All nodes of the pipeline, wired; shared by create_pipeline and the tests."""
    example_gen = Fer2013ExampleGen(
        data_path=config.data_path,
        max_quarantine_fraction=config.max_quarantine_fraction,
        output_config=unassigned_rows_output_config(*config.unassigned_split_buckets),
        quality_policy=Policy(**config.quality_policy),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=os.path.join(config.schema_dir, "schema.pbtxt")
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    drift_check = DriftCheck(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        baseline_dir=config.statistics_baseline_dir,
        accept_drift=int(config.allow_drift),
    )
    gate = DataValidationGate(
        anomalies=example_validator.outputs["anomalies"],
        schema=schema_gen.outputs["schema"],
        drift=drift_check.outputs["anomalies"],
        allow_anomalies=int(config.allow_anomalies),
        allow_drift=int(config.allow_drift),
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=TRANSFORM_FN,
        # StatisticsGen has the raw statistics; post-transform statistics of 2,304 floats
        # per image would be computed and never read.
        disable_statistics=True,
    )
    transform.add_upstream_node(gate)  # no training on data that failed validation

    def evaluate(candidate: str, model: base_node.BaseNode) -> List[base_node.BaseNode]:
        """ServingBaseline_<candidate> and Evaluator_<candidate> (eval split, blessing)."""
        baseline = ServingBaseline(
            candidate=model.outputs["model"], model_base_path=config.model_serving_dir
        ).with_id(node_ids.serving_baseline(candidate))
        evaluators[candidate] = evaluation.Evaluator(
            examples=example_gen.outputs["examples"],
            example_splits=["eval"],
            model=model.outputs["model"],
            baseline_model=baseline.outputs["baseline"],
            eval_config=evaluation.make_eval_config(config.min_accuracy),
        ).with_id(node_ids.evaluator(candidate))
        return [model, baseline, evaluators[candidate]]

    trainers, evaluators, nodes = {}, {}, []
    for arch in config.architectures:
        trainers[arch] = tfx.components.Trainer(
            run_fn=RUN_FN,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            custom_config=config.trainer_for(arch).to_custom_config(),
        ).with_id(node_ids.model_node(arch))
        nodes += evaluate(arch, trainers[arch])
    if config.ensemble and len(config.architectures) > 1:
        trainers[ENSEMBLE] = EnsembleBuilder(list(config.architectures), trainers, evaluators)
        nodes += evaluate(ENSEMBLE, trainers[ENSEMBLE])
    candidates = list(trainers)  # every architecture, and the ensemble

    selector = ModelSelector(candidates, trainers, evaluators, metric=config.selection_metric)
    # PrivateTest, measured once, for the selected model only.
    test_evaluator = evaluation.Evaluator(
        examples=example_gen.outputs["examples"],
        example_splits=["test"],
        model=selector.outputs["model"],
        eval_config=evaluation.make_eval_config(min_accuracy=None, slice_by_seen_in_train=True),
    ).with_id("Evaluator_test")
    with conditional.Cond(selector.outputs["blessing"].future()[0].custom_property("blessed") == 1):
        pusher = AtomicPusher(
            model=selector.outputs["model"],
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(
                    base_directory=config.model_serving_dir
                )
            ),
        )
    report = ReportComponent(
        candidates,
        example_gen,
        example_validator,
        schema_gen,
        trainers,
        evaluators,
        selector,
        test_evaluator,
    )
    return [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        drift_check,
        gate,
        transform,
        *nodes,
        selector,
        test_evaluator,
        pusher,
        report,
    ]


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config=None,
    beam_pipeline_args: Optional[List[str]] = None,
    last_node: Optional[str] = None,
) -> tfx.dsl.Pipeline:
    """The FER2013 pipeline for any TFX runner (Kubeflow brings its own metadata and Beam).

    ``last_node`` (a node id, e.g. "Transform") keeps only the nodes up to it, for
    benchmarks of the data steps; the default is the whole pipeline.
    """
    components = create_components(config)
    if last_node is not None:
        ids = [c.id for c in components]
        if last_node not in ids:
            raise ValueError(f"no node {last_node!r} in the pipeline; nodes: {ids}")
        components = components[: ids.index(last_node) + 1]
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=(
            config.beam_pipeline_args() if beam_pipeline_args is None else beam_pipeline_args
        ),
    )
