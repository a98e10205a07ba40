"""Image captioning with Transformers: CNN features -> Transformer encoder -> Transformer
decoder with cross-attention -> caption (scaling/models/captioning.py).

The backbone is a small ResNet (GroupNorm, stride-1 stem, stride 2 at every later stage);
its Y x X feature grid, projected to the model width with 2-D sinusoidal positions, is the
encoder's input. The decoder is teacher-forced on the caption with a causal loss.

Variants:
  tiny   32 px shapes from the built-in set (data.dataset='shapes', nothing downloaded),
         a 3-stage backbone (8 x 8 image tokens) with SAGAN self-attention, word
         tokenizer, 2+2 layers of width 128:
         trains on 2 CPU cores in minutes
           scaling train --config experiments/captioning.py:tiny --workdir runs/cap
  base   Transformer-Base (6+6 layers, 512/2048, 8 heads) over a 5-stage ResNet at 224 px
         (14 x 14 image tokens), on TFDS coco_captions ('captions/text')
  large  Transformer-Big (6+6 layers, 1024/4096, 16 heads) over a wider, deeper ResNet
base and large keep Vaswani et al.'s Transformer shapes; their training fields are plain
defaults for a COCO run, not a published recipe.
"""
from __future__ import annotations

from scaling.config import base_config

# Shared by every variant: a pre-LN Transformer (learned caption positions).
FAMILY = dict(family="captioning", positions="learned", norm="pre", activation="gelu",
              attention_bias=True, mlp_bias=True, final_norm=True, tie_embeddings=True,
              image_attention=False)

# COCO's caption words seen at least 5 times number about 10k; a fixed size lets `scaling
# compile` and `scaling params` size base and large without the dataset (a larger word
# vocabulary is a one-line error naming model.vocab_size).
COCO_VOCAB = 10_240

VARIANTS = {
    "tiny": dict(name="captioning-tiny", vocab_size=0, num_layers=2, num_decoder_layers=2,
                 width=128, num_heads=4, mlp_dim=512, max_len=32, image_size=32,
                 backbone_widths=(16, 32, 64), backbone_depths=(1, 1, 1),
                 backbone_groups=8, image_attention=True),
    "base": dict(name="Captioning-Base", vocab_size=COCO_VOCAB, num_layers=6,
                 num_decoder_layers=6, width=512, num_heads=8, mlp_dim=2048, max_len=64,
                 image_size=224,
                 backbone_widths=(32, 64, 128, 256, 512), backbone_depths=(1, 2, 2, 2, 2),
                 backbone_groups=32),
    "large": dict(name="Captioning-Large", vocab_size=COCO_VOCAB, num_layers=6,
                  num_decoder_layers=6, width=1024, num_heads=16, mlp_dim=4096, max_len=64,
                  image_size=224,
                  backbone_widths=(64, 128, 256, 512, 1024),
                  backbone_depths=(2, 2, 2, 2, 2), backbone_groups=32),
}

# The built-in shapes set: the longest caption is 21 words (+1 for BOS/EOS). No
# augmentation: with 20k images seen about once, "crop" left the held-out loss higher after
# the tiny run's steps than "none" (the images are drawn fresh, there is little to overfit).
TINY_DATA = dict(dataset="shapes", objective="captioning", tokenizer="words", seq_len=24,
                 target_len=24, augment="none", image_mean=(0.5, 0.5, 0.5),
                 image_std=(0.25, 0.25, 0.25), shapes_num_train=20000,
                 shapes_num_validation=1000)
TINY_TRAIN = dict(steps=3000, batch_size=32, log_every=50, eval_every=500, eval_steps=8)
TINY_OPTIM = dict(lr=2e-3, warmup_steps=50, weight_decay=0.0)

# COCO (TFDS coco_captions: image, captions/text; about 5 captions per image).
COCO_DATA = dict(dataset="coco_captions", objective="captioning", image_key="image",
                 caption_key="captions/text", tokenizer="words", words_min_count=5,
                 seq_len=48, target_len=48, augment="crop")
COCO_TRAIN = dict(steps=100_000, batch_size=256, log_every=100, eval_every=2000,
                  eval_steps=16)
COCO_OPTIM = dict(lr=5e-4, warmup_steps=4000, decay="cosine", weight_decay=0.01, b2=0.98)


def get_config(variant: str = "tiny"):
    if variant not in VARIANTS:
        raise ValueError(f"experiments/captioning.py: unknown variant {variant!r}; choose one "
                         f"of: {', '.join(VARIANTS)}")
    config = base_config()
    config.model.update(FAMILY)
    config.model.update(VARIANTS[variant])
    tiny = variant == "tiny"
    config.data.update(TINY_DATA if tiny else COCO_DATA)
    config.train.update(TINY_TRAIN if tiny else COCO_TRAIN)
    config.optim.update(TINY_OPTIM if tiny else COCO_OPTIM)
    if not tiny:
        config.model.dtype = "bfloat16"
    config.experiment = f"captioning:{variant}"
    return config
