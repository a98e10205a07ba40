"""The optimizer: AdamW with warmup + decay, global-norm clipping, decay masked off
biases, norms and position/type tables. Everything here is optax except the one-line
inverse square root decay, which optax does not ship."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

DECAYS = ("cosine", "linear", "constant", "rsqrt")

# Parameters whose name is one of these are matrices that get weight decay; biases, LayerNorm
# scales and offsets do not. Matching by name (not ndim) stays right for scanned layers,
# where a bias gains a leading 'layers' axis and becomes 2-D.
DECAYED = ("w_q", "w_k", "w_v", "w_o", "w_in", "w_out", "kernel", "embedding")


def make_schedule(optim_cfg, total_steps: int) -> optax.Schedule:
    """Linear warmup to optim.lr, then cosine / linear decay to lr * end_lr_fraction, a
    constant lr, or (rsqrt, Vaswani et al. 2017) lr * sqrt(warmup / step)."""
    lr, warmup = optim_cfg.lr, optim_cfg.warmup_steps
    end = lr * optim_cfg.end_lr_fraction
    decay_steps = max(total_steps - warmup, 1)
    if optim_cfg.decay == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, warmup + decay_steps, end)
    if optim_cfg.decay == "linear":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.linear_schedule(lr, end, decay_steps)],
            [warmup])
    if optim_cfg.decay == "constant":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
    if optim_cfg.decay == "rsqrt":
        # join_schedules hands the second schedule step - warmup (and evaluates it during
        # the warmup too, at negative counts, whose value it discards: keep those finite).
        def rsqrt(count):
            return lr * jnp.sqrt(warmup / jnp.maximum(count + warmup, warmup))
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), rsqrt], [warmup])
    raise ValueError(f"optim.decay: unknown {optim_cfg.decay!r}; allowed: "
                     + ", ".join(repr(d) for d in DECAYS))


def decay_mask(params):
    """True for parameters that get weight decay (see DECAYED)."""
    def is_decayed(path, _):
        name = getattr(path[-1], "key", str(path[-1]))
        return name in DECAYED and not _is_table(path)
    return jax.tree_util.tree_map_with_path(is_decayed, params)


def _is_table(path) -> bool:
    """Position and token-type tables are not decayed (as in BERT and Megatron)."""
    keys = [getattr(p, "key", "") for p in path]
    return "positions" in keys or "types" in keys


# The top-level parameter collection of a fine-tuning task's head (scaling.models.task).
TASK_HEAD = "task_head"


def backbone_mask(params):
    """True for every parameter outside the task head (the ones optim.freeze_backbone holds)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[0], "key", None) != TASK_HEAD, params)


def make_optimizer(optim_cfg, total_steps: int) -> optax.GradientTransformation:
    """Clipping + AdamW; with optim.freeze_backbone only the task head is updated."""
    schedule = make_schedule(optim_cfg, total_steps)
    parts = []
    if optim_cfg.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(optim_cfg.clip_norm))
    parts.append(optax.adamw(schedule, b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps,
                             weight_decay=optim_cfg.weight_decay, mask=decay_mask))
    if optim_cfg.get("freeze_backbone", False):
        # Zero the backbone's gradients first (clipping then sees the head's alone) and its
        # updates last (AdamW's weight decay would move it). optax.masked, not
        # multi_transform: sharding.py maps the optimizer state with optax.tree_map_params,
        # which masked supports.
        freeze = optax.masked(optax.set_to_zero(), backbone_mask)
        parts = [freeze, *parts, freeze]
    return optax.chain(*parts)


def validate_optim_config(optim_cfg, total_steps: int) -> None:
    """One-line ValueErrors naming the field, before anything is compiled."""
    if not optim_cfg.lr > 0:
        raise ValueError(f"optim.lr: must be positive, got {optim_cfg.lr!r}")
    if optim_cfg.warmup_steps < 0:
        raise ValueError(f"optim.warmup_steps: must be >= 0, got {optim_cfg.warmup_steps!r}")
    if optim_cfg.decay not in DECAYS:
        raise ValueError(f"optim.decay: unknown {optim_cfg.decay!r}; allowed: "
                         + ", ".join(repr(d) for d in DECAYS))
    if optim_cfg.decay == "rsqrt" and optim_cfg.warmup_steps <= 0:
        raise ValueError("optim.warmup_steps: the rsqrt decay needs a warmup (lr * "
                         "sqrt(warmup / step)); set it > 0")
    if optim_cfg.clip_norm < 0:
        raise ValueError(f"optim.clip_norm: must be >= 0 (0 disables), got "
                         f"{optim_cfg.clip_norm!r}")
    if total_steps <= 0:
        raise ValueError(f"train.steps: must be positive, got {total_steps!r}")
