"""Imports go one way: data layer (fer_data) -> model (what runs inside Transform and the
Trainers, and what is served) -> components (the custom TFX components) -> pipeline; the
serving layer (serving, client) beside; bench and tests outside. Every import in the
source is read (module level and function-local alike)."""

import ast
import os
from typing import Iterator, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT_PACKAGES = {
    "fer_data",
    "model",
    "components",
    "pipeline",
    "serving",
    "client",
    "bench",
    "tests",
}
# package -> the project packages it may import (beyond itself); serving (the dev server)
# and client form the serving layer: the server shares the client's TensorProto codec and
# its request log.
ALLOWED = {
    "fer_data": set(),
    "model": {"fer_data"},
    "components": {"fer_data", "model"},
    "pipeline": {"fer_data", "model", "components"},
    "serving": {"fer_data", "client"},
    "client": {"fer_data"},
}
# What a layer may use of the data layer: the data contract; the client also reads
# fer2013 CSV files as inputs. (The components read them too: ExampleGen.)
DATA_CONTRACT_ONLY = {
    "model": ("fer_data.features",),
    "serving": ("fer_data.features",),
    "client": ("fer_data.features", "fer_data.fer2013_csv"),
}
# The runners of pipeline/: neither imports the other, and the pipeline's definition (what
# both runners build on) imports neither.
RUNNERS = ("pipeline.local", "pipeline.kubeflow")
DEFINITION = (
    "pipeline/pipeline.py",
    "pipeline/config.py",
    "pipeline/parameters.py",
    "pipeline/code_fingerprint.py",
)
# The functions TFX's Transform and Trainer call in a user module.
USER_FUNCTIONS = ("run_fn", "trainer_fn", "preprocessing_fn", "stats_options_updater_fn")


def _sources(package: str) -> Iterator[Tuple[str, ast.AST]]:
    """(path, syntax tree) of every .py file of a package."""
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            with open(path) as handle:
                yield path, ast.parse(handle.read(), path)


def _imports_of(tree: ast.AST) -> Iterator[Tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:  # "from model import zoo" -> model.zoo
                yield node.lineno, f"{node.module}.{alias.name}"


def imports(package: str) -> Iterator[Tuple[str, int, str]]:
    """(file, line, imported module) for every import in a package's source."""
    for path, tree in _sources(package):
        for line, module in _imports_of(tree):
            yield path, line, module


def _where(path: str, line: int, what: str) -> str:
    return f"{os.path.relpath(path, ROOT)}:{line} {what}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_upward_or_sideways_imports(package):
    wrong = [
        _where(path, line, f"imports {module}")
        for path, line, module in imports(package)
        if module.split(".")[0] in PROJECT_PACKAGES - {package} - ALLOWED[package]
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(DATA_CONTRACT_ONLY))
def test_these_layers_use_only_the_data_contract(package):
    allowed = DATA_CONTRACT_ONLY[package]
    wrong = [
        _where(path, line, f"imports {module}")
        for path, line, module in imports(package)
        if module.split(".")[0] == "fer_data" and not module.startswith(allowed)
    ]
    assert not wrong, "\n".join(wrong)


def _runner_of(module: str) -> str:
    return next((r for r in RUNNERS if module == r or module.startswith(r + ".")), "")


def test_the_runners_are_independent_and_the_definition_imports_neither():
    wrong = []
    for path, line, module in imports("pipeline"):
        relative = os.path.relpath(path, ROOT).replace(os.sep, "/")
        own = _runner_of(relative[: -len(".py")].replace("/", "."))
        other = _runner_of(module)
        if other and (relative in DEFINITION or (own and other != own)):
            wrong.append(_where(path, line, f"imports {module}"))
    assert not wrong, "\n".join(wrong)


def user_functions(package: str) -> Iterator[str]:
    """Where a package defines (or binds) a name TFX calls in a Transform/Trainer module."""
    for path, tree in _sources(package):
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.ImportFrom):
                names = [alias.asname or alias.name for alias in node.names]
            else:
                continue
            yield from (_where(path, node.lineno, n) for n in names if n in USER_FUNCTIONS)


def test_no_component_module_is_a_transform_or_trainer_user_module():
    """The user modules TFX's Transform and Trainer load live in model/, not components/."""
    found = list(user_functions("components"))
    assert not found, "\n".join(found)


def test_the_pipeline_names_user_functions_in_model_only():
    """Every ``<module>.run_fn``-like string in pipeline/ (what Transform and the Trainers
    load by module path) names a module of model/."""
    wrong = []
    for path, tree in _sources("pipeline"):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.rsplit(".", 1)[-1] in USER_FUNCTIONS
                and "." in node.value
                and not node.value.startswith("model.")
            ):
                wrong.append(_where(path, node.lineno, node.value))
    assert not wrong, "\n".join(wrong)
    assert any(
        isinstance(node, ast.Constant) and node.value == "model.trainer.run_fn"
        for _, tree in _sources("pipeline")
        for node in ast.walk(tree)
    )


def test_the_checks_see_function_local_imports_and_user_functions(tmp_path, monkeypatch):
    """The contract tests can fail: a function-local upward import, a runner importing the
    other one, a user function in components/ are all found."""
    package = tmp_path / "components"
    package.mkdir()
    (package / "bad.py").write_text(
        "def f():\n    from pipeline import config\n\n\ndef run_fn(fn_args):\n    pass\n"
    )
    (tmp_path / "pipeline" / "local").mkdir(parents=True)
    (tmp_path / "pipeline" / "local" / "bad.py").write_text(
        "from pipeline.kubeflow import runner\n"
    )
    monkeypatch.setattr(__import__(__name__), "ROOT", str(tmp_path))
    assert [module for _, _, module in imports("components")] == ["pipeline.config"]
    assert [w.rsplit(" ", 1)[-1] for w in user_functions("components")] == ["run_fn"]
    with pytest.raises(AssertionError, match="pipeline/local/bad.py:1 imports"):
        test_the_runners_are_independent_and_the_definition_imports_neither()
