"""`fer-pipeline run` output: node lines on the console, everything else in the log file."""

import os
import subprocess
import sys

from pipeline import cli

SCRIPT = """
import logging, os, subprocess, sys
from pipeline.local import run_log
logging.basicConfig(level=logging.INFO)  # as fer-pipeline does
with run_log.output_to_log(sys.argv[1]) as console:
    print("python stdout")
    os.write(2, b"C++ stderr\\n")
    subprocess.run([sys.executable, "-c", "import sys; print('child says hi', file=sys.stderr)"],
                   check=True)
    console.write("for the person\\n")
    logging.getLogger("model.zoo").warning("weights fell back")
    logging.getLogger("tensorflow").warning("noise")
assert "FER_CONSOLE_FD" not in os.environ
print("after")
"""


def test_output_to_log_sends_file_descriptors_1_and_2_and_children_to_the_file(tmp_path):
    path = str(tmp_path / "logs" / "run.log")
    shown = subprocess.run(
        [sys.executable, "-c", SCRIPT, path],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert shown.stdout.splitlines() == [
        "for the person",
        "        WARNING weights fell back",
        "after",
    ]  # "after": the descriptors are restored
    assert shown.stderr == ""
    log = open(path).read()
    for line in ("python stdout", "C++ stderr", "child says hi", "noise"):
        assert line in log, line


def test_a_failing_run_says_why_in_one_line_and_keeps_the_traceback_in_the_log(tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("label,image\n0,1 2 3\n")  # not the fer2013 header
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--data",
            str(data),
            "--run-root",
            str(tmp_path / "runs"),
            "--architectures",
            "improved",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},
    )
    assert result.returncode == cli.DATA_REJECTED, result.stderr[-3000:]
    out_lines = result.stdout.splitlines()
    assert out_lines[0].startswith("Full log of this run: ")
    log = out_lines[0].split(": ", 1)[1]
    assert any("Fer2013ExampleGen" in line and "FAILED" in line for line in out_lines), (
        result.stdout
    )
    assert len(out_lines) < 10, result.stdout  # no TF/Beam/TFX log on the console
    assert "run failed (data rejected): CsvHeaderError" in result.stderr and log in result.stderr
    assert len(result.stderr.splitlines()) == 2, result.stderr
    assert "Traceback" in open(log).read()
