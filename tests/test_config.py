"""Pipeline configuration: the DirectRunner mode picked for the machine."""
import pytest

from pipeline.config import PipelineConfig, direct_running_mode


@pytest.mark.parametrize("cpus, mode", [(1, "in_memory"), (2, "in_memory"),
                                        (4, "multi_processing"), (16, "multi_processing")])
def test_auto_mode_follows_the_cpu_count(cpus, mode):
    assert direct_running_mode("auto", cpus) == mode
    assert f"--direct_running_mode={mode}" in PipelineConfig("faces.csv").beam_pipeline_args(cpus)


def test_an_explicit_mode_is_kept_on_any_machine():
    config = PipelineConfig("faces.csv", beam_direct_running_mode="multi_threading",
                            beam_num_workers=3)
    assert config.beam_pipeline_args(cpus=2) == ["--direct_running_mode=multi_threading",
                                                 "--direct_num_workers=3"]


def test_an_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="beam mode must be one of auto, in_memory"):
        PipelineConfig("faces.csv", beam_direct_running_mode="multiprocessing").beam_pipeline_args()
