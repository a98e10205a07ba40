"""The classic size table, as data (../shared/REFERENCE.md).

One row per published model. `exact` is the parameter count reproduced from the original
papers, code and configs (None where no exact figure is claimed); `published` is the figure
the size table prints. Family config files (gpt2.py, bert.py, ...) read their variants from
here, so each architecture number lives in exactly one place.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Row:
    key: str                 # "<experiment>:<variant>", e.g. "gpt2:xl"
    name: str                # display name
    layers: int              # encoder(-only) or decoder(-only) layers; enc-dec: encoder layers
    width: int
    heads: int
    mlp_dim: int
    vocab_size: int
    max_len: int
    published: float         # parameters as the size table prints them
    exact: int | None        # exact count reproduced from the original definition
    decoder_layers: int = 0  # encoder-decoder only
    in_table: bool = True    # one of the eight rows of the lecture's table
    note: str = ""

    @property
    def experiment(self) -> str:
        return self.key.split(":")[0]

    @property
    def variant(self) -> str:
        return self.key.split(":")[1]

    @property
    def layers_text(self) -> str:
        if self.decoder_layers:
            return f"{self.layers + self.decoder_layers} ({self.layers}+{self.decoder_layers})"
        return str(self.layers)


ROWS = (
    Row("transformer:base", "Transformer-Base", 6, 512, 8, 2048, 37_000, 512, 65e6, 63_045_632,
        decoder_layers=6, note="65M not reproducible from the stated 37k vocab"),
    Row("transformer:big", "Transformer-Large", 6, 1024, 16, 4096, 37_000, 512, 213e6,
        214_171_648, decoder_layers=6),
    Row("bert:base", "BERT-Base", 12, 768, 12, 3072, 30_522, 512, 110e6, 109_482_240),
    Row("bert:large", "BERT-Large", 24, 1024, 16, 4096, 30_522, 512, 340e6, 335_141_888),
    Row("xlnet:large", "XLNet-Large", 24, 1024, 16, 4096, 32_000, 512, 340e6, 360_268_800,
        note="model without the 32,000-entry LM bias"),
    Row("roberta:large", "RoBERTa (large)", 24, 1024, 16, 4096, 50_265, 514, 355e6, 355_359_744),
    Row("gpt2:xl", "GPT-2 (XL)", 48, 1600, 25, 6400, 50_257, 1024, 1.5e9, 1_557_611_200),
    Row("megatron:8b3", "Megatron-LM", 72, 3072, 32, 12_288, 50_257, 1024, 8.3e9,
        8_317_040_640, note="vocab padded to 51,200"),
    # Smaller members of the same families (exact counts in REFERENCE.md).
    Row("gpt2:small", "GPT-2 small", 12, 768, 12, 3072, 50_257, 1024, 124e6, 124_439_808,
        in_table=False),
    Row("gpt2:medium", "GPT-2 medium", 24, 1024, 16, 4096, 50_257, 1024, 355e6, 354_823_168,
        in_table=False),
    Row("gpt2:large", "GPT-2 large", 36, 1280, 20, 5120, 50_257, 1024, 774e6, 774_030_080,
        in_table=False),
    Row("roberta:base", "RoBERTa-base", 12, 768, 12, 3072, 50_265, 512, 125e6, 124_052_736,
        in_table=False, note="512 positions, no token-type row"),
)

BY_KEY = {row.key: row for row in ROWS}


def rows_for(experiment: str) -> dict[str, Row]:
    """{variant: row} for one experiment file, e.g. rows_for('gpt2')['xl']."""
    return {row.variant: row for row in ROWS if row.experiment == experiment}


# ---------------------------------------------------------------------------- recipes
# Where the recipe's tokenizer files live: $SCALING_TOKENIZERS, else this directory.
TOKENIZER_DIR_DEFAULT = "~/.cache/scaling/tokenizers"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A row's published pretraining recipe, as the config fields it sets.

    The paper's numbers are kept as published (batch, length, steps, optimizer, schedule,
    regularisation, vocabulary); the layout fields (dtype, micro_batches, remat, mesh) are
    ours: how that batch runs on `devices` accelerators of 80 GB (parallel.recipe_devices).
    """
    key: str                 # the size-table row, "<experiment>:<variant>"
    source: str              # where each number comes from
    batch_size: int          # sequences per optimizer update (train.batch_size)
    seq_len: int             # tokens per sequence (encoder-decoder: source tokens)
    steps: int               # optimizer updates (train.steps)
    lr: float                # peak learning rate (optim.lr)
    warmup_steps: int
    decay: str               # optim.decay after the warmup
    end_lr_fraction: float   # final lr / peak (cosine, linear)
    b1: float
    b2: float
    eps: float
    weight_decay: float      # decoupled (AdamW); 0 = plain Adam
    clip_norm: float         # global-norm clipping (0 = none)
    dropout: float
    tokenizer: str           # data.tokenizer, "{dir}" = the tokenizer directory
    corpus: str              # what the paper trained on (not set: choose data.dataset)
    target_len: int = 0      # encoder-decoder: target tokens per sequence
    dtype: str = "bfloat16"  # compute dtype (the papers used fp16 mixed precision or fp32)
    micro_batches: int = 1   # gradient accumulation steps per update on `devices` devices
    remat: str = "none"
    mesh: str = "data=-1"    # parallel.mesh; -1 fills the devices
    devices: int = 8         # parallel.recipe_devices: the layout above is for this many
    note: str = ""           # what of the paper's recipe is not modelled

    @property
    def tokens_per_batch(self) -> int:
        """Tokens per update (encoder-decoder: per side, source or target)."""
        return self.batch_size * self.seq_len

    @property
    def train_tokens(self) -> int:
        return self.tokens_per_batch * self.steps


