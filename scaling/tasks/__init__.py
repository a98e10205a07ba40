"""Fine-tuning on labelled tasks: task heads' spec, config checks, data and metrics.

  registry.py         the tasks by name (GLUE from TFDS, builtin_modules, builtin_tokens)
  builtin_modules.py  offline: which stdlib package a snippet comes from (split by file)
  builtin_tokens.py   offline: each byte's Python token type
  data.py             (texts, label) items -> examples ([CLS] a [SEP] b [SEP] / a [SEP] b EOS)
  metrics.py          accuracy, F1, Matthews correlation, Pearson, Spearman
  evaluate.py         the full pass over the validation split, as eval_* fields

A run fine-tunes when `data.objective = "task"`: `data.dataset` names the task and
`task.kind` the head (scaling.models.task) put on top of the model family's backbone.
"""
from __future__ import annotations

import dataclasses

from scaling.tasks import registry
from scaling.tasks.registry import KINDS, REGRESSION, SEQUENCE, TOKEN

POOLINGS = ("auto", "first", "last", "mean")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What the task head computes; built by `task_spec` from a validated config."""
    kind: str          # sequence_classification | token_classification | regression
    num_labels: int    # head outputs (regression: 1)
    pooling: str       # sequence heads: "first" ([CLS], through the pooler if any) | "last"
                       #   (the last real token) | "mean" (over real tokens)


def is_finetuning(config) -> bool:
    return "task" in config and bool(config.task.kind)


def task_spec(config) -> TaskSpec | None:
    """The TaskSpec of a fine-tuning config, or None for pretraining."""
    if not is_finetuning(config):
        return None
    t = config.task
    info = registry.get(config.data.dataset)
    pooling = t.pooling
    if pooling == "auto":
        pooling = "first" if config.model.family == "encoder" else "last"
    return TaskSpec(t.kind, t.num_labels or info.num_labels, pooling)


def validate(config) -> None:
    """One-line ValueErrors naming the field, before anything is built or written."""
    objective = config.data.objective
    kind = config.task.kind if "task" in config else ""
    if not kind:
        if objective == "task":
            raise ValueError("task.kind: data.objective='task' needs a head: "
                             f"{' | '.join(KINDS)}")
        if config.optim.get("freeze_backbone", False):
            raise ValueError("optim.freeze_backbone: only fine-tuning (task.kind set) has a "
                             "head to train")
        return
    t = config.task
    if kind not in KINDS:
        raise ValueError(f"task.kind: unknown {kind!r}; allowed: {', '.join(KINDS)}")
    if objective != "task":
        raise ValueError(f"data.objective: {objective!r} is not labelled data; fine-tuning "
                         f"(task.kind={kind!r}) needs data.objective='task'")
    info = registry.get(config.data.dataset)
    if kind != info.kind:
        raise ValueError(f"task.kind: {kind!r} does not fit {info.name}, a {info.kind} task "
                         f"with {info.num_labels} label{'s' * (info.num_labels != 1)}")
    if t.num_labels < 0:
        raise ValueError(f"task.num_labels: must be >= 0 (0 = the dataset's), got {t.num_labels}")
    if kind == REGRESSION and t.num_labels not in (0, 1):
        raise ValueError(f"task.num_labels: a regression head has 1 output, got {t.num_labels}")
    if 0 < t.num_labels < info.num_labels:
        raise ValueError(f"task.num_labels: {t.num_labels} is smaller than {info.name}'s "
                         f"{info.num_labels} labels")
    family = config.model.family
    if family not in ("encoder", "decoder"):
        raise ValueError(f"model.family: task heads go on encoder or decoder models, got "
                         f"{family!r}")
    if t.pooling not in POOLINGS:
        raise ValueError(f"task.pooling: unknown {t.pooling!r}; allowed: {', '.join(POOLINGS)}")
    if family == "decoder" and t.pooling == "first":
        raise ValueError("task.pooling: a decoder's first token sees nothing after it; use "
                         "'last' (or 'auto')")
    if t.max_train_examples < 0:
        raise ValueError(f"task.max_train_examples: must be >= 0 (0 = all), got "
                         f"{t.max_train_examples}")
    if config.data.tokenizer == "sentencepiece":
        # Its model file is keyed by the pretraining corpus, which a task config does not name.
        raise ValueError("data.tokenizer: sentencepiece is not supported for tasks; use the "
                         "byte tokenizer (or a pretrained model's own tokenizer)")
    if config.parallel.engine != "jit":
        raise ValueError("parallel.engine: fine-tuning tasks run on the jit engine only")


__all__ = ["KINDS", "REGRESSION", "SEQUENCE", "TOKEN", "TaskSpec", "is_finetuning",
           "task_spec", "validate"]
