"""BERT (`BertForMaskedLM` / `BertModel`) and RoBERTa (`RobertaForMaskedLM` / `RobertaModel`)
<-> our encoder family.

The two differ in names and in positions only: RoBERTa numbers positions from
`pad_token_id + 1` (its 514-row table serves 512 tokens), which is our
model.position_offset. torch Linear weights are [out, in] and are transposed into our
[in, out] kernels. The MLM head is tied to the word embeddings; its `decoder` copies
(stored only by legacy .bin files) must equal the tensors they tie to. A backbone-only
checkpoint (`BertModel`) has no MLM head: importing it needs `new_head`, which starts the
head from our initialisation (it is retrained by fine-tuning, or unused by classifiers).
"""
from __future__ import annotations

from scaling.hf.errors import HFError
from scaling.hf.tensors import (HF_ACTIVATIONS, Tensors, activation, blocks, layer_list,
                                norm, require, require_fields, vocab_rows)

MODEL_TYPES = ("bert", "roberta")
FAMILY = "encoder"
BUFFERS = (".position_ids", ".token_type_ids")
# model_type -> (backbone prefix of the head models, MLM head tensors' names)
_NAMES = {
    "bert": ("bert.", {"dense": "cls.predictions.transform.dense",
                       "ln": "cls.predictions.transform.LayerNorm",
                       "bias": "cls.predictions.bias", "decoder": "cls.predictions.decoder"}),
    "roberta": ("roberta.", {"dense": "lm_head.dense", "ln": "lm_head.layer_norm",
                             "bias": "lm_head.bias", "decoder": "lm_head.decoder"}),
}


def position_offset(hf: dict) -> int:
    """RoBERTa's first position row (fairseq's padding_idx + 1); 0 for BERT."""
    return hf.get("pad_token_id", 1) + 1 if hf["model_type"] == "roberta" else 0


def model_fields(hf: dict) -> dict:
    """Our model config fields for an HF BertConfig / RobertaConfig dict."""
    require(hf, "position_embedding_type", ("absolute",), "absolute")
    require(hf, "is_decoder", (False,), False)
    require(hf, "add_cross_attention", (False,), False)
    require(hf, "tie_word_embeddings", (True,), True)
    act = activation(hf, "hidden_act")
    if hf["model_type"] == "roberta" and act != "gelu":
        # RobertaLMHead applies erf GELU whatever hidden_act says; ours uses model.activation.
        raise HFError(f"config.json: hidden_act={hf['hidden_act']!r}: RoBERTa's MLM head "
                      "always uses 'gelu', so only hidden_act='gelu' converts exactly")
    return dict(family="encoder", positions="learned", norm="post", activation=act,
                attention_bias=True, mlp_bias=True, type_vocab_size=hf.get("type_vocab_size", 2),
                embedding_norm=True, mlm_head=True, final_norm=False, tie_embeddings=True,
                output_bias=True, vocab_size=hf["vocab_size"],
                num_layers=hf["num_hidden_layers"], width=hf["hidden_size"],
                num_heads=hf["num_attention_heads"], mlp_dim=hf["intermediate_size"],
                max_len=hf["max_position_embeddings"], position_offset=position_offset(hf),
                layer_norm_eps=hf.get("layer_norm_eps", 1e-12))


def has_pooler(tensors: dict) -> bool:
    return any(f"{p}pooler.dense.weight" in tensors for p in ("", "bert.", "roberta."))


def has_head(tensors: dict, model_type: str) -> bool:
    return _NAMES[model_type][1]["bias"] in tensors


def _linear(t: Tensors, name: str, fan_in: int, fan_out: int) -> tuple:
    """torch Linear [out, in] -> our kernel [in, out] and bias."""
    return (t.take(name + ".weight", (fan_out, fan_in), transpose=True),
            t.take(name + ".bias", (fan_out,)))


def _ln(t: Tensors, name: str, d: int) -> dict:
    return norm(t.take(name + ".weight", (d,)), t.take(name + ".bias", (d,)))


def to_params(tensors: dict, spec, model_type: str, fresh_head: dict | None = None) -> dict:
    """Our parameter tree (numpy) from HF tensors; HFError on any misfit.

    Args:
      fresh_head: our initialised `head` subtree, used when the checkpoint has no MLM head.
    """
    t = Tensors(tensors, BUFFERS)
    prefix, head_names = _NAMES[model_type]
    p = t.prefix_of("embeddings.word_embeddings.weight", prefix)
    d, n, h, f, v = spec.width, spec.num_heads, spec.head_dim, spec.mlp_dim, spec.vocab_size
    e = p + "embeddings."
    words = t.take(e + "word_embeddings.weight", (v, d))
    params = {"embed": {
        "tokens": {"embedding": vocab_rows(words, spec.padded_vocab_size)},
        "positions": {"embedding": t.take(e + "position_embeddings.weight", (spec.max_len, d))},
        "types": {"embedding": t.take(e + "token_type_embeddings.weight",
                                      (spec.type_vocab_size, d))},
        "ln": _ln(t, e + "LayerNorm", d)}}
    layers = []
    for i in range(spec.num_layers):
        q = f"{p}encoder.layer.{i}."
        attn = {}
        for ours, theirs in (("q", "query"), ("k", "key"), ("v", "value")):
            w, b = _linear(t, q + "attention.self." + theirs, d, d)
            attn[f"w_{ours}"], attn[f"b_{ours}"] = w.reshape(d, n, h), b.reshape(n, h)
        w, attn["b_o"] = _linear(t, q + "attention.output.dense", d, d)
        attn["w_o"] = w.reshape(n, h, d)
        w_in, b_in = _linear(t, q + "intermediate.dense", d, f)
        w_out, b_out = _linear(t, q + "output.dense", f, d)
        layers.append({"attn": attn, "ln_attn": _ln(t, q + "attention.output.LayerNorm", d),
                       "mlp": {"w_in": w_in, "b_in": b_in, "w_out": w_out, "b_out": b_out},
                       "ln_mlp": _ln(t, q + "output.LayerNorm", d)})
    params["blocks"] = blocks(layers, spec.scan_layers)
    if spec.pooler:
        kernel, bias = _linear(t, p + "pooler.dense", d, d)
        params["pooler"] = {"kernel": kernel, "bias": bias}
    if t.has(head_names["bias"]) or fresh_head is None:
        kernel, bias = _linear(t, head_names["dense"], d, d)
        out_bias = t.take(head_names["bias"], (v,))
        params["head"] = {"transform": {"kernel": kernel, "bias": bias},
                          "ln": _ln(t, head_names["ln"], d),
                          "bias": vocab_rows(out_bias, spec.padded_vocab_size)}
        t.take_tied(head_names["decoder"] + ".weight", words)
        t.take_tied(head_names["decoder"] + ".bias", out_bias)
    else:
        params["head"] = fresh_head
    t.finish()
    return params


