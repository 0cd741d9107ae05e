"""Imports go one way: data layer (fer_data) -> components -> pipeline / serving; bench and
tests outside. Every import in the source is read (module level and function-local alike)."""

import ast
import os
from typing import Iterator, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT_PACKAGES = {"fer_data", "components", "pipeline", "serving", "client", "bench", "tests"}
# package -> the project packages it may import (beyond itself); serving (the dev server)
# and client form the serving layer: the server shares the client's TensorProto codec.
ALLOWED = {
    "fer_data": set(),
    "components": {"fer_data"},
    "serving": {"fer_data", "client"},
    "client": {"fer_data"},
    "pipeline": {"components", "fer_data"},
}
# What the serving layer may use of the data layer: the data contract; the client also
# reads fer2013 CSV files as inputs.
SERVING_LAYER_DATA = {
    "serving": ("fer_data.features",),
    "client": ("fer_data.features", "fer_data.fer2013_csv"),
}


def imports(package: str) -> Iterator[Tuple[str, int, str]]:
    """(file, line, imported module) for every import in a package's source."""
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            tree = ast.parse(open(path).read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        yield path, node.lineno, alias.name
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    for alias in node.names:  # "from components import features"
                        yield path, node.lineno, f"{node.module}.{alias.name}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_upward_or_sideways_imports(package):
    wrong = [
        f"{os.path.relpath(path, ROOT)}:{line} imports {module}"
        for path, line, module in imports(package)
        if module.split(".")[0] in PROJECT_PACKAGES - {package} - ALLOWED[package]
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(SERVING_LAYER_DATA))
def test_serving_layer_uses_only_the_data_contract(package):
    allowed = SERVING_LAYER_DATA[package]
    wrong = [
        f"{os.path.relpath(path, ROOT)}:{line} imports {module}"
        for path, line, module in imports(package)
        if module.split(".")[0] == "fer_data" and not module.startswith(allowed)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_function_local_imports(tmp_path, monkeypatch):
    """The contract test can fail: a function-local upward import is found."""
    package = tmp_path / "components"
    package.mkdir()
    (package / "bad.py").write_text("def f():\n    from pipeline import config\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", str(tmp_path))
    found = [module for _, _, module in imports("components")]
    assert found == ["pipeline.config"]
