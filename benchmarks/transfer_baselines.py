"""Reference points for the builtin fine-tuning tasks, without any neural network.

    python benchmarks/transfer_baselines.py

builtin_tokens: the most frequent label, and a per-byte lookup table (each byte value's most
frequent label in the same labelled snippets the fine-tuning configs use). builtin_modules:
the most frequent class, and a char 2-4-gram TF-IDF logistic regression on the same 2,000
training examples. Both score the whole validation split, truncated to 128 bytes as the
models see it. Needs scikit-learn (in the test extra).
"""
from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from experiments import finetune
from scaling.tasks import builtin_modules, builtin_tokens
from scaling.tasks.data import subset_indices

SEQ_LEN = 128


def subset(items, limit):
    """The fine-tuning pipeline's labelled subset (task.max_train_examples=limit)."""
    return [items[i] for i in subset_indices(len(items), limit)]


def tokens_baselines():
    def byte_pairs(examples):
        for text, labels in examples:
            data = text.encode("utf-8")[:SEQ_LEN]
            yield np.frombuffer(data, np.uint8), labels[:SEQ_LEN]

    train = subset(builtin_tokens.examples("train"), finetune.TINY_TOKENS["max_train_examples"])
    validation = builtin_tokens.examples("validation")
    y = np.concatenate([labels for _, labels in byte_pairs(validation)])
    counts = np.zeros((256, len(builtin_tokens.LABELS)))
    for data, labels in byte_pairs(train):
        np.add.at(counts, (data, labels), 1)
    table = np.where(counts.sum(1) > 0, counts.argmax(1), counts.sum(0).argmax())
    pred = np.concatenate([table[data] for data, _ in byte_pairs(validation)])
    share = np.bincount(y, minlength=len(builtin_tokens.LABELS)) / len(y)
    print(f"builtin_tokens ({len(train)} train snippets, {len(y):,} validation bytes): "
          f"most frequent label {share.max():.1%}; per-byte lookup {np.mean(pred == y):.1%}, "
          f"macro-F1 {f1_score(y, pred, average='macro'):.3f}")


def modules_baselines():
    train = subset(builtin_modules.examples("train"), 2000)
    validation = builtin_modules.examples("validation")
    clip = lambda t: t.encode("utf-8")[:SEQ_LEN].decode("utf-8", errors="ignore")  # noqa: E731
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(2, 4), sublinear_tf=True)
    x = vectorizer.fit_transform([clip(t) for t, _ in train])
    model = LogisticRegression(max_iter=3000, C=10.0).fit(x, [label for _, label in train])
    y = np.array([label for _, label in validation])
    pred = model.predict(vectorizer.transform([clip(t) for t, _ in validation]))
    print(f"builtin_modules ({len(train)} train, {len(y)} validation snippets): most frequent "
          f"class {np.bincount(y).max() / len(y):.1%}; char 2-4-gram logistic regression "
          f"{np.mean(pred == y):.1%}, macro-F1 {f1_score(y, pred, average='macro'):.3f}")


if __name__ == "__main__":
    tokens_baselines()
    modules_baselines()
