"""Transfer learning: pretrain a backbone, then fine-tune it with a task head.

Variants:
  bert_tiny_pretrain, gpt2_tiny_pretrain   the tiny MLM / causal LM on the builtin corpus,
                                           with the builtin tasks' validation files left out
  gpt2_tiny_tokens, bert_tiny_tokens       builtin_tokens (each byte's Python token type)
                                           from only 64 labelled snippets: the demonstration
  bert_tiny_builtin, roberta_tiny_builtin, gpt2_tiny_builtin
                                           builtin_modules (which stdlib package a snippet
                                           is from; 8 classes, 2,000 labelled examples)
  bert_base_<glue>, roberta_base_<glue>    GLUE from TFDS (prepared beforehand), <glue> one of
                                           cola sst2 mrpc qqp stsb mnli qnli rte wnli

A fine-tuning run starts from `--config.checkpoint.init_from=RUN_DIR` (a pretraining run,
or a Hugging Face checkpoint imported by `scaling import-hf`); without it the same model
trains from random initialisation, the baseline pretraining must beat. The demonstration
(benchmarks/RESULTS_transfer.md): GPT-2 tiny's causal LM (experiments/gpt2.py's quick start,
800 steps), then the same fine-tuning config from it and from random init:

  scaling train --config experiments/finetune.py:gpt2_tiny_pretrain --workdir runs/pre
  scaling train --config experiments/finetune.py:gpt2_tiny_tokens --workdir runs/ft_pre \\
      --config.checkpoint.init_from=runs/pre
  scaling train --config experiments/finetune.py:gpt2_tiny_tokens --workdir runs/ft_scratch
  scaling report runs/ft_pre runs/ft_scratch
"""
from experiments import bert, gpt2, roberta
from scaling.tasks import builtin_modules, registry

FAMILIES = {"bert": bert, "roberta": roberta, "gpt2": gpt2}
GLUE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")
GLUE_TRAIN_SIZES = dict(cola=8_551, sst2=67_349, mrpc=3_668, qqp=363_846, stsb=5_749,
                        mnli=392_702, qnli=104_743, rte=2_490, wnli=635)
# The tiny demonstration: the tiny models, 128-byte sequences.
# The tiny BERT's MLM pretraining (GPT-2 keeps its quick start: experiments/gpt2.py).
BERT_TINY_PRETRAIN = dict(steps=600, batch_size=32, log_every=50, eval_every=200, eval_steps=8)
TINY_FINETUNE = dict(steps=300, batch_size=32, log_every=25, eval_every=100)
TINY_FT_OPTIM = dict(lr=1e-3, warmup_steps=30, decay="linear", end_lr_fraction=0.0,
                     weight_decay=0.01, b2=0.999)
# builtin_tokens from a handful of labelled snippets (8k labelled bytes): what a model knows
# of Python before it sees a label decides how well it tags the rest. Both arms overfit
# 64 snippets within ~100 steps, so longer runs only lose held-out accuracy.
TINY_TOKENS = dict(max_train_examples=64, steps=100, warmup_steps=10, lr=1e-3)


def _pretrain(family: str):
    config = FAMILIES[family].get_config("tiny")
    config.data.corpus_exclude = builtin_modules.heldout_globs()  # the task's validation
    if family == "bert":
        config.train.update(BERT_TINY_PRETRAIN)
        config.optim.update(lr=1e-3, warmup_steps=100, weight_decay=0.01)
    config.checkpoint.every = 0
    return config


def _finetune(family: str, size: str, task: str):
    config = FAMILIES[family].get_config(size)
    info = registry.get(task)
    config.data.update(dataset=task, objective="task", seq_len=128 if size != "tiny" else
                       min(128, config.model.max_len - config.model.position_offset))
    config.task.kind = info.kind
    config.checkpoint.every = 0
    if size == "tiny":
        config.task.max_train_examples = 2000   # labelled data is scarce: pretraining matters
        config.train.update(TINY_FINETUNE)
        config.optim.update(TINY_FT_OPTIM)
        if task == "builtin_tokens":
            config.task.max_train_examples = TINY_TOKENS["max_train_examples"]
            config.train.steps = TINY_TOKENS["steps"]
            config.train.eval_every = TINY_TOKENS["steps"] // 2
            config.optim.update(lr=TINY_TOKENS["lr"], warmup_steps=TINY_TOKENS["warmup_steps"])
        elif family == "gpt2":   # the demonstration: the causal LM's last real token, where
            # it has read the whole snippet; a lower lr keeps more of what pretraining learnt
            config.task.pooling = "last"
            config.optim.lr = 3e-4
        else:   # MLM pretraining trains every token's state but neither [CLS]'s summary
            config.task.pooling = "mean"  # nor the pooler: the mean of the tokens' states
    else:   # BERT's GLUE recipe: 3 epochs, lr 2e-5, 10 % warmup, linear decay, dropout 0.1
        steps = 3 * GLUE_TRAIN_SIZES[task.split("/")[1]] // 32
        config.train.update(steps=steps, batch_size=32, log_every=100,
                            eval_every=max(steps // 6, 1))
        config.optim.update(lr=2e-5, warmup_steps=steps // 10, decay="linear",
                            end_lr_fraction=0.0, weight_decay=0.01, b2=0.999)
        config.model.dropout = 0.1
        # The pretraining recipe's layout is not this batch's: one step per update, and no
        # published batch for compile/plan to lay out.
        config.train.micro_batches = 1
        config.parallel.recipe_devices = 0
    config.experiment = f"finetune:{family}_{size}_{task.split('/')[-1]}"
    return config


def get_config(variant: str = "gpt2_tiny_tokens"):
    variants = {"bert_tiny_pretrain": lambda: _pretrain("bert"),
                "gpt2_tiny_pretrain": lambda: _pretrain("gpt2"),
                "bert_tiny_tokens": lambda: _finetune("bert", "tiny", "builtin_tokens"),
                "gpt2_tiny_tokens": lambda: _finetune("gpt2", "tiny", "builtin_tokens")}
    for family in FAMILIES:
        variants[f"{family}_tiny_builtin"] = (
            lambda f=family: _finetune(f, "tiny", "builtin_modules"))
    for family in ("bert", "roberta"):
        for task in GLUE:
            variants[f"{family}_base_{task}"] = (
                lambda f=family, t=task: _finetune(f, "base", f"glue/{t}"))
    if variant not in variants:
        raise ValueError(f"experiments/finetune.py: unknown variant {variant!r}; choose one "
                         f"of: {', '.join(variants)}")
    config = variants[variant]()
    if variant.endswith("_pretrain"):
        config.experiment = f"finetune:{variant}"
    return config
