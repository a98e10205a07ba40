"""Hugging Face checkpoints in and out: `import_hf` makes a run directory from an HF model
directory, `export_hf` writes a run's checkpoint as one that `transformers` loads.

  io.py        config.json + model.safetensors / pytorch_model.bin; tokenizer files
  tensors.py   strict tensor bookkeeping (every tensor used once, shapes checked)
  gpt2.py      GPT-2            <-> family decoder
  bert.py      BERT, RoBERTa    <-> family encoder (RoBERTa: model.position_offset = 2)
  xlnet.py     XLNet            <-> family xlnet
  run_dir.py   the run directory (config.json, checkpoints/0) of converted weights

Everything is validated before anything is written: bad input raises one-line HFError.
T5 is not supported: our encoder_decoder family is Vaswani's Transformer, and T5 needs
relative position buckets, RMSNorm and an unscaled attention.
"""
from __future__ import annotations

import os

from scaling import storage
from scaling.hf import bert, gpt2, io, xlnet
from scaling.hf.errors import HFError

# --family -> (converter module, the model_type its config.json must have)
FAMILIES = {"gpt2": gpt2, "bert": bert, "roberta": bert, "xlnet": xlnet}
UNSUPPORTED = {"t5": "our encoder_decoder family is Vaswani's Transformer; T5 needs "
                     "relative position buckets, RMSNorm and gated MLPs"}
# data objective of each imported family (what `scaling train` fine-tunes it with).
_OBJECTIVES = {"gpt2": dict(objective="causal_lm"),
               "bert": dict(objective="mlm", dynamic_masking=False),
               "roberta": dict(objective="mlm", dynamic_masking=True),
               "xlnet": dict(objective="permutation_lm", perm_k=6.0)}
_EXPORTERS = {"decoder": gpt2, "encoder": bert, "xlnet": xlnet}


