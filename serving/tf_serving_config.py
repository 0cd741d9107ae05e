"""What ``fer-serve`` hands the real ``tensorflow_model_server``: flags and config files.

Version policies (``latest[:N]``, ``all``, ``specific:V1,V2``), version labels
(``stable=3,canary=4``) and server-side batching are TF Serving features; here they are
only checked and written as TF Serving's own text protos (ModelServerConfig,
BatchingParameters). The local stand-in serves the newest version, unlabelled, unbatched.
"""

import re
from typing import Dict

_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def version_policy_rule(text: str) -> str:
    """``latest[:N]`` / ``all`` / ``specific:V1,V2`` -> a model_version_policy body; ValueError."""
    kind, _, arg = text.strip().partition(":")
    if kind == "latest" and (not arg or (arg.isdigit() and int(arg) >= 1)):
        return f"latest {{ num_versions: {int(arg or 1)} }}"
    if kind == "all" and not arg:
        return "all {}"
    versions = [v.strip() for v in arg.split(",")]
    if kind == "specific" and arg and all(v.isdigit() for v in versions):
        return "specific { " + " ".join(f"versions: {int(v)}" for v in versions) + " }"
    raise ValueError(
        f"unknown version policy {text!r} (use latest, latest:N, all or specific:V1,V2)"
    )


def parse_version_labels(text: str) -> Dict[str, int]:
    """``stable=3,canary=4`` -> {"stable": 3, "canary": 4}; ValueError for anything else."""
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, version = (p.strip() for p in item.partition("="))
        if not _LABEL.fullmatch(name) or not version.isdigit():
            raise ValueError(f"bad version label {item!r} (use NAME=VERSION, e.g. stable=3)")
        labels[name] = int(version)
    return labels


def model_config_text(name: str, base_path: str, policy: str, labels: Dict[str, int]) -> str:
    """TF Serving's ModelServerConfig (text proto) for one model, a policy and labels."""
    label_text = "".join(
        f'\n    version_labels {{ key: "{k}" value: {v} }}' for k, v in sorted(labels.items())
    )
    return (
        "model_config_list {\n  config {\n"
        f'    name: "{name}"\n    base_path: "{base_path}"\n'
        f'    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ {version_policy_rule(policy)} }}{label_text}\n  }}\n}}\n"
    )


def batching_text(max_batch_size: int, batch_timeout_ms: float, num_batch_threads: int) -> str:
    """TF Serving's BatchingParameters (text proto)."""
    return (
        f"max_batch_size {{ value: {max_batch_size} }}\n"
        f"batch_timeout_micros {{ value: {int(batch_timeout_ms * 1000)} }}\n"
        f"num_batch_threads {{ value: {num_batch_threads} }}\n"
    )