def check_exportable(spec) -> None:
    """HFError unless a Bert/RobertaForMaskedLM computes what `spec` does."""
    wanted = dict(positions="learned", norm="post", attention_bias=True, mlp_bias=True,
                  final_norm=False, output_bias=True, embed_scale=False, embedding_norm=True,
                  mlm_head=True, tie_embeddings=True)
    require_fields(spec, wanted, "BERT/RoBERTa")
    if spec.position_offset and spec.activation != "gelu":
        raise HFError(f"model.activation: {spec.activation!r}; a RoBERTa export (position "
                      "offset > 0) needs 'gelu', which its MLM head always applies")


def to_hf(params: dict, spec, tokenizer=None) -> tuple[dict, dict]:
    """(HF config dict, HF tensors) of a BertForMaskedLM, or RobertaForMaskedLM when
    model.position_offset > 0 (its pad_token_id is then offset - 1)."""
    check_exportable(spec)
    model_type = "roberta" if spec.position_offset else "bert"
    prefix, head_names = _NAMES[model_type]
    d, v = spec.width, spec.vocab_size
    e = prefix + "embeddings."
    emb = params["embed"]
    types = (emb["types"]["embedding"] if spec.type_vocab_size
             else 0 * emb["positions"]["embedding"][:1])  # one zero row: adds nothing
    out = {e + "word_embeddings.weight": emb["tokens"]["embedding"][:v],
           e + "position_embeddings.weight": emb["positions"]["embedding"],
           e + "token_type_embeddings.weight": types,
           e + "LayerNorm.weight": emb["ln"]["scale"], e + "LayerNorm.bias": emb["ln"]["bias"]}

    def linear(name, kernel, bias):
        out[name + ".weight"], out[name + ".bias"] = kernel.T, bias

    def ln(name, tree):
        out[name + ".weight"], out[name + ".bias"] = tree["scale"], tree["bias"]

    for i, layer in enumerate(layer_list(params["blocks"], spec.num_layers, spec.scan_layers)):
        q, a = f"{prefix}encoder.layer.{i}.", layer["attn"]
        for ours, theirs in (("q", "query"), ("k", "key"), ("v", "value")):
            linear(q + "attention.self." + theirs, a[f"w_{ours}"].reshape(d, d),
                   a[f"b_{ours}"].reshape(d))
        linear(q + "attention.output.dense", a["w_o"].reshape(d, d), a["b_o"])
        ln(q + "attention.output.LayerNorm", layer["ln_attn"])
        linear(q + "intermediate.dense", layer["mlp"]["w_in"], layer["mlp"]["b_in"])
        linear(q + "output.dense", layer["mlp"]["w_out"], layer["mlp"]["b_out"])
        ln(q + "output.LayerNorm", layer["ln_mlp"])
    if spec.pooler:
        linear(prefix + "pooler.dense", params["pooler"]["kernel"], params["pooler"]["bias"])
    head = params["head"]
    linear(head_names["dense"], head["transform"]["kernel"], head["transform"]["bias"])
    ln(head_names["ln"], head["ln"])
    out[head_names["bias"]] = head["bias"][:v]

    pad_id = spec.position_offset - 1 if spec.position_offset else (
        tokenizer.pad_id if tokenizer is not None else 0)
    config = {"architectures": ["RobertaForMaskedLM" if spec.position_offset
                                else "BertForMaskedLM"],
              "model_type": model_type, "vocab_size": v, "hidden_size": d,
              "num_hidden_layers": spec.num_layers, "num_attention_heads": spec.num_heads,
              "intermediate_size": spec.mlp_dim, "hidden_act": HF_ACTIVATIONS[spec.activation],
              "max_position_embeddings": spec.max_len,
              "type_vocab_size": max(spec.type_vocab_size, 1),
              "layer_norm_eps": spec.layer_norm_eps, "pad_token_id": pad_id,
              "position_embedding_type": "absolute", "tie_word_embeddings": True,
              "hidden_dropout_prob": spec.dropout, "attention_probs_dropout_prob": spec.dropout}
    if tokenizer is not None and model_type == "roberta":
        config.update(bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    return config, out
