"""ModelSpec: the validated, immutable form of a config's `model` section.

Modules take a ModelSpec rather than a ConfigDict: it is hashable (Linen attributes must be),
its fields are checked once, before any array exists, and it owns the FLOP accounting.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from scaling.kernels import ATTENTION_IMPLS, KERNEL_SETS

FAMILIES = ("decoder", "encoder", "encoder_decoder", "xlnet", "captioning")
NORMS = ("pre", "post")
POSITIONS = ("learned", "sinusoidal", "relative")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")  # scaling.nn.functional.ACTIVATIONS
REMAT = ("none", "dots", "full")
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Architecture hyperparameters: the `model` section of every config, declared once here.

    scaling.config.model_config() builds the config section from these fields and defaults;
    a config then overrides them (`--config.model.width=512`).
    """
    name: str = "model"            # display name, e.g. "GPT-2 XL"
    family: str = "decoder"        # decoder | encoder | encoder_decoder | xlnet
    vocab_size: int = 256          # real vocabulary size (tokenizer's; 0 in a config = take
                                   #   the tokenizer's, see scaling.models.model_spec)
    vocab_pad_multiple: int = 1    # embedding rows padded up to a multiple of this (Megatron:
                                   #   128)
    num_layers: int = 2            # decoder / encoder-only layers; encoder_decoder: encoder
    num_decoder_layers: int = 0    # encoder_decoder only: decoder layers (0 = num_layers)
    width: int = 64                # D, the model width
    num_heads: int = 4             # N; head_dim H = width // num_heads
    mlp_dim: int = 256             # F
    max_len: int = 128             # rows of a learned position table
    position_offset: int = 0       # position p reads row p + offset (RoBERTa: 2, fairseq's
                                   #   padding_idx + 1); the longest sequence is max_len - offset
    positions: str = "learned"     # learned | sinusoidal | relative (xlnet only)
    norm: str = "pre"              # pre (GPT-2) | post (Vaswani, BERT)
    activation: str = "gelu"       # gelu (exact, erf) | gelu_tanh (tanh approximation) | relu
    attention_bias: bool = True    # biases on Q/K/V/O projections
    mlp_bias: bool = True          # biases on the two MLP projections
    type_vocab_size: int = 0       # token types (BERT: 2, RoBERTa: 1); encoder only
    embedding_norm: bool = False   # LayerNorm right after the embedding sum (BERT)
    pooler: bool = False           # tanh pooler over the first token (BERT)
    mlm_head: bool = False         # BERT's transform (dense + act + LN) before the tied output
    final_norm: bool = True        # LayerNorm after the last block (pre-norm models)
    tie_embeddings: bool = True    # the output projection is the token embedding's transpose
    output_bias: bool = False      # a bias on the output logits
    embed_scale: bool = False      # multiply embeddings by sqrt(width) (Vaswani)
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    dtype: str = "float32"         # compute dtype: float32 | bfloat16 (params stay float32)
    scan_layers: bool = False      # lax.scan over identical layers (flat compile time in depth)
    remat: str = "none"            # none | dots | full
    kernels: str = "auto"          # auto (cpu: xla_cpu, gpu: gpu, tpu: reference) | reference
                                   #   (scaling.nn, plain jnp) | xla_cpu | gpu (cuDNN attention)
                                   #   | tpu (splash attention); see scaling.kernels
    attention_impl: str = "auto"   # attention-only override of model.kernels: auto (the kernel
                                   #   set's) | xla (einsum reference) | blocked (causal: skips
                                   #   fully masked key blocks) | jax (jax.nn.dot_product_attention)
                                   #   | splash (Pallas TPU kernel)
    attention_block: int = 128     # query/key block length of blocked and splash attention
    untie_relative_bias: bool = True  # xlnet only: each layer has its own relative-attention
                                      #   biases (False: one set shared by all layers)
    image_size: int = 32           # captioning only: images are image_size x image_size x 3
    backbone_widths: tuple = (32, 64)  # captioning only: channels of each ConvBackbone stage
    backbone_depths: tuple = (1, 1)    # captioning only: basic blocks per stage
    backbone_groups: int = 8       # captioning only: GroupNorm groups (divide every width)
    image_attention: bool = False  # captioning only: SAGAN self-attention after the backbone

    def __post_init__(self):
        for field in ("backbone_widths", "backbone_depths"):  # config lists -> hashable tuples
            object.__setattr__(self, field, tuple(int(v) for v in getattr(self, field)))

        def choice(field, allowed):
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"model.{field}: unknown value {value!r}; allowed: "
                                 + ", ".join(repr(a) for a in allowed))

        choice("family", FAMILIES)
        choice("norm", NORMS)
        choice("positions", POSITIONS)
        choice("activation", ACTIVATIONS)
        choice("remat", REMAT)
        choice("dtype", DTYPES)
        choice("kernels", KERNEL_SETS)
        choice("attention_impl", ATTENTION_IMPLS)
        for field in ("vocab_size", "vocab_pad_multiple", "num_layers", "width", "num_heads",
                      "mlp_dim", "max_len", "attention_block"):
            if int(getattr(self, field)) <= 0:
                raise ValueError(f"model.{field}: must be a positive integer, "
                                 f"got {getattr(self, field)!r}")
        for field in ("num_decoder_layers", "type_vocab_size", "position_offset"):
            if int(getattr(self, field)) < 0:
                raise ValueError(f"model.{field}: must be >= 0, got {getattr(self, field)!r}")
        if self.attention_impl == "splash" and self.family == "xlnet":
            raise ValueError("model.attention_impl: 'splash' takes no attention bias and "
                             "XLNet's relative attention needs one; use 'auto' or 'xla'")
        if self.kernels == "tpu" and self.attention_impl == "auto" and self.family == "xlnet":
            raise ValueError("model.kernels: 'tpu' attention (splash) takes no attention "
                             "bias and XLNet's relative attention needs one; add "
                             "model.attention_impl='xla'")
        if self.attention_impl == "splash" and self.attention_block % 128:
            raise ValueError(f"model.attention_block: splash attention needs a multiple of "
                             f"128, got {self.attention_block}")
        if self.position_offset and self.positions != "learned":
            raise ValueError(f"model.position_offset: only learned position tables have an "
                             f"offset; got positions={self.positions!r}")
        if self.position_offset >= self.max_len:
            raise ValueError(f"model.position_offset: {self.position_offset} leaves no row of "
                             f"the {self.max_len}-row position table (model.max_len)")
        if self.width % self.num_heads:
            raise ValueError(f"model.width: {self.width} is not divisible by model.num_heads="
                             f"{self.num_heads}; choose a width that is a multiple of num_heads")
        if self.positions == "sinusoidal" and self.width % 2:
            raise ValueError(f"model.width: sinusoidal positions need an even width, "
                             f"got {self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout: must be in [0, 1), got {self.dropout!r}")
        if self.family == "captioning":
            self._check_image_front_end()
        if (self.positions == "relative") != (self.family == "xlnet"):
            raise ValueError("model.positions: 'relative' is used by (and only by) the xlnet "
                             f"family; got positions={self.positions!r} for family="
                             f"{self.family!r}")

    def _check_image_front_end(self) -> None:
        """Captioning: the backbone builds, and the image is no smaller than its stride."""
        widths, depths, groups = self.backbone_widths, self.backbone_depths, self.backbone_groups
        if not widths or len(widths) != len(depths):
            raise ValueError(f"model.backbone_depths: needs one entry per stage of "
                             f"model.backbone_widths={widths}, got {depths}")
        if min(widths) < 1 or min(depths) < 1:
            raise ValueError(f"model.backbone_widths/backbone_depths: every stage needs >= 1 "
                             f"channel and >= 1 block, got {widths}, {depths}")
        if groups < 1 or any(w % groups for w in widths):
            raise ValueError(f"model.backbone_groups: {groups} does not divide every width of "
                             f"model.backbone_widths={widths}; choose widths that are "
                             "multiples of it")
        stride = 2 ** (len(widths) - 1)
        if self.image_size < stride:
            raise ValueError(f"model.image_size: {self.image_size} is smaller than the "
                             f"backbone's total stride {stride} ({len(widths)} stages in "
                             f"model.backbone_widths); use images of at least {stride} px or "
                             "fewer stages")

    @classmethod
    def from_config(cls, model_cfg) -> "ModelSpec":
        """Build from a ConfigDict/dict, rejecting fields this spec does not know."""
        values = dict(model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else model_cfg)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"model.{unknown[0]}: unknown field; known fields: "
                             + ", ".join(sorted(known)))
        return cls(**values)

    # ---- derived sizes -------------------------------------------------------------
    @property
    def max_positions(self) -> int:
        """The longest sequence the position table serves (rows past the offset)."""
        return self.max_len - self.position_offset

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def padded_vocab_size(self) -> int:
        m = self.vocab_pad_multiple
        return -(-self.vocab_size // m) * m

    @property
    def decoder_layers(self) -> int:
        """Decoder depth of an encoder-decoder model (num_layers if not set)."""
        return self.num_decoder_layers or self.num_layers

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    # ---- FLOP accounting -------------------------------------------------------------
    def matmul_params(self) -> int:
        """Parameters that multiply activations once per token (2 FLOPs each, forward).

        Every weight matrix of the blocks plus the output projection (V_pad x D, tied or not).
        Embedding lookups, positions, norms and biases cost no matmul FLOPs, so they are left
        out, as in Kaplan et al. (who also drop the unembedding; we keep it because its matmul
        is real work: 2·V·D FLOPs per token).
        """
        d, f = self.width, self.mlp_dim
        attn = 4 * d * d
        mlp = 2 * d * f
        if self.family in ("encoder_decoder", "captioning"):
            enc = self.num_layers * (attn + mlp)
            dec = self.decoder_layers * (2 * attn + mlp)
            return enc + dec + self.padded_vocab_size * d
        layer = attn + mlp
        if self.family == "xlnet":
            # Weight uses per token, not distinct weights: the query stream reuses q, o and
            # the MLP (2d² + 2df), and the r projection runs on 2T relative positions per
            # T tokens (2d² per token): 8d² + 4df per layer in all.
            layer += 2 * d * d + mlp + 2 * d * d
        head = d * d if self.mlm_head else 0
        return self.num_layers * layer + head + self.padded_vocab_size * d

    def train_flops_per_sequence(self, seq_len: int, target_len: int = 0,
                                 convention: str = "palm") -> float:
        """Training FLOPs (forward + backward = 3x forward) for one example.

        convention="palm": 6·N·tokens + 12·L·T²·d per sequence (PaLM appendix B, nanoGPT's
          MFU): the attention score and value matmuls, 2·2·T·T·d forward per layer, counted
          in full (no causal halving), times 3 for training.
        convention="kaplan": 6·N·tokens + 6·L·T²·d (Kaplan et al. 2020, eq. 2.2 counts the
          attention context term as 2·L·T·d forward per token).
        An encoder-decoder counts the encoder on S source tokens, the decoder on T target
        tokens, and cross-attention as T·S per decoder layer. Captioning counts the same
        with S = the image tokens, plus 3x image_front_end_flops (backbone, SAGAN, the
        projection to width D) per example. MLM counts logits at every
        position because the model computes them there.
        """
        attn_coeff = {"palm": 12, "kaplan": 6}[convention]
        d = self.width
        n = self.matmul_params()
        if self.family in ("encoder_decoder", "captioning"):
            s, t = seq_len, target_len or seq_len
            image = 0.0
            if self.family == "captioning":  # the encoder reads the image tokens
                s = self.image_tokens
                image = 3 * image_front_end_flops(
                    self.image_size, self.backbone_widths, self.backbone_depths,
                    self.image_attention, d)
            enc_n = self.num_layers * (4 * d * d + 2 * d * self.mlp_dim)
            dec_n = n - enc_n
            dense = 6 * (enc_n * s + dec_n * t)
            attn = attn_coeff * d * (self.num_layers * s * s
                                     + self.decoder_layers * (t * t + t * s))
            return float(dense + attn + image)
        t = seq_len
        # xlnet: per stream, content scores [T, T] + position scores [T, 2T] + values [T, T]
        # are twice a standard layer's, and there are two streams: 4x.
        layers_t2 = self.num_layers * t * t * (4 if self.family == "xlnet" else 1)
        return float(6 * n * t + attn_coeff * layers_t2 * d)

    def tokens_per_sequence(self, seq_len: int, target_len: int = 0) -> int:
        """Tokens one example counts for throughput; captioning: the caption's T only (the
        image's cost is spread over them by flops_per_token)."""
        if self.family == "encoder_decoder":
            return seq_len + (target_len or seq_len)
        if self.family == "captioning":
            return target_len or seq_len
        return seq_len

    @property
    def image_tokens(self) -> int:
        """Captioning: Y·X, the backbone's feature grid cells the encoder reads."""
        side = self.image_size
        for _ in range(len(self.backbone_widths) - 1):
            side = -(-side // 2)
        return side * side

    def flops_per_token(self, seq_len: int, target_len: int = 0,
                        convention: str = "palm") -> float:
        """Training FLOPs per token processed (see train_flops_per_sequence)."""
        return (self.train_flops_per_sequence(seq_len, target_len, convention)
                / self.tokens_per_sequence(seq_len, target_len))


def image_front_end_flops(image_size: int, widths, depths, image_attention: bool,
                          width: int) -> float:
    """Forward FLOPs (2 per multiply-add) of the captioner's image front end on one image.

    The ConvBackbone (scaling.nn.vision_layers: a 3x3 stem to widths[0], then per stage
    basic blocks of two 3x3 convolutions, the first block of every later stage with stride
    2, and a 1x1 shortcut projection where a block changes the grid or the channels), the
    optional SAGAN module (1x1 q, k to C/8, v and out C x C; scores and values over the
    Y·X cells) and the 1x1 projection to the model width. Norms and ReLUs are not counted.
    """
    def conv(side, window, c_in, c_out):
        return 2 * side * side * window * window * c_in * c_out

    side, c = image_size, 3
    flops = conv(side, 3, c, widths[0])
    c = widths[0]
    for stage, (w, depth) in enumerate(zip(widths, depths)):
        for block in range(depth):
            stride = 2 if stage > 0 and block == 0 else 1
            side = -(-side // stride)
            flops += conv(side, 3, c, w) + conv(side, 3, w, w)
            if stride != 1 or c != w:
                flops += conv(side, 1, c, w)
            c = w
    cells = side * side
    if image_attention:
        e = max(c // 8, 1)
        flops += 2 * cells * (2 * c * e + 2 * c * c) + 2 * cells * cells * (e + c)
    return float(flops + 2 * cells * c * width)
