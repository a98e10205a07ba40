"""XLNet (`XLNetLMHeadModel` / `XLNetModel`) <-> our xlnet family.

HF stores the relative-attention projections as [D, N, H] parameters, ours too, except the
output projection `o` ([D, N, H] used as "BTNH,DNH->BTD"), which is our w_o [N, H, D]
transposed. Biases r_w/r_r/r_s and seg_embed are per layer (HF always unties them). The LM
head is tied to the word embedding and has a bias (`lm_loss.bias`). Only the attention HF
uses for pretrained XLNet converts: attn_type "bi", no bi_data, no clamp_len.
"""
from __future__ import annotations

import numpy as np

from scaling.hf.errors import HFError
from scaling.hf.tensors import (HF_ACTIVATIONS, Tensors, activation, blocks, layer_list,
                                norm, require, require_fields, vocab_rows)

MODEL_TYPES = ("xlnet",)
FAMILY = "xlnet"
MAX_LEN = 512  # XLNet's pretraining length; relative positions need no table, so any works
_BIASES = ("r_w_bias", "r_r_bias", "r_s_bias")


def model_fields(hf: dict) -> dict:
    """Our model config fields for an HF XLNetConfig dict."""
    require(hf, "attn_type", ("bi",), "bi")
    require(hf, "bi_data", (False,), False)
    require(hf, "tie_word_embeddings", (True,), True)
    if (hf.get("clamp_len") or -1) > 0:
        raise HFError(f"config.json: clamp_len={hf['clamp_len']} is not supported (only -1)")
    d, n = hf["d_model"], hf["n_head"]
    if hf.get("d_head", d // n) * n != d:
        raise HFError(f"config.json: d_head={hf['d_head']} x n_head={n} != d_model={d}")
    return dict(family="xlnet", positions="relative", norm="post",
                activation=activation(hf, "ff_activation"), attention_bias=False,
                mlp_bias=True, type_vocab_size=0, embedding_norm=False, pooler=False,
                mlm_head=False, final_norm=False, tie_embeddings=True, output_bias=True,
                untie_relative_bias=True, vocab_size=hf["vocab_size"],
                num_layers=hf["n_layer"], width=d, num_heads=n, mlp_dim=hf["d_inner"],
                max_len=MAX_LEN, layer_norm_eps=hf.get("layer_norm_eps", 1e-12))


def has_head(tensors: dict) -> bool:
    return "lm_loss.bias" in tensors


def to_params(tensors: dict, spec, fresh_head: dict | None = None) -> dict:
    """Our parameter tree (numpy) from HF tensors; HFError on any misfit.

    Args:
      fresh_head: our initialised `head` subtree, used when the checkpoint has no LM head.
    """
    t = Tensors(tensors)
    p = t.prefix_of("word_embedding.weight", "transformer.")
    d, n, h, f, v = spec.width, spec.num_heads, spec.head_dim, spec.mlp_dim, spec.vocab_size
    words = t.take(p + "word_embedding.weight", (v, d))
    params = {"embed": {"tokens": {"embedding": vocab_rows(words, spec.padded_vocab_size)}},
              "mask_emb": t.take(p + "mask_emb", (1, 1, d)).reshape(d)}
    layers = []
    for i in range(spec.num_layers):
        q = f"{p}layer.{i}."
        a = q + "rel_attn."
        attn = {f"w_{x}": t.take(a + x, (d, n, h)) for x in "qkvr"}
        attn["w_o"] = t.take(a + "o", (d, n, h)).transpose(1, 2, 0)
        attn["seg_embed"] = t.take(a + "seg_embed", (2, n, h))
        attn.update({b: t.take(a + b, (n, h)) for b in _BIASES})
        layers.append({
            "attn": attn,
            "ln_attn": norm(t.take(a + "layer_norm.weight", (d,)),
                            t.take(a + "layer_norm.bias", (d,))),
            "mlp": {"w_in": t.take(q + "ff.layer_1.weight", (f, d), transpose=True),
                    "b_in": t.take(q + "ff.layer_1.bias", (f,)),
                    "w_out": t.take(q + "ff.layer_2.weight", (d, f), transpose=True),
                    "b_out": t.take(q + "ff.layer_2.bias", (d,))},
            "ln_mlp": norm(t.take(q + "ff.layer_norm.weight", (d,)),
                           t.take(q + "ff.layer_norm.bias", (d,)))})
    params["blocks"] = blocks(layers, spec.scan_layers)
    if t.has("lm_loss.bias") or fresh_head is None:
        params["head"] = {"bias": vocab_rows(t.take("lm_loss.bias", (v,)),
                                             spec.padded_vocab_size)}
        t.take_tied("lm_loss.weight", words)
    else:
        params["head"] = fresh_head
    t.finish()
    return params


def check_exportable(spec) -> None:
    """HFError unless an XLNetLMHeadModel computes what `spec` does."""
    wanted = dict(norm="post", attention_bias=False, mlp_bias=True, output_bias=True,
                  tie_embeddings=True, embedding_norm=False, embed_scale=False,
                  type_vocab_size=0, mlm_head=False, final_norm=False)
    require_fields(spec, wanted, "XLNet")


def to_hf(params: dict, spec, tokenizer=None) -> tuple[dict, dict]:
    """(HF config dict, HF tensors) of an XLNetLMHeadModel equal to our XLNet."""
    check_exportable(spec)
    d, v = spec.width, spec.vocab_size
    p = "transformer."
    out = {p + "word_embedding.weight": params["embed"]["tokens"]["embedding"][:v],
           p + "mask_emb": params["mask_emb"].reshape(1, 1, d),
           "lm_loss.bias": params["head"]["bias"][:v]}
    shared = {b: params[b] for b in _BIASES} if not spec.untie_relative_bias else {}
    for i, layer in enumerate(layer_list(params["blocks"], spec.num_layers, spec.scan_layers)):
        q, a = f"{p}layer.{i}.", f"{p}layer.{i}.rel_attn."
        attn = layer["attn"]
        for x in "qkvr":
            out[a + x] = attn[f"w_{x}"]
        out[a + "o"] = np.transpose(attn["w_o"], (2, 0, 1))
        out[a + "seg_embed"] = attn["seg_embed"]
        for b in _BIASES:  # HF keeps a copy per layer even when they are shared
            out[a + b] = shared.get(b, attn.get(b))
        out[a + "layer_norm.weight"] = layer["ln_attn"]["scale"]
        out[a + "layer_norm.bias"] = layer["ln_attn"]["bias"]
        mlp = layer["mlp"]
        out[q + "ff.layer_1.weight"], out[q + "ff.layer_1.bias"] = mlp["w_in"].T, mlp["b_in"]
        out[q + "ff.layer_2.weight"], out[q + "ff.layer_2.bias"] = mlp["w_out"].T, mlp["b_out"]
        out[q + "ff.layer_norm.weight"] = layer["ln_mlp"]["scale"]
        out[q + "ff.layer_norm.bias"] = layer["ln_mlp"]["bias"]
    config = {"architectures": ["XLNetLMHeadModel"], "model_type": "xlnet", "vocab_size": v,
              "d_model": d, "n_layer": spec.num_layers, "n_head": spec.num_heads,
              "d_head": spec.head_dim, "d_inner": spec.mlp_dim,
              "ff_activation": HF_ACTIVATIONS[spec.activation],
              "layer_norm_eps": spec.layer_norm_eps, "untie_r": True, "attn_type": "bi",
              "bi_data": False, "clamp_len": -1, "same_length": False,
              "dropout": spec.dropout, "tie_word_embeddings": True}
    if tokenizer is not None:
        config.update(pad_token_id=tokenizer.pad_id, bos_token_id=tokenizer.bos_id,
                      eos_token_id=tokenizer.eos_id)
    return config, out