def _vaswani(key: str, steps: int, width: int, dropout: float) -> Recipe:
    # Vaswani et al. 2017, "Attention Is All You Need", §5.1-5.4 and Table 3: batches of
    # about 25,000 source and 25,000 target tokens (here 192 x 128 = 24,576 each side);
    # base 100k steps, big 300k; Adam b1 0.9, b2 0.98, eps 1e-9; lrate = d_model^-0.5 *
    # min(step^-0.5, step * warmup^-1.5), warmup 4,000 (= optim.decay 'rsqrt' with peak
    # d_model^-0.5 * warmup^-0.5); dropout 0.1 (big EN-DE: 0.3); shared BPE vocabulary of
    # about 37,000 tokens (WMT 2014 English-German).
    return Recipe(
        key, "Vaswani et al. 2017, sections 5.1-5.4, Table 3",
        batch_size=192, seq_len=128, target_len=128, steps=steps,
        lr=width**-0.5 * 4000**-0.5, warmup_steps=4000, decay="rsqrt", end_lr_fraction=0.0,
        b1=0.9, b2=0.98, eps=1e-9, weight_decay=0.0, clip_norm=0.0, dropout=dropout,
        tokenizer="sentencepiece_model:{dir}/transformer/wmt14_ende_bpe37k.model",
        corpus="WMT 2014 English-German, 4.5M sentence pairs (TFDS wmt14_translate/de-en)",
        note="batches by token count and label smoothing 0.1 are not modelled")


def _bert(key: str, micro_batches: int) -> Recipe:
    # Devlin et al. 2019, appendix A.2: "batch size of 256 sequences (256 sequences * 512
    # tokens = 128,000 tokens/batch) for 1,000,000 steps"; Adam lr 1e-4, b1 0.9, b2 0.999,
    # L2 weight decay 0.01, warmup over the first 10,000 steps, linear decay; dropout 0.1.
    # eps 1e-6 and clipping at global norm 1.0: google-research/bert optimization.py.
    # WordPiece, 30,522 ids (the uncased models share one vocab.txt).
    return Recipe(
        key, "Devlin et al. 2019, appendix A.2; google-research/bert optimization.py",
        batch_size=256, seq_len=512, steps=1_000_000, lr=1e-4, warmup_steps=10_000,
        decay="linear", end_lr_fraction=0.0, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01,
        clip_norm=1.0, dropout=0.1, tokenizer="wordpiece:{dir}/bert-base-uncased/vocab.txt",
        corpus="BooksCorpus + English Wikipedia, 3.3B words (13 GB)",
        micro_batches=micro_batches,
        note="the paper's 90 % of steps at length 128 then 10 % at 512 is run at 512 "
             "throughout")


def _roberta(key: str, lr: float, warmup: int, micro_batches: int, remat: str) -> Recipe:
    # Liu et al. 2019, Table 9 (pretraining hyperparameters): batch 8k sequences of 512
    # tokens, 500k steps; peak lr 6e-4 (base) / 4e-4 (large), warmup 24k / 30k, linear
    # decay; Adam b1 0.9, b2 0.98, eps 1e-6; weight decay 0.01; dropout 0.1; no gradient
    # clipping. Byte-level BPE of 50K units (50,265 ids in the released models).
    return Recipe(
        key, "Liu et al. 2019, Table 9", batch_size=8192, seq_len=512, steps=500_000, lr=lr,
        warmup_steps=warmup, decay="linear", end_lr_fraction=0.0, b1=0.9, b2=0.98, eps=1e-6,
        weight_decay=0.01, clip_norm=0.0, dropout=0.1, tokenizer="roberta_bpe:{dir}/roberta",
        corpus="BooksCorpus, Wikipedia, CC-News, OpenWebText, Stories (160 GB)",
        micro_batches=micro_batches, remat=remat)


