"""Per-class recall, precision, F1 and macro-F1 from a confusion matrix (rows = true class)."""

from typing import Dict, List

import numpy as np
import numpy.typing as npt


def per_class_scores(matrix: npt.ArrayLike) -> Dict[str, List[float]]:
    """{"recall": [...], "precision": [...], "f1": [...]} per class; 0 where undefined."""
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {counts.shape}")
    hits = np.diag(counts)
    actual, predicted = counts.sum(axis=1), counts.sum(axis=0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    total = recall + precision
    f1 = np.divide(2 * recall * precision, total, out=np.zeros_like(hits), where=total > 0)
    return {"recall": recall.tolist(), "precision": precision.tolist(), "f1": f1.tolist()}


def macro_f1(matrix: npt.ArrayLike) -> float:
    """Unweighted mean of the per-class F1 over classes that occur (true or predicted)."""
    counts = np.asarray(matrix, dtype=np.float64)
    present = (counts.sum(axis=0) + counts.sum(axis=1)) > 0
    if not present.any():
        return 0.0
    return float(np.mean(np.asarray(per_class_scores(counts)["f1"])[present]))
