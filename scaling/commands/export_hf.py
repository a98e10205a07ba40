"""`scaling export-hf --workdir DIR --out OUT [--step N]`.

Writes a run's checkpoint (default: the latest) as a Hugging Face model directory:
config.json and model.safetensors, plus the tokenizer files when the run used
data.tokenizer=hf:<dir>. GPT-2-shaped decoders become GPT2LMHeadModel, encoders
BertForMaskedLM (RobertaForMaskedLM when model.position_offset > 0), XLNet
XLNetLMHeadModel; `transformers.AutoModel.from_pretrained(OUT)` loads them.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scaling export-hf", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a run directory with checkpoints")
    parser.add_argument("--out", required=True, help="the HF model directory to write (new)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default latest)")
    args = parser.parse_args(argv)

    from scaling.hf import HFError, export_hf  # noqa: PLC0415  (after argument errors)
    try:
        result = export_hf(args.workdir, args.out, args.step)
    except HFError as e:
        print(f"scaling export-hf: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"exported step {result['step']} as {result['config']['architectures'][0]} "
          f"to {args.out}" + (f" (tokenizer: {', '.join(result['tokenizer'])})"
                              if result["tokenizer"] else ""))
    return 0