# GPT-2 tokens per update: 512 x 1024 (Radford et al. 2019, section 2.3).
_GPT2_BATCH, _GPT2_LEN = 512, 1024


def _gpt2(key: str, lr: float, micro_batches: int, remat: str = "none",
          mesh: str = "data=-1") -> Recipe:
    # Radford et al. 2019, section 2.3: context 1024 tokens, batch 512; the lr was "manually
    # tuned" and is not published, nor the schedule or steps. Those come from GPT-3 (Brown
    # et al. 2020), Table 2.1 (the lr of the nearest model size: 125M 6e-4, 350M 3e-4, 760M
    # 2.5e-4, 1.3B 2e-4) and appendix B: Adam b1 0.9, b2 0.95, eps 1e-8; clipping at 1.0;
    # weight decay 0.1; warmup over 375M tokens; cosine decay to 10 %; 300B tokens. No
    # dropout (openai/gpt-2 model.py has none). Byte-level BPE, 50,257 ids.
    tokens = _GPT2_BATCH * _GPT2_LEN
    return Recipe(
        key, "Radford et al. 2019, section 2.3; Brown et al. 2020, Table 2.1 and appendix B",
        batch_size=_GPT2_BATCH, seq_len=_GPT2_LEN, steps=-(-300_000_000_000 // tokens),
        lr=lr, warmup_steps=round(375_000_000 / tokens), decay="cosine",
        end_lr_fraction=0.1, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, clip_norm=1.0,
        dropout=0.0, tokenizer="gpt2_bpe:{dir}/gpt2", corpus="WebText, 40 GB (not released; "
        "OpenWebText is the public stand-in)", micro_batches=micro_batches, remat=remat,
        mesh=mesh, note="GPT-3 decays over 260B tokens then holds 10 %; here over all steps")


RECIPES = {r.key: r for r in (
    _vaswani("transformer:base", 100_000, 512, 0.1),
    _vaswani("transformer:big", 300_000, 1024, 0.3),
    _bert("bert:base", micro_batches=1),
    _bert("bert:large", micro_batches=2),
    _roberta("roberta:base", 6e-4, 24_000, micro_batches=32, remat="none"),
    _roberta("roberta:large", 4e-4, 30_000, micro_batches=64, remat="none"),
    _gpt2("gpt2:small", 6e-4, micro_batches=4),
    _gpt2("gpt2:medium", 3e-4, micro_batches=16),
    _gpt2("gpt2:large", 2.5e-4, micro_batches=8, remat="dots"),
    _gpt2("gpt2:xl", 2e-4, micro_batches=8, remat="full", mesh="fsdp=-1"),
    # Shoeybi et al. 2019, section 5 (GPT-2 experiments): 1024 tokens, batch 512, 300k
    # iterations; lr 1.5e-4, warmup 3k iterations, single-cycle cosine decay over the
    # remaining 297k stopping at 1e-5; weight decay 0.01, global-norm clipping 1.0, dropout
    # 0.1; 8-way tensor parallelism within a node. Adam betas and eps: Megatron-LM's
    # defaults (0.9, 0.999, 1e-8). GPT-2's BPE padded to 51,200 rows.
    Recipe("megatron:8b3", "Shoeybi et al. 2019, section 5; NVIDIA/Megatron-LM arguments.py",
           batch_size=512, seq_len=1024, steps=300_000, lr=1.5e-4, warmup_steps=3000,
           decay="cosine", end_lr_fraction=1e-5 / 1.5e-4, b1=0.9, b2=0.999, eps=1e-8,
           weight_decay=0.01, clip_norm=1.0, dropout=0.1, tokenizer="gpt2_bpe:{dir}/gpt2",
           corpus="Wikipedia, CC-Stories, RealNews, OpenWebText (174 GB)",
           micro_batches=64, remat="full", mesh="data=-1,tensor=8"),
    # Yang et al. 2019, section 3.1 and appendix A.3 (Table 7): sequence length 512, batch
    # 8192, 500k steps; lr 4e-4, warmup 40,000, linear decay; Adam eps 1e-6, weight decay
    # 0.01; dropout 0.1; partial prediction K = 6. b1/b2 and clipping (1.0): zihangdai/xlnet
    # model_utils.py (BERT's AdamWeightDecay). SentencePiece, 32,000 ids (cased).
    Recipe("xlnet:large", "Yang et al. 2019, section 3.1, Table 7; zihangdai/xlnet",
           batch_size=8192, seq_len=512, steps=500_000, lr=4e-4, warmup_steps=40_000,
           decay="linear", end_lr_fraction=0.0, b1=0.9, b2=0.999, eps=1e-6,
           weight_decay=0.01, clip_norm=1.0, dropout=0.1,
           tokenizer="sentencepiece_model:{dir}/xlnet/spiece.model",
           corpus="BooksCorpus, Wikipedia, Giga5, ClueWeb 2012-B, Common Crawl (126 GB)",
           micro_batches=64, remat="full",
           note="the 384-token memory of Transformer-XL is not modelled"),
)}


# ------------------------------------------------------------------ published training runs
# What each row's paper (and the lecture's size table, ../shared/REFERENCE.md) says its
# pretraining cost: hardware, device count, wall-clock time and tokens, each with a citation.
# `scaling plan --table --published` turns them into model FLOPs, the implied MFU and the
# same run on H100s. Where two sources disagree both are kept, the paper's first.

LECTURE = "lecture size table (shared/REFERENCE.md)"


@dataclasses.dataclass(frozen=True)
class Phase:
    """One stretch of training at one shape: `steps` updates of `tokens_per_step` tokens."""
    steps: int
    tokens_per_step: int     # all tokens of an update (encoder-decoder: source + target)
    seq_len: int             # the context the attention FLOPs are counted at
    text: str                # as the paper states it
    target_len: int = 0      # encoder-decoder: target context

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step


@dataclasses.dataclass(frozen=True)
class Claim:
    """A published wall-clock time and who says so; `phases` where that source's run was
    a different one (empty: the run's own phases)."""
    hours: float
    source: str
    phases: tuple[Phase, ...] = ()


@dataclasses.dataclass(frozen=True)
class PublishedRun:
    key: str                        # the size-table row
    device: str | None              # scaling.hardware.DEVICES key; None: not published
    devices: int
    hardware_source: str
    times: tuple[Claim, ...]        # the paper's first
    phases: tuple[Phase, ...]
    tokens_source: str
    precision: str                  # the peak the implied MFU divides by: bf16, fp16, fp32
    precision_source: str
    note: str = ""
    lecture_cost: str = ""          # a cost the lecture quotes for this run

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.phases)

    @property
    def published(self) -> bool:
        return self.device is not None and bool(self.times) and bool(self.phases)


