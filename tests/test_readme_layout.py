"""The README's layout section and the tree match one to one: every folder it names exists,
and every top-level folder of the project (packages and the others) is named there."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IGNORED = {".ci", ".git", ".venv", "runs", "build", "dist"}


def _named_in_layout():
    text = open(os.path.join(ROOT, "README.md")).read()
    section = re.search(r"^## Layout\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Layout' section"
    return set(re.findall(r"^- `([\w.-]+)/`", section.group(1), re.M))


def _folders():
    return {
        name
        for name in os.listdir(ROOT)
        if os.path.isdir(os.path.join(ROOT, name))
        and name not in IGNORED
        and not name.startswith(".")
        and not name.endswith(".egg-info")
        and name != "__pycache__"
    }


def test_every_folder_named_in_the_layout_exists():
    missing = sorted(
        name for name in _named_in_layout() if not os.path.isdir(os.path.join(ROOT, name))
    )
    assert not missing, f"README layout names folders that do not exist: {missing}"


def test_every_package_and_folder_is_named_in_the_layout():
    packages = {n for n in _folders() if os.path.exists(os.path.join(ROOT, n, "__init__.py"))}
    assert {"fer_data", "model", "components", "pipeline"} <= packages
    unnamed = sorted(_folders() - _named_in_layout())
    assert not unnamed, f"top-level folders the README layout does not name: {unnamed}"