def _family_module(family: str):
    if family in UNSUPPORTED:
        raise HFError(f"--family {family}: not supported ({UNSUPPORTED[family]})")
    if family not in FAMILIES:
        raise HFError(f"--family: unknown {family!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[family]


def resolve_source(src: str) -> str:
    """A local directory, or a Hub name downloaded with huggingface_hub when installed."""
    if os.path.isdir(src):
        return src
    if os.path.exists(src) or src.startswith((".", "/")) or src.count("/") > 1:
        raise HFError(f"SRC: {src!r} is not a directory")
    try:
        from huggingface_hub import snapshot_download  # noqa: PLC0415  (optional)
    except ImportError:
        raise HFError(f"SRC: {src!r} is not a directory (install huggingface_hub to "
                      "download it from the Hub)") from None
    try:
        return snapshot_download(src)
    except Exception as e:  # noqa: BLE001  (network, auth, unknown repo: all bad input)
        raise HFError(f"SRC: {src!r} is not a directory and could not be downloaded "
                      f"({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


def _normalise_names(tensors: dict, skip: tuple) -> dict:
    """Legacy LayerNorm gamma/beta names -> weight/bias; drop the --skip prefixes."""
    for prefix in skip:
        if not any(k.startswith(prefix) for k in tensors):
            raise HFError(f"--skip {prefix}: matches no tensor")
    out = {}
    for name, value in tensors.items():
        if name.startswith(tuple(skip)):
            continue
        if name.endswith(("LayerNorm.gamma", "LayerNorm.beta")):
            name = name[:-5] + "weight" if name.endswith("gamma") else name[:-4] + "bias"
        out[name] = value
    return out


def _fresh_head(spec):
    """Our initialisation of the MLM/LM head (for a backbone-only checkpoint)."""
    import flax.linen as nn  # noqa: PLC0415
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from scaling.models import build_model, example_batch  # noqa: PLC0415
    model = build_model(spec)
    # One compiled init instead of op-by-op dispatch; the backbone part is discarded.
    params = jax.jit(lambda batch: model.init(jax.random.PRNGKey(0), batch)["params"])(
        example_batch(spec, 1, 8))
    return jax.tree.map(np.asarray, nn.unbox(params)["head"])


def _check_tree(params, spec) -> None:
    """The converted tree has exactly the model's parameter names and shapes."""
    import flax.linen as nn  # noqa: PLC0415

    from scaling.checkpoint import _flat_shapes  # noqa: PLC0415
    from scaling.models import abstract_params  # noqa: PLC0415
    want = _flat_shapes(nn.unbox(abstract_params(spec)))
    got = _flat_shapes(params)
    for name in sorted(set(want) | set(got)):
        if want.get(name) != got.get(name):
            raise HFError(f"internal: converted parameter {name} has shape {got.get(name)}, "
                          f"the model wants {want.get(name)}")


def import_hf(src: str, family: str, workdir: str, *, skip: tuple = (),
              new_head: bool = False, scan_layers: bool = False) -> dict:
    """Convert the HF model in `src` into a run directory `workdir` (checkpoint at step 0).

    Args:
      src: an HF model directory (config.json + weights), or a Hub name.
      family: gpt2 | bert | roberta | xlnet (t5 is refused).
      workdir: the new run directory; must not hold a run yet.
      skip: tensor-name prefixes to drop on purpose (e.g. BERT's NSP head
        "cls.seq_relationship"); any other tensor that does not fit is an error.
      new_head: a backbone-only checkpoint (BertModel, XLNetModel) gets our freshly
        initialised MLM/LM head instead of an error.
      scan_layers: store the layers stacked (model.scan_layers=True).

    Returns:
      {"config": the run config, "spec": its ModelSpec, "tokenizer": copied file names}.

    Raises:
      HFError: one line; nothing has been written.
    """
    from scaling.config import base_config  # noqa: PLC0415
    from scaling.hf import run_dir  # noqa: PLC0415
    from scaling.spec import ModelSpec  # noqa: PLC0415

    module = _family_module(family)
    src = resolve_source(src)
    hf = io.read_config(src)
    if hf["model_type"] != family:
        raise HFError(f"config.json: model_type {hf['model_type']!r} does not match "
                      f"--family {family}")
    run_dir.check_new_workdir(workdir)

    config = base_config()
    try:
        fields = module.model_fields(hf)
    except KeyError as e:
        raise HFError(f"config.json: no {e.args[0]!r} field; is it a {family} config?") from None
    tensors = _normalise_names(io.read_tensors(src), tuple(skip))
    head = True
    if module is bert:
        fields["pooler"] = bert.has_pooler(tensors)
        head = bert.has_head(tensors, family)
    elif module is xlnet:
        head = xlnet.has_head(tensors)
    config.model.update(fields, scan_layers=scan_layers,
                        name=os.path.basename(os.path.normpath(hf.get("_name_or_path") or src)))
    try:
        spec = ModelSpec.from_config(config.model)
    except ValueError as e:
        raise HFError(f"config.json: {str(e).splitlines()[0]}") from None
    if not head and not new_head:
        raise HFError(f"weights: {src!r} has no {'MLM' if module is bert else 'LM'} head (a "
                      "backbone-only checkpoint); pass --new-head to start one from our "
                      "initialisation")
    fresh = None if head else _fresh_head(spec)
    if module is bert:
        params = bert.to_params(tensors, spec, family, fresh)
    elif module is xlnet:
        params = xlnet.to_params(tensors, spec, fresh)
    else:
        params = gpt2.to_params(tensors, spec)
    _check_tree(params, spec)

    config.data.update(_OBJECTIVES[family])
    config.data.seq_len = min(config.data.seq_len, spec.max_positions)
    config.experiment = f"import-hf:{family}"
    tokenizer_dir = str(storage.path(workdir) / "tokenizer")
    has_tokenizer = "tokenizer.json" in io.tokenizer_files(src)
    if has_tokenizer:
        from scaling.data.hf_tokenizer import HFTokenizer  # noqa: PLC0415
        try:
            size = HFTokenizer(src).vocab_size
        except ValueError as e:
            raise HFError(str(e).splitlines()[0]) from None
        if size > spec.vocab_size:
            raise HFError(f"model.vocab_size: {spec.vocab_size} (config.json) is smaller than "
                          f"the {size} ids of the tokenizer in {src!r} (data.tokenizer)")
        config.data.tokenizer = "hf:" + tokenizer_dir

    # ---- everything checked: write -----------------------------------------------------
    copied = io.copy_tokenizer(src, tokenizer_dir) if has_tokenizer else []
    run_dir.write_run(workdir, config, spec, params)
    return {"config": config, "spec": spec, "tokenizer": copied}


def export_hf(workdir: str, out: str, step: int | None = None) -> dict:
    """Write a run's checkpoint as an HF model directory `out` (config.json,
    model.safetensors, and the tokenizer files when the run used an hf:<dir> tokenizer).

    Returns:
      {"step": the checkpoint step, "config": the HF config dict, "tokenizer": file names}.

    Raises:
      HFError: one line; nothing has been written.
    """
    from scaling.hf import run_dir  # noqa: PLC0415

    config, spec = run_dir.read_run(workdir)
    if spec.family not in _EXPORTERS:
        raise HFError(f"model.family: {spec.family!r} has no Hugging Face export (supported: "
                      f"{', '.join(_EXPORTERS)})")
    module = _EXPORTERS[spec.family]
    module.check_exportable(spec)
    if storage.is_url(out):  # the weights are written with local file writers
        raise HFError(f"--out: {out!r} is a URL; export-hf writes a local directory (copy it "
                      "to the bucket afterwards)")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise HFError(f"--out: {out!r} exists and is not an empty directory")
    tokenizer = None
    tok_src = config.data.tokenizer[3:] if config.data.tokenizer.startswith("hf:") else None
    if tok_src:
        from scaling.data.hf_tokenizer import HFTokenizer  # noqa: PLC0415
        try:
            tokenizer = HFTokenizer(tok_src)
        except ValueError as e:
            raise HFError(str(e).splitlines()[0]) from None
    params, step = run_dir.load_params(workdir, config, spec, step)
    hf_config, tensors = module.to_hf(params, spec, tokenizer)

    os.makedirs(out, exist_ok=True)
    io.write_model(out, hf_config, tensors)
    copied = io.copy_tokenizer(tok_src, out) if tok_src else []
    return {"step": step, "config": hf_config, "tokenizer": copied}


__all__ = ["FAMILIES", "HFError", "export_hf", "import_hf", "resolve_source"]