def _vaswani_run(key: str, steps: int, hours: float, time_text: str, lecture: str) -> PublishedRun:
    return PublishedRun(
        key, "p100", 8,
        "Vaswani et al. 2017, section 5.2: 'one machine with 8 NVIDIA P100 GPUs'",
        (Claim(hours, f"Vaswani et al. 2017, section 5.2: {time_text}"),
         Claim(hours, f"{LECTURE}: {lecture}")),
        # ~25k + 25k tokens per update; the attention term at the recipe's 128-token
        # stand-in for WMT sentence lengths (about 1 % of the FLOPs either way).
        (Phase(steps, 50_000, 128, f"{steps // 1000}k steps x ~25k source + ~25k target "
               "tokens", target_len=128),),
        "Vaswani et al. 2017, section 5.1: 'approximately 25000 source tokens and 25000 "
        "target tokens' per batch; section 5.2: steps",
        "fp32",
        "Vaswani et al. 2017, Table 2 footnote: cost = time x GPUs x 'sustained "
        "single-precision floating-point capacity', 9.5 TFLOPS for a P100 (the SXM2 "
        "datasheet says 10.6; the table uses that)")


def _bert_run(key: str, cloud_tpus: int) -> PublishedRun:
    chips = 4 * cloud_tpus
    return PublishedRun(
        key, "tpu-v2", chips,
        f"Devlin et al. 2019, appendix A.2: '{cloud_tpus} Cloud TPUs in Pod configuration "
        f"({chips} TPU chips total)'; the generation is not stated: TPU v2 assumed (the "
        "Cloud TPU Pods of 2018; Strubell et al. 2019, Table 3 also list TPUv2)",
        (Claim(96, "Devlin et al. 2019, appendix A.2: 'Each pretraining took 4 days to "
               "complete'"),),
        (Phase(900_000, 256 * 128, 128, "900k steps x 256 x 128"),
         Phase(100_000, 256 * 512, 512, "100k steps x 256 x 512")),
        "Devlin et al. 2019, appendix A.2: 1,000,000 steps of 256 sequences; length 128 for "
        "90 % of the steps and 512 for the rest (batch 256 in both: our reading)",
        "bf16", "TPU matmuls run in bf16 on the MXU (the paper does not say)",
        note="the implied MFU assumes TPU v2; on TPU v3 chips it would be 2.7x lower")


