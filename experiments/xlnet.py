"""XLNet (Yang et al. 2019): two-stream relative-position attention, permutation LM.

Transformer-XL relative positions and segments, post-LN, no Q/K/V/O biases, tied softmax
with an LM bias; trained on the permutation language-modelling objective with partial
prediction (data.perm_k = K: the last 1/K of each factorization order is predicted).
Variants: tiny (trains on a laptop CPU), large.
    scaling train --config experiments/xlnet.py:tiny --workdir runs/xlnet
"""
from experiments._family import make_config

FAMILY = dict(family="xlnet", positions="relative", norm="post", activation="gelu",
              attention_bias=False, mlp_bias=True, type_vocab_size=0, embedding_norm=False,
              pooler=False, mlm_head=False, final_norm=False, tie_embeddings=True,
              output_bias=True, untie_relative_bias=True, layer_norm_eps=1e-12)
# Byte-level vocabulary of the built-in corpus: vocab_size 0 = take the tokenizer's.
TINY = dict(vocab_size=0, num_layers=2, width=128, num_heads=4, mlp_dim=512, max_len=128)


def get_config(variant: str = "tiny"):
    # K = 6 as in the XLNet paper (section 2.3, "partial prediction").
    config = make_config("xlnet", variant, FAMILY, TINY,
                         data=dict(objective="permutation_lm", perm_k=6.0))
    config.optim.lr = 1e-3 if variant == "tiny" else 1e-4
    return config
