"""Parameter accounting from the real model definitions (no parameter memory allocated)."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from scaling.models import abstract_params
from scaling.spec import ModelSpec


@dataclasses.dataclass(frozen=True)
class ParamCount:
    total: int           # every parameter the model creates
    head: int            # pretraining-head-only parameters (BERT's MLM transform and bias)
    embedding: int       # token, position and token-type tables
    @property
    def backbone(self) -> int:
        """What papers publish: the model without its pretraining head."""
        return self.total - self.head

    @property
    def non_embedding(self) -> int:
        """Kaplan et al.'s N: backbone parameters outside the embedding tables."""
        return self.backbone - self.embedding


def _size(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def count_params(spec: ModelSpec) -> ParamCount:
    """Count parameters via `jax.eval_shape` of the model's init (shapes only)."""
    params = abstract_params(spec)
    head = _size(params.get("head", {}))
    embed = params.get("embed", {})
    embedding = _size({k: v for k, v in embed.items() if k in ("tokens", "positions", "types")})
    return ParamCount(total=_size(params), head=head, embedding=embedding)
