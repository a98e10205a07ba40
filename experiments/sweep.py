"""A model-size sweep of GPT-2-shaped decoders on the built-in corpus, for scaling-law fits.

    scaling sweep --config experiments/sweep.py:tiny --workdir runs/sweep
    scaling fit runs/sweep
    scaling train --config experiments/sweep.py:tiny.3 --workdir runs/sweep/<name>  # one member

Variants: `tiny` is the whole sweep (what `scaling sweep` takes); `tiny.K` is its K-th member
(0-based) as an ordinary single-run train config, which is what `scaling sweep --emit` prints.
`captioning` sweeps the captioner (experiments/captioning.py:tiny on the shapes set) over
five Transformer sizes with the same image front end.
`isoflop` is an iso-FLOP grid (Hoffmann et al. 2022, approach 2): 3 compute budgets x 4 sizes.

Shapes. The size table's GPT-2 rows have width/layers = 64 (small, 768/12), 43 (medium,
1024/24), 36 (large, 1280/36) and 33 (xl, 1600/48): wider-than-deep by 33-64x, the ratio
falling slowly with size (Kaplan et al. 2020 find loss flat over aspect ratios ~20-200). The
members below keep width/layers in that same 32-48 band, with GPT-2's mlp_dim = 4·width, and
head width 16 instead of 64 so that even the smallest has several heads. Non-embedding
parameters N (Kaplan's N: blocks and final LayerNorm; `scaling.sizes.count_params`) span 44x:

    name        layers  width  heads  width/layers  N (non-embedding)  params (with embeddings)
    0-L1-d48        1     48      3        48            28,368            52,944
    1-L2-d64        2     64      4        32           100,096           132,864
    2-L2-d96        2     96      6        48           223,872           273,024
    3-L3-d128       3    128      8        43           595,072           660,608
    4-L4-d160       4    160     10        40         1,237,440         1,319,360

Budget. `sweep.budget='tokens'` trains every member on `sweep.tokens` tokens (same data, so
L(N) at fixed D); `sweep.budget='flops'` gives every member the same compute C = 6·N·D, so
D = sweep.flops / (6·N) and small models see more tokens (an iso-FLOP sweep). Either way
train.steps = D / (batch_size · seq_len), rounded up, and each run is evaluated
`sweep.evals` times (so every run has a loss-vs-compute curve for the L(C) envelope) and
checkpointed at each evaluation (so an interrupted sweep resumes where it stopped).

Learning rate: one constant rate (2e-3) over-drives the largest member (its loss trails the
next size down); `sweep.lr_rule='kaplan'` (the default) lowers it with N as Kaplan et al.
found compute-efficient.

Iso-FLOP grid (`isoflop`). Budgets C = 5e11, 1.5e12, 4.5e12, counted as C = 6·N·D with N
every parameter (sweep.flops_params='total', Chinchilla's count): at these sizes the byte
embeddings and the head are a large part of the model, and counting only non-embedding N
hands the smallest models several times the real compute of the largest. Each budget trains
4 sizes from ISOFLOP_LADDER, shifted up the ladder with the budget, so that its losses can
make a U in log N around its optimum; smaller budgets left the loss still falling towards the
smallest model (no left arm). Every member's config.json has `sweep_member.budget_flops` = its
C (what `scaling fit --isoflop` groups by) and `sweep_member.budget_params` = its N. The
grid is sized for about half an hour on 2 CPU cores (estimate in the README).

Timing (2 CPU cores): `tiny` trains each member on 800k tokens (391 steps of 16 x 128); the
largest member takes about half the time. Measured and estimated wall times are in the README;
on an idle machine `--config.sweep.tokens=2000000` gives cleaner fits in well under 30 min.
"""
from __future__ import annotations

import ml_collections

from experiments.gpt2 import FAMILY
from scaling.config import base_config

# (layers, width, heads) of each member, smallest first; see the table above.
SIZES = {
    "tiny": ((1, 48, 3), (2, 64, 4), (2, 96, 6), (3, 128, 8), (4, 160, 10)),
    # Captioners on the built-in shapes set (experiments/captioning.py:tiny's data, image
    # front end and training fields): L encoder and L decoder layers of width D.
    "captioning": ((1, 32, 2), (1, 64, 4), (2, 64, 4), (2, 96, 6), (2, 128, 8)),
}