PUBLISHED_RUNS = {r.key: r for r in (
    _vaswani_run("transformer:base", 100_000, 12,
                 "'100,000 steps or 12 hours', about 0.4 s per step", "8xP100, 12 hours"),
    _vaswani_run("transformer:big", 300_000, 3.5 * 24,
                 "'300,000 steps (3.5 days)', 1.0 s per step", "8xP100, 3.5 days"),
    _bert_run("bert:base", 4),
    _bert_run("bert:large", 16),
    PublishedRun(
        "xlnet:large", "tpu-v3", 512,
        "Yang et al. 2019, section 3.1: '512 TPU v3 chips'",
        (Claim(5.5 * 24, "Yang et al. 2019 (NeurIPS version, arXiv v2+), section 3.1: "
               "500K steps, batch 8192, 'about 5.5 days'"),
         Claim(2.5 * 24, f"{LECTURE}: 512 TPU-v3, 2.5 days; the paper's first arXiv version "
               "(1906.08237v1, quoted by Synced, 'The Staggering Cost of Training SOTA AI "
               "Models', 2019): 'on 512 TPU v3 chips for 500K steps ... a batch size of 2048, "
               "which takes about 2.5 days'",
               (Phase(500_000, 2048 * 512, 512, "500K steps x 2048 x 512 (v1)"),))),
        (Phase(500_000, 8192 * 512, 512, "500K steps x 8192 x 512"),),
        "Yang et al. 2019, section 3.1 and Table 7: 500K steps, batch 8192, length 512",
        "bf16", "TPU matmuls run in bf16 on the MXU",
        note="model FLOPs count both attention streams; the 384-token memory and "
             "partial prediction are not counted"),
    PublishedRun(
        "roberta:large", "v100", 1024,
        "Liu et al. 2019, sections 3.1 and 5: DGX-1 machines, 8 x 32GB V100 each, "
        "InfiniBand; 1024 V100 GPUs",
        (Claim(24, "Liu et al. 2019, section 5: 'We pretrain our model using 1024 V100 GPUs "
               "for approximately one day' (the first 100K-step run)"),
         Claim(24, f"{LECTURE}: 1024 V100, 1 day")),
        (Phase(100_000, 8192 * 512, 512, "100K steps x 8K x 512"),),
        "Liu et al. 2019, section 5 and Table 4: the one-day run is 100K steps of 8K "
        "sequences of 512 tokens (BooksCorpus + Wikipedia)",
        "fp16", "Liu et al. 2019, section 3.1: mixed precision floating point arithmetic",
        note="the released model trained 500K steps (Table 4) in a time the paper does not "
             "give; read as 500K steps in one day, the implied MFU would be 5x"),
    PublishedRun(
        "gpt2:xl", None, 0,
        "Radford et al. 2019 publish no hardware, training time or number of steps "
        "(only batch 512 x 1024 tokens)", (), (), "not published", "bf16", "not published"),
    PublishedRun(
        "megatron:8b3", "v100", 512,
        "Shoeybi et al. 2019, section 5: 32 DGX-2H servers, 512 V100 SXM3 32GB, 8-way "
        "tensor x 64-way data parallelism",
        (Claim(9.2 * 24, "Shoeybi et al. 2019, Table 2: 2.10 days per epoch on 512 GPUs, "
               "x 300k iterations / 68,507 iterations per epoch (the epoch length as we "
               "recall the paper's text: approximately 9.2 days)"),
         Claim(9 * 24, f"{LECTURE}: 512 V100, 9 days")),
        (Phase(300_000, 512 * 1024, 1024, "300k iterations x 512 x 1024"),),
        "Shoeybi et al. 2019, section 5: batch 512, 300k iterations, sequence 1024",
        "fp16", "Shoeybi et al. 2019, section 5: mixed precision training",
        note="the paper's own 15.1 PFLOP/s sustained counts activation recomputation "
             "(8N per token, not 6N)",
        lecture_cost="~$430,000 on AWS (lecture): 512 GPUs x 216 h x $3.90 per V100-hour "
                     "(p3dn.24xlarge) = $431k"),
)}
