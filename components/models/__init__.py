"""Model zoo registry (temporary: improved only)."""
from components.models import improved_cnn

ARCHITECTURES = {"improved": improved_cnn.build}


def build_model(name, weights=None):
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; valid: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](weights), "random init"
