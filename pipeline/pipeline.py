"""create_pipeline(config): the ONE definition that the local and Kubeflow runners use.

fer2013 CSV -> Fer2013ExampleGen (+quarantine, data quality policy) -> StatisticsGen ->
ImportSchemaGen -> ExampleValidator and DriftCheck (vs the previous run's statistics) ->
DataValidationGate -> Transform -> per architecture: Trainer_<arch> ->
ServingBaseline_<arch> -> Evaluator_<arch>; EnsembleBuilder (the blessed candidates
averaged) -> ServingBaseline_ensemble -> Evaluator_ensemble; then ModelSelector (best blessed) ->
Evaluator_test (PrivateTest once: as published and leakage-free) and, when blessed, AtomicPusher ->
<serving-dir>/<model-name>/<version>/; Report (HTML + PNGs) over all of it.
"""

import contextlib
import json
import os
from typing import Dict, List, Optional

from tfx import v1 as tfx
from tfx.dsl.components.base import base_node
from tfx.dsl.experimental.conditionals import conditional

from components import (
    evaluation,
    exec_properties,
    node_ids,
    serving_push,
    serving_skew_check,
    training_ledger,
)
from components.baseline import ServedModel, ServingBaseline
from components.data_validation_gate import DataValidationGate
from components.drift_check import DriftCheck
from components.ensemble import ENSEMBLE, EnsembleBuilder
from components.fer2013_example_gen import Fer2013ExampleGen, unassigned_rows_output_config
from components.fer2013_example_gen.quality import Policy
from components.model_selection import ModelSelector
from components.report.component import ReportComponent
from components.serving_push import AtomicPusher
from components.serving_skew_check import ServingSkewCheck
from components.trainer_component import Trainer
from pipeline import code_fingerprint, parameters
from pipeline.config import PROJECT_ROOT, PipelineConfig

TRANSFORM_FN = "model.transform.preprocessing_fn"
RUN_FN = "model.trainer.run_fn"
# Set by the KFP driver from 2.5 on (driver/resolve.go resolveInputParameter).
KFP_RUN_ID = "{{$.pipeline_job_uuid}}"


def create_components(config: PipelineConfig, kubeflow: bool = False) -> List[base_node.BaseNode]:
    """All nodes of the pipeline, wired; shared by create_pipeline and the tests.

    ``kubeflow``: for open-source Kubeflow Pipelines, where no TFX driver or cache sees
    the input files: the run-time settings become pipeline parameters, and NewDataCheck
    (components/training_ledger.py) skips the rest of the run on data already trained on.
    Locally TFX's ExampleGen driver and cache do that.
    """
    params = parameters.for_pipeline(config, runtime=kubeflow)
    example_gen = Fer2013ExampleGen(
        data_path=config.data_path,
        data_pattern=params["data"],
        max_quarantine_fraction=config.max_quarantine_fraction,
        output_config=unassigned_rows_output_config(*config.unassigned_split_buckets),
        quality_policy=Policy(**config.quality_policy),
    ).with_id(node_ids.EXAMPLE_GEN)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file(config)).with_id(
        node_ids.SCHEMA_GEN
    )
    head: List[base_node.BaseNode] = [example_gen]
    decision = None
    if kubeflow:
        new_data = training_ledger.NewDataCheck(
            examples=example_gen.outputs["examples"],
            ledger_dir=config.training_ledger_dir,
            settings=package_settings(config),
            epochs=params["epochs"],
            min_accuracy=params["min_accuracy"],
            allow_drift=params["allow_drift"],
            retrain=params["retrain"],
        ).with_id(node_ids.NEW_DATA_CHECK)
        head.append(new_data)
        decision = new_data.outputs["decision"]
        gate_on_new_data = conditional.Cond(
            decision.future()[0].custom_property(training_ledger.TRAIN_PROPERTY) == 1
        )
    # Locally TFX caches ServedModel and ServingBaseline by their exec properties: the
    # version served now is one, so a push is a new baseline and a new warm start (on
    # Kubeflow both read the volume in uncached pods).
    served_version = 0 if kubeflow else (serving_push.latest_version(config.model_serving_dir) or 0)
    with gate_on_new_data if kubeflow else contextlib.nullcontext():
        nodes = _training_nodes(config, params, example_gen, schema_gen, decision, served_version)
    for node in nodes:
        if isinstance(node, AtomicPusher):
            exec_properties.add(node, pipeline_name=config.pipeline_name)
            if kubeflow:
                exec_properties.add(node, run_id=KFP_RUN_ID, ledger_dir=config.training_ledger_dir)
        if node.id == node_ids.SERVING_SKEW_CHECK and not kubeflow and config.request_logs:
            # TFX's local cache sees a new push or new logs (a KFP pod always reruns).
            exec_properties.add(
                node,
                logs_state=serving_skew_check.logs_state(
                    config.request_logs, config.model_serving_dir
                ),
            )
    components = head + nodes[:1] + [schema_gen] + nodes[1:]
    for node in components:
        node_ids.traits(node.id)  # a node the runners know what to do with
    code_fingerprint.attach(
        components,
        roots={node_ids.model_node(arch): [f"model.zoo.{arch}"] for arch in config.architectures},
        files={schema_gen.id: [schema_gen.exec_properties["schema_file"]]}
        if os.path.exists(schema_gen.exec_properties["schema_file"])
        else {schema_gen.id: [os.path.join(PROJECT_ROOT, "schemas", SCHEMA_FILE)]},
    )
    return components


