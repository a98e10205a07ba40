"""Helpers shared by the experiment files: variant lookup and size-table rows -> config."""
from __future__ import annotations

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
    return config
