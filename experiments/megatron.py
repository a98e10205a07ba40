"""Megatron-LM (Shoeybi et al. 2019): GPT-2 layout at 8.3B, vocabulary padded to 51,200.

Padding 50,257 up to a multiple of 1,024 (= 128 x 8 tensor-parallel ranks) gives 51,200.
Variants: tiny, 8b3.
"""
from experiments._family import make_config
from experiments.gpt2 import FAMILY as GPT2

FAMILY = dict(GPT2, vocab_pad_multiple=1024)
TINY = dict(vocab_size=0, vocab_pad_multiple=128, num_layers=4, width=128, num_heads=4,
            mlp_dim=512, max_len=128)


def get_config(variant: str = "tiny"):
    return make_config("megatron", variant, FAMILY, TINY, data=dict(objective="causal_lm"))
