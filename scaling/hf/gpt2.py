"""GPT-2 (`GPT2LMHeadModel` / `GPT2Model`) <-> our decoder family.

HF's Conv1D layers store weights [in, out], as ours do (no transpose); `c_attn` is one
[D, 3D] matrix whose columns are [q | k | v], each split by head as n·H + h. The LM head is
tied to `wte` unless `tie_word_embeddings` is false (then `lm_head.weight`, [V, D]).
"""
from __future__ import annotations

import numpy as np

from scaling.hf.tensors import (HF_ACTIVATIONS, Tensors, activation, blocks, layer_list,
                                norm, require, require_fields, vocab_rows)

MODEL_TYPES = ("gpt2",)
# Registered non-parameter buffers of older GPT-2 checkpoints (the causal mask).
BUFFERS = (".attn.bias", ".attn.masked_bias")
FAMILY = "decoder"


def model_fields(hf: dict) -> dict:
    """Our model config fields for an HF GPT2Config dict."""
    require(hf, "scale_attn_weights", (True,), True)
    require(hf, "scale_attn_by_inverse_layer_idx", (False,), False)
    require(hf, "add_cross_attention", (False,), False)
    d = hf["n_embd"]
    return dict(family="decoder", positions="learned", norm="pre",
                activation=activation(hf, "activation_function"),
                attention_bias=True, mlp_bias=True, final_norm=True,
                tie_embeddings=bool(hf.get("tie_word_embeddings", True)), output_bias=False,
                vocab_size=hf["vocab_size"], num_layers=hf["n_layer"], width=d,
                num_heads=hf["n_head"], mlp_dim=hf.get("n_inner") or 4 * d,
                max_len=hf["n_positions"], layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5))


def to_params(tensors: dict, spec) -> dict:
    """Our parameter tree (numpy) from HF tensors; HFError on any misfit."""
    t = Tensors(tensors, BUFFERS)
    p = t.prefix_of("wte.weight", "transformer.")
    d, n, h, f, v = spec.width, spec.num_heads, spec.head_dim, spec.mlp_dim, spec.vocab_size
    wte = t.take(p + "wte.weight", (v, d))
    params = {"embed": {"tokens": {"embedding": vocab_rows(wte, spec.padded_vocab_size)},
                        "positions": {"embedding": t.take(p + "wpe.weight", (spec.max_len, d))}}}
    layers = []
    for i in range(spec.num_layers):
        q = f"{p}h.{i}."
        qkv = t.take(q + "attn.c_attn.weight", (d, 3 * d))
        qkv_b = t.take(q + "attn.c_attn.bias", (3 * d,))
        attn = {}
        for j, name in enumerate("qkv"):
            attn[f"w_{name}"] = qkv[:, j * d:(j + 1) * d].reshape(d, n, h)
            attn[f"b_{name}"] = qkv_b[j * d:(j + 1) * d].reshape(n, h)
        attn["w_o"] = t.take(q + "attn.c_proj.weight", (d, d)).reshape(n, h, d)
        attn["b_o"] = t.take(q + "attn.c_proj.bias", (d,))
        layers.append({
            "ln_attn": norm(t.take(q + "ln_1.weight", (d,)), t.take(q + "ln_1.bias", (d,))),
            "attn": attn,
            "ln_mlp": norm(t.take(q + "ln_2.weight", (d,)), t.take(q + "ln_2.bias", (d,))),
            "mlp": {"w_in": t.take(q + "mlp.c_fc.weight", (d, f)),
                    "b_in": t.take(q + "mlp.c_fc.bias", (f,)),
                    "w_out": t.take(q + "mlp.c_proj.weight", (f, d)),
                    "b_out": t.take(q + "mlp.c_proj.bias", (d,))}})
    params["blocks"] = blocks(layers, spec.scan_layers)
    params["ln_final"] = norm(t.take(p + "ln_f.weight", (d,)), t.take(p + "ln_f.bias", (d,)))
    if spec.tie_embeddings:
        t.take_tied("lm_head.weight", wte)
    else:
        head = t.take("lm_head.weight", (v, d))
        params["lm_head"] = {"kernel": vocab_rows(head, spec.padded_vocab_size).T}
    t.finish()
    return params


def check_exportable(spec) -> None:
    """HFError unless a GPT2LMHeadModel computes what `spec` does."""
    wanted = dict(positions="learned", norm="pre", attention_bias=True, mlp_bias=True,
                  final_norm=True, output_bias=False, embed_scale=False, embedding_norm=False,
                  type_vocab_size=0, position_offset=0)
    require_fields(spec, wanted, "GPT-2")


def to_hf(params: dict, spec, tokenizer=None) -> tuple[dict, dict]:
    """(HF config dict, HF tensors) of a GPT2LMHeadModel equal to our decoder."""
    check_exportable(spec)
    d, v = spec.width, spec.vocab_size
    p = "transformer."
    out = {p + "wte.weight": params["embed"]["tokens"]["embedding"][:v],
           p + "wpe.weight": params["embed"]["positions"]["embedding"]}
    for i, layer in enumerate(layer_list(params["blocks"], spec.num_layers, spec.scan_layers)):
        q, a = f"{p}h.{i}.", layer["attn"]
        out[q + "attn.c_attn.weight"] = np.concatenate(
            [a[f"w_{x}"].reshape(d, d) for x in "qkv"], axis=1)
        out[q + "attn.c_attn.bias"] = np.concatenate([a[f"b_{x}"].reshape(d) for x in "qkv"])
        out[q + "attn.c_proj.weight"] = a["w_o"].reshape(d, d)
        out[q + "attn.c_proj.bias"] = a["b_o"]
        for ours, theirs in (("ln_attn", "ln_1"), ("ln_mlp", "ln_2")):
            out[q + theirs + ".weight"] = layer[ours]["scale"]
            out[q + theirs + ".bias"] = layer[ours]["bias"]
        mlp = layer["mlp"]
        out[q + "mlp.c_fc.weight"], out[q + "mlp.c_fc.bias"] = mlp["w_in"], mlp["b_in"]
        out[q + "mlp.c_proj.weight"], out[q + "mlp.c_proj.bias"] = mlp["w_out"], mlp["b_out"]
    out[p + "ln_f.weight"] = params["ln_final"]["scale"]
    out[p + "ln_f.bias"] = params["ln_final"]["bias"]
    if not spec.tie_embeddings:
        out["lm_head.weight"] = params["lm_head"]["kernel"][:, :v].T
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": v,
              "n_positions": spec.max_len, "n_embd": d, "n_layer": spec.num_layers,
              "n_head": spec.num_heads, "n_inner": spec.mlp_dim,
              "activation_function": HF_ACTIVATIONS[spec.activation],
              "layer_norm_epsilon": spec.layer_norm_eps,
              "tie_word_embeddings": spec.tie_embeddings,
              "resid_pdrop": spec.dropout, "embd_pdrop": spec.dropout,
              "attn_pdrop": spec.dropout}
    if tokenizer is not None:
        config.update(bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    return config, out

