"""`scaling import-hf SRC --family gpt2|bert|roberta|xlnet --workdir DIR`.

Converts a Hugging Face model directory (config.json + model.safetensors or
pytorch_model.bin; a Hub name when huggingface_hub is installed) into a run directory with
a checkpoint at step 0. Its tokenizer files go to DIR/tokenizer and the run reads them as
data.tokenizer=hf:DIR/tokenizer. Then, for example:
    scaling train --config experiments/hf.py:DIR --workdir runs/finetune
    scaling sample --workdir DIR                       (gpt2)
Bad input (not an HF directory, another model_type, a tensor that does not fit, a workdir
that already holds a run) exits 2 with one line, before anything is written.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scaling import-hf", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("src", metavar="SRC", help="HF model directory (or Hub name)")
    parser.add_argument("--family", required=True, help="gpt2 | bert | roberta | xlnet")
    parser.add_argument("--workdir", required=True, help="the new run directory")
    parser.add_argument("--skip", action="append", default=[], metavar="PREFIX",
                        help="drop tensors whose name starts with PREFIX (e.g. BERT's NSP "
                             "head cls.seq_relationship); repeatable")
    parser.add_argument("--new-head", action="store_true",
                        help="a checkpoint without the MLM/LM head (BertModel, XLNetModel) "
                             "gets a freshly initialised one")
    parser.add_argument("--scan-layers", action="store_true",
                        help="store layers stacked, for model.scan_layers=True runs")
    args = parser.parse_args(argv)

    from scaling.hf import HFError, import_hf  # noqa: PLC0415  (after argument errors)
    try:
        result = import_hf(args.src, args.family, args.workdir, skip=tuple(args.skip),
                           new_head=args.new_head, scan_layers=args.scan_layers)
    except HFError as e:
        print(f"scaling import-hf: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    spec = result["spec"]
    print(f"imported {spec.name} ({args.family}: {spec.num_layers} layers, width "
          f"{spec.width}, vocab {spec.vocab_size}) into {args.workdir}/checkpoints/0")
    if result["tokenizer"]:
        print(f"tokenizer: {', '.join(result['tokenizer'])} -> "
              f"data.tokenizer={result['config'].data.tokenizer}")
    else:
        print("no tokenizer.json in SRC: data.tokenizer stays 'byte'; set "
              "--config.data.tokenizer=hf:<dir> to train with the model's own")
    return 0
