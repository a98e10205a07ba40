"""The Transformer of Vaswani et al. 2017: encoder-decoder, post-LN, sinusoidal positions,
ReLU MLP, no biases on the attention projections, one shared embedding matrix (scaled by
sqrt(D)) for source, target and output.

Trained offline on span-corruption denoising of the built-in corpus, or on a translation
dataset by TFDS name (--config.data.dataset=wmt14_translate/de-en --config.data.objective=
translation --config.data.text_key=de --config.data.target_key=en).
Variants: tiny, base, big.
"""
from experiments._family import make_config

FAMILY = dict(family="encoder_decoder", positions="sinusoidal", norm="post", activation="relu",
              attention_bias=False, mlp_bias=True, final_norm=False, tie_embeddings=True,
              embed_scale=True, layer_norm_eps=1e-6)
TINY = dict(vocab_size=0, num_layers=2, num_decoder_layers=2, width=128, num_heads=4,
            mlp_dim=512, max_len=256)


def get_config(variant: str = "tiny"):
    return make_config("transformer", variant, FAMILY, TINY,
                       data=dict(objective="span_corruption", seq_len=128, target_len=64))
