"""Task metrics as plain numpy functions of (labels, predictions) over a whole split.

GLUE reports accuracy (most tasks), F1 of the positive class (MRPC, QQP), Matthews
correlation (CoLA) and Pearson / Spearman correlation (STS-B); multi-class tasks here
also report macro F1 (the unweighted mean of per-class F1), which rare classes move.
"""
from __future__ import annotations

import numpy as np
import scipy.stats


def accuracy(labels, predictions) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def confusion(labels, predictions, num_classes: int | None = None) -> np.ndarray:
    """[C, C] counts: row = true class, column = predicted class."""
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    c = num_classes or int(max(labels.max(initial=0), predictions.max(initial=0))) + 1
    return np.bincount(labels * c + predictions, minlength=c * c).reshape(c, c)


def _f1_per_class(m: np.ndarray) -> np.ndarray:
    tp = np.diag(m).astype(np.float64)
    denominator = m.sum(0) + m.sum(1)        # 2 tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def f1(labels, predictions, positive: int = 1) -> float:
    """F1 of the `positive` class (binary tasks)."""
    return float(_f1_per_class(confusion(labels, predictions, max(2, positive + 1)))[positive])


def macro_f1(labels, predictions) -> float:
    """Mean F1 over the classes that occur in labels or predictions."""
    m = confusion(labels, predictions)
    present = (m.sum(0) + m.sum(1)) > 0
    return float(_f1_per_class(m)[present].mean())


def mcc(labels, predictions) -> float:
    """Matthews correlation (multi-class form, Gorodkin 2004); 0 when it is undefined."""
    m = confusion(labels, predictions).astype(np.float64)
    n, correct = m.sum(), np.trace(m)
    true, predicted = m.sum(1), m.sum(0)
    denominator = np.sqrt((n * n - predicted @ predicted) * (n * n - true @ true))
    return float((correct * n - true @ predicted) / denominator) if denominator > 0 else 0.0


def pearson(labels, predictions) -> float:
    return float(scipy.stats.pearsonr(labels, predictions).statistic)


def spearman(labels, predictions) -> float:
    return float(scipy.stats.spearmanr(labels, predictions).statistic)


METRICS = {"accuracy": accuracy, "f1": f1, "macro_f1": macro_f1, "mcc": mcc,
           "pearson": pearson, "spearman": spearman}


def compute(names, labels, predictions) -> dict[str, float]:
    """{"eval_<name>": value} for each metric name (see METRICS)."""
    return {f"eval_{name}": METRICS[name](labels, predictions) for name in names}