# Iso-FLOP grids: {compute budget C = 6·N·D: its sizes, smallest first}. Each budget's sizes
# bracket that budget's expected optimum, so its final losses make a U in log N.
# Total parameters (with embeddings) 11.5k, 19.6k, 29.2k, 53k, 81k, 133k, 273k.
ISOFLOP_LADDER = ((1, 16, 1), (1, 24, 2), (1, 32, 2), (1, 48, 3), (2, 48, 3), (2, 64, 4),
                  (2, 96, 6))
GRIDS = {
    "isoflop": {5e11: ISOFLOP_LADDER[0:4], 1.5e12: ISOFLOP_LADDER[1:5],
                4.5e12: (ISOFLOP_LADDER[2], ISOFLOP_LADDER[3], ISOFLOP_LADDER[5],
                         ISOFLOP_LADDER[6])},
}


def sweep_config(variant: str = "tiny") -> ml_collections.ConfigDict:
    """The sweep: shared run fields plus a `sweep` section listing the member shapes."""
    if variant not in SIZES and variant not in GRIDS:
        raise ValueError(f"experiments/sweep.py: unknown sweep {variant!r}; choose one of: "
                         f"{', '.join([*SIZES, *GRIDS])} (or {variant}.K for its K-th member)")
    if variant == "captioning":  # the tiny captioner's data and front end; sizes vary
        from experiments import captioning  # noqa: PLC0415
        c = captioning.get_config("tiny")
        c.model.num_decoder_layers = 0    # as many decoder layers as encoder layers (L)
        c.train.update(log_every=20)
    else:
        c = base_config()
        c.model.update(FAMILY)
        c.model.update(vocab_size=0, max_len=128)      # byte vocabulary of the built-in corpus
        c.data.update(objective="causal_lm", seq_len=128)
        c.train.update(batch_size=16, log_every=20, eval_steps=4)
        c.optim.update(lr=2e-3, warmup_steps=20, decay="cosine")
    c.metrics.tensorboard = False
    c.checkpoint.keep = 1

    c.sweep = ml_collections.ConfigDict()
    c.sweep.name = variant
    # "L,D,H" per member; a string so that --config.sweep.sizes="1,32,2;2,64,4" overrides it.
    c.sweep.sizes = ";".join(",".join(map(str, s)) for s in SIZES.get(variant, SIZES["tiny"]))
    c.sweep.mlp_ratio = 4          # mlp_dim = mlp_ratio * width (GPT-2)
    c.sweep.budget = "tokens"      # tokens: same D for every member | flops: same C = 6·N·D
    c.sweep.tokens = 800_000       # budget='tokens': tokens per member (captioning: caption
    if variant == "captioning":    #   positions, 32 x 24 per step)
        c.sweep.tokens = 400_000
    c.sweep.flops = 2.0e12         # budget='flops': C per member (6·N·D, N non-embedding)
    if variant in GRIDS:           # several budgets: "C1;C2;..." (a string field then)
        del c.sweep["flops"]
        c.sweep.flops = ";".join(f"{b:.2g}".replace("e+", "e") for b in GRIDS[variant])
    c.sweep.flops_params = "non_embedding"   # the N of C = 6·N·D: non_embedding | total
    c.sweep.evals = 6              # evaluations per member (the last at the final step)
    c.sweep.min_steps = 10         # never fewer optimizer steps than this
    # Peak learning rate per member: 'kaplan' = 0.003239 - 0.0001395·ln(N) (Kaplan et al.
    # 2020, eq. D.1: smaller for bigger models; 1.8e-3 .. 1.3e-3 here), 'constant' = optim.lr.
    c.sweep.lr_rule = "kaplan"
    c.experiment = f"sweep:{variant}"
    if variant in GRIDS:
        # A grid: several values of sweep.flops, one size list per budget ('|'-separated).
        grid = GRIDS[variant]
        c.sweep.budget = "flops"
        c.sweep.sizes = "|".join(";".join(",".join(map(str, s)) for s in sizes)
                                 for sizes in grid.values())
        c.sweep.flops_params = "total"
        c.sweep.evals = 4
    return c


def get_config(variant: str = "tiny"):
    """`tiny` -> the sweep config; `tiny.K` -> its K-th member as a single-run config."""
    name, dot, index = variant.partition(".")
    if not dot:
        return sweep_config(name)
    from scaling import sweep  # noqa: PLC0415  (imports JAX to count parameters)

    members = sweep.members(sweep_config(name))
    if not index.isdigit() or int(index) >= len(members):
        raise ValueError(f"experiments/sweep.py: no member {index!r} in sweep {name!r}; "
                         f"members are 0..{len(members) - 1}")
    return members[int(index)].config