SCHEMA_FILE = "schema.pbtxt"


def schema_file(config: PipelineConfig) -> str:
    return os.path.join(config.schema_dir, SCHEMA_FILE)


def package_settings(config: PipelineConfig) -> str:
    """What a compiled package trains with besides its data and run-time parameters: the
    code the image holds (its fingerprint) and the compiled configuration (JSON)."""
    settings = json.loads(config.to_json())
    # Not what is trained: the run-time parameters, the serving skew check's settings.
    skew_check = ("request_logs", "stop_on_skew")
    for field in ("data_path", "min_accuracy", "allow_drift", "retrain", *skew_check):
        settings.pop(field, None)
    settings["trainer"].pop("epochs", None)
    return json.dumps(
        {"code": code_fingerprint.tree_fingerprint(), "config": settings}, sort_keys=True
    )


def _training_nodes(
    config: PipelineConfig,
    params: Dict,
    example_gen: base_node.BaseNode,
    schema_gen: base_node.BaseNode,
    decision,
    served_version: int,
) -> List[base_node.BaseNode]:
    """Everything after ingest: validation, Transform, (with ``warm_start``) the served
    model, Trainers, evaluation, selection, push and report (StatisticsGen first)."""
    statistics_gen = tfx.components.StatisticsGen(  # the schema: pixels are image bytes
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"]
    ).with_id(node_ids.STATISTICS_GEN)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    ).with_id(node_ids.EXAMPLE_VALIDATOR)
    drift_check = DriftCheck(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        baseline_dir=config.statistics_baseline_dir,
        accept_drift=params["allow_drift"],
    ).with_id(node_ids.DRIFT_CHECK)
    gate = DataValidationGate(
        anomalies=example_validator.outputs["anomalies"],
        schema=schema_gen.outputs["schema"],
        drift=drift_check.outputs["anomalies"],
        allow_anomalies=int(config.allow_anomalies),
        allow_drift=params["allow_drift"],
    ).with_id(node_ids.VALIDATION_GATE)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=TRANSFORM_FN,
        # StatisticsGen has the raw statistics; post-transform statistics of 2,304 floats
        # per image would be computed and never read.
        disable_statistics=True,
        # The Trainers apply the Transform graph to ExampleGen's examples themselves
        # (model/trainer.py), so Transform runs only its analyzers: writing 35,887 float
        # images (~330 MB through gzip) cost more than the rest of ingest (BENCHMARKS.md).
        materialize=False,
    ).with_id(node_ids.TRANSFORM)
    transform.add_upstream_node(gate)  # no training on data that failed validation
    checks: List[base_node.BaseNode] = [example_validator, drift_check]
    if config.request_logs:
        checks.append(_serving_skew_check(config, params, transform))

    def evaluate(candidate: str, model: base_node.BaseNode) -> List[base_node.BaseNode]:
        """ServingBaseline_<candidate> and Evaluator_<candidate> (eval split, blessing)."""
        baseline = ServingBaseline(
            candidate=model.outputs["model"],
            model_base_path=config.model_serving_dir,
            served_version=served_version,
        ).with_id(node_ids.serving_baseline(candidate))
        evaluators[candidate] = exec_properties.add(
            evaluation.Evaluator(
                examples=example_gen.outputs["examples"],
                example_splits=["eval"],
                model=model.outputs["model"],
                baseline_model=baseline.outputs["baseline"],
                eval_config=evaluation.make_eval_config(config.min_accuracy),
            ).with_id(node_ids.evaluator(candidate)),
            min_accuracy=params["min_accuracy"],
        )
        return [model, baseline, evaluators[candidate]]

    trainers, evaluators, nodes = {}, {}, []
    served = None
    if config.warm_start:
        served = ServedModel(
            model_base_path=config.model_serving_dir, served_version=served_version
        ).with_id(node_ids.SERVED_MODEL)
        nodes.append(served)
    for arch in config.architectures:
        trainers[arch] = exec_properties.add(
            Trainer(
                run_fn=RUN_FN,
                examples=example_gen.outputs["examples"],
                transform_graph=transform.outputs["transform_graph"],
                schema=schema_gen.outputs["schema"],
                custom_config=config.trainer_settings(arch).to_custom_config(),
                base_model=served.outputs["model"] if served is not None else None,
            ).with_id(node_ids.trainer(arch)),
            epochs=params["epochs"],
        )
        nodes += evaluate(arch, trainers[arch])
    if config.ensemble and len(config.architectures) > 1:
        trainers[ENSEMBLE] = EnsembleBuilder(list(config.architectures), trainers, evaluators)
        nodes += evaluate(ENSEMBLE, trainers[ENSEMBLE])
    candidates = list(trainers)  # every architecture, and the ensemble

    selector = ModelSelector(
        candidates,
        trainers,
        evaluators,
        examples=example_gen.outputs["examples"],
        metric=config.selection_metric,
        decision=decision,
        statistics=statistics_gen.outputs["statistics"],
    )
    # PrivateTest, measured once, for the selected model only.
    test_evaluator = evaluation.Evaluator(
        examples=example_gen.outputs["examples"],
        example_splits=["test"],
        model=selector.outputs["model"],
        eval_config=evaluation.make_eval_config(min_accuracy=None, slice_by_seen_in_train=True),
    ).with_id(node_ids.EVALUATOR_TEST)
    # TFX's Pusher pushes only a blessed model (the selector blesses only a blessed winner);
    # it runs either way, to record the run (lineage, Kubeflow's training ledger).
    pusher = AtomicPusher(
        model=selector.outputs["model"],
        model_blessing=selector.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.model_serving_dir)
        ),
    ).with_id(node_ids.PUSHER)
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
        statistics_gen,
        *checks,
        gate,
        transform,
        *nodes,
        selector,
        test_evaluator,
        pusher,
        report,
    ]


def _serving_skew_check(
    config: PipelineConfig, params: Dict, transform: base_node.BaseNode
) -> base_node.BaseNode:
    """ServingSkewCheck on the request logs written since the served version's push. It
    informs; with ``stop_on_skew`` it runs before Transform and skew stops the run."""
    node = ServingSkewCheck(
        request_logs=params["request_logs"],
        model_base_path=config.model_serving_dir,
        stop_on_skew=int(config.stop_on_skew),
    ).with_id(node_ids.SERVING_SKEW_CHECK)
    if config.stop_on_skew:
        transform.add_upstream_node(node)
    return node


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config=None,
    beam_pipeline_args: Optional[List[str]] = None,
    last_node: Optional[str] = None,
    kubeflow: bool = False,
) -> tfx.dsl.Pipeline:
    """The FER2013 pipeline for any TFX runner (Kubeflow brings its own metadata and Beam).

    ``last_node`` (a node id, e.g. "Transform") keeps only the nodes up to it, for
    benchmarks of the data steps; the default is the whole pipeline.
    """
    components = create_components(config, kubeflow=kubeflow)
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
