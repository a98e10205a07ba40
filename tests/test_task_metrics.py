"""Task metrics against independent references: scikit-learn and scipy / naive numpy."""
import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

from scaling.tasks import metrics


def _cases():
    rng = np.random.default_rng(0)
    yield rng.integers(0, 2, 200), rng.integers(0, 2, 200)           # binary, random
    y = rng.integers(0, 2, 300)
    yield y, np.where(rng.random(300) < 0.8, y, 1 - y)                 # binary, 80 % right
    y = rng.integers(0, 5, 400)
    yield y, np.where(rng.random(400) < 0.6, y, rng.integers(0, 5, 400))  # 5 classes
    yield np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0])               # never predicts 1
    yield np.array([0, 1, 2, 2]), np.array([0, 1, 2, 3])               # a predicted-only class


@pytest.mark.parametrize("labels,predictions", list(_cases()))
def test_classification_metrics_match_sklearn(labels, predictions):
    assert metrics.accuracy(labels, predictions) == pytest.approx(
        skm.accuracy_score(labels, predictions), abs=1e-12)
    assert metrics.macro_f1(labels, predictions) == pytest.approx(
        skm.f1_score(labels, predictions, average="macro", zero_division=0), abs=1e-12)
    assert metrics.mcc(labels, predictions) == pytest.approx(
        skm.matthews_corrcoef(labels, predictions), abs=1e-12)
    if max(labels.max(), predictions.max()) <= 1:
        assert metrics.f1(labels, predictions) == pytest.approx(
            skm.f1_score(labels, predictions, zero_division=0), abs=1e-12)


def test_correlations_match_naive_formulas():
    rng = np.random.default_rng(1)
    labels = rng.uniform(0, 5, 500)
    predictions = labels + rng.normal(0, 1.5, 500)
    a, b = labels - labels.mean(), predictions - predictions.mean()
    naive_pearson = (a @ b) / np.sqrt((a @ a) * (b @ b))
    assert metrics.pearson(labels, predictions) == pytest.approx(naive_pearson, abs=1e-10)
    # Spearman = Pearson of the ranks (no ties in continuous data).
    ra, rb = np.argsort(np.argsort(labels)), np.argsort(np.argsort(predictions))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    assert metrics.spearman(labels, predictions) == pytest.approx(
        (ra @ rb) / np.sqrt((ra @ ra) * (rb @ rb)), abs=1e-10)
    assert metrics.spearman(labels, predictions) == pytest.approx(
        scipy.stats.spearmanr(labels, predictions)[0], abs=1e-12)


def test_compute_names_fields_eval_star():
    out = metrics.compute(("accuracy", "mcc"), np.array([0, 1, 1]), np.array([0, 1, 0]))
    assert set(out) == {"eval_accuracy", "eval_mcc"}
    assert out["eval_accuracy"] == pytest.approx(2 / 3)
