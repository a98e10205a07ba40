"""The labelled tasks selectable by `data.dataset`: what each one reads and how it is scored.

A task is a name (`builtin_modules`, `glue/sst2`, ...) with a kind (the head it needs), a
label count, the text fields of one example and the metrics reported on its validation
split. GLUE tasks are read from TFDS (prepared beforehand; nothing is downloaded); the
builtin ones are built from the Python standard library on any machine.
"""
from __future__ import annotations

import dataclasses

SEQUENCE, TOKEN, REGRESSION = "sequence_classification", "token_classification", "regression"
KINDS = (SEQUENCE, TOKEN, REGRESSION)


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    name: str
    kind: str                     # one of KINDS
    num_labels: int               # classes (regression: 1)
    text_keys: tuple = ()         # one field (single sentence) or two (a pair)
    label_key: str = "label"
    validation_split: str = "validation"
    metrics: tuple = ("accuracy",)  # besides eval_loss; see scaling.tasks.metrics


def _glue(name, keys, num_labels=2, metrics=("accuracy",), **kw) -> TaskInfo:
    kind = REGRESSION if num_labels == 1 else SEQUENCE
    return TaskInfo(f"glue/{name}", kind, num_labels, keys, metrics=metrics, **kw)


TASKS = {t.name: t for t in (
    _glue("cola", ("sentence",), metrics=("accuracy", "mcc")),
    _glue("sst2", ("sentence",)),
    _glue("mrpc", ("sentence1", "sentence2"), metrics=("accuracy", "f1")),
    _glue("qqp", ("question1", "question2"), metrics=("accuracy", "f1")),
    _glue("stsb", ("sentence1", "sentence2"), num_labels=1, metrics=("pearson", "spearman")),
    _glue("mnli", ("premise", "hypothesis"), num_labels=3, metrics=("accuracy", "macro_f1"),
          validation_split="validation_matched"),
    _glue("qnli", ("question", "sentence")),
    _glue("rte", ("sentence1", "sentence2")),
    _glue("wnli", ("sentence1", "sentence2")),
    TaskInfo("builtin_modules", SEQUENCE, 8, ("text",), metrics=("accuracy", "macro_f1")),
    TaskInfo("builtin_tokens", TOKEN, 6, ("text",), metrics=("accuracy", "macro_f1")),
)}


def is_task(dataset: str) -> bool:
    return dataset in TASKS


def get(dataset: str) -> TaskInfo:
    """The TaskInfo of `data.dataset`; a one-line ValueError naming the field otherwise."""
    if dataset not in TASKS:
        raise ValueError(f"data.dataset: {dataset!r} is not a labelled task "
                         f"(data.objective='task'); use one of {', '.join(TASKS)}")
    return TASKS[dataset]
