"""BERT (Devlin et al. 2019): encoder-only, post-LN, 2 token types, pooler, MLM head.

Masked-LM with static masks (each example masked the same way every epoch).
Variants: tiny, base, large.
"""
from experiments._family import make_config

FAMILY = dict(family="encoder", positions="learned", norm="post", activation="gelu",
              attention_bias=True, mlp_bias=True, type_vocab_size=2, embedding_norm=True,
              pooler=True, mlm_head=True, final_norm=False, tie_embeddings=True,
              output_bias=True, layer_norm_eps=1e-12)
TINY = dict(vocab_size=0, num_layers=4, width=128, num_heads=4, mlp_dim=512, max_len=128)


def get_config(variant: str = "tiny"):
    config = make_config("bert", variant, FAMILY, TINY,
                         data=dict(objective="mlm", dynamic_masking=False))
    config.optim.lr = 1e-3 if variant == "tiny" else 1e-4
    return config
