"""Helpers shared by the experiment files: variant lookup and size-table rows -> config."""
from __future__ import annotations

import os

import ml_collections

from experiments import size_table
from scaling.config import base_config


def make_config(experiment: str, variant: str, family_defaults: dict,
                tiny: dict, data: dict | None = None) -> ml_collections.ConfigDict:
    """A run config for `experiment:variant`.

    Args:
      experiment: the experiment file's name ("gpt2").
      variant: a size-table variant of that experiment, or "tiny".
      family_defaults: model fields every variant shares (norm placement, biases, ...).
      tiny: model fields of the laptop-sized variant.
      data: data-section fields for this family (objective, ...).
    """
    rows = size_table.rows_for(experiment)
    variants = ["tiny", *rows]
    if variant not in variants:
        raise ValueError(f"experiments/{experiment}.py: unknown variant {variant!r}; "
                         f"choose one of: {', '.join(variants)}")
    config = base_config()
    config.model.update(family_defaults)
    if variant == "tiny":
        config.model.update(tiny)
        config.model.name = f"{experiment}-tiny"
    else:
        row = rows[variant]
        config.model.update(name=row.name, num_layers=row.layers, width=row.width,
                            num_heads=row.heads, mlp_dim=row.mlp_dim,
                            vocab_size=row.vocab_size, max_len=row.max_len)
        if row.decoder_layers:
            config.model.num_decoder_layers = row.decoder_layers
    config.data.update(data or {})
    config.data.seq_len = min(config.data.seq_len,
                              config.model.max_len - config.model.get("position_offset", 0))
    config.experiment = f"{experiment}:{variant}"
    if variant != "tiny":
        apply_recipe(config, size_table.RECIPES[f"{experiment}:{variant}"])
    return config


def tokenizer_dir() -> str:
    """Where recipe tokenizer files live: $SCALING_TOKENIZERS, else the default cache."""
    return os.path.expanduser(os.environ.get("SCALING_TOKENIZERS")
                              or size_table.TOKENIZER_DIR_DEFAULT)


def apply_recipe(config: ml_collections.ConfigDict, recipe: size_table.Recipe) -> None:
    """Set the published training recipe's fields on config (in place).

    Batch, length, steps, optimizer and regularisation as published; dtype, micro-batches,
    remat and mesh lay that batch out on recipe.devices accelerators (parallel.recipe_devices).
    """
    config.train.update(batch_size=recipe.batch_size, steps=recipe.steps,
                        micro_batches=recipe.micro_batches)
    config.data.update(seq_len=recipe.seq_len, target_len=recipe.target_len,
                       tokenizer=recipe.tokenizer.format(dir=tokenizer_dir()))
    config.optim.update(lr=recipe.lr, warmup_steps=recipe.warmup_steps, decay=recipe.decay,
                        end_lr_fraction=recipe.end_lr_fraction, b1=recipe.b1, b2=recipe.b2,
                        eps=recipe.eps, weight_decay=recipe.weight_decay,
                        clip_norm=recipe.clip_norm)
    config.model.update(dtype=recipe.dtype, remat=recipe.remat, dropout=recipe.dropout)
    mesh = {axis: 1 for axis in config.parallel.mesh}
    for part in recipe.mesh.split(","):
        axis, _, size = part.partition("=")
        mesh[axis] = int(size)
    config.parallel.mesh.update(mesh)
    config.parallel.recipe_devices = recipe.devices
