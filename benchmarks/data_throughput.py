"""Input-pipeline throughput per host, against what one accelerator step consumes.

    python benchmarks/data_throughput.py                      # builtin corpus, T=1024, B=64
    python benchmarks/data_throughput.py --files '~/c/*.jsonl' --processes 8

Builds `scaling.data.make_pipeline` for one host (process 0 of 1) twice: on the fly (the
documents tokenized and packed in memory when the pipeline is built) and from shards written
by `scaling prepare-data` (data.dataset=prepared:DIR), then times `--batches` causal-LM
batches after the first one, and prints the tokens/s of each next to the demand of GPT-2 small
(124M) on one H100 at 50 % MFU: 0.5 * 989e12 / (6N + 12·L·d·T) tokens/s, for N the total
parameter count (124e6) and, stricter, the non-embedding one (85e6). Setup times (building
the pipeline, preparing the shards) are printed apart: they are paid once, not per step.
"""
from __future__ import annotations

import argparse
import tempfile
import time

H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s (SXM)
GPT2_SMALL = dict(total_params=124e6, non_embedding_params=85e6, layers=12, width=768)


def gpu_demand(num_params: float, seq_len: int, mfu: float = 0.5) -> float:
    """Tokens/s one H100 trains GPT-2 small at `mfu`: peak * mfu / FLOPs per token."""
    flops_per_token = (6 * num_params
                       + 12 * GPT2_SMALL["layers"] * GPT2_SMALL["width"] * seq_len)
    return mfu * H100_BF16_PEAK / flops_per_token


def time_pipeline(config, batches: int) -> tuple[float, float]:
    """(seconds to build the pipeline and get the first batch, tokens/s of the next `batches`)."""
    from scaling import data
    start = time.perf_counter()
    it = data.make_pipeline(config, "train")
    first = next(it)
    setup = time.perf_counter() - start
    tokens_per_batch = first["inputs"].size
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return setup, batches * tokens_per_batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64, help="host batch, in sequences")
    parser.add_argument("--batches", type=int, default=300, help="timed batches per mode")
    parser.add_argument("--files", default="", help="data.files globs (default: builtin)")
    parser.add_argument("--processes", type=int, default=2, help="prepare-data workers")
    parser.add_argument("--read-threads", type=int, default=2, help="data.read_threads")
    args = parser.parse_args()

    from scaling.config import base_config
    from scaling.data import prepare

    config = base_config()
    config.data.seq_len, config.train.batch_size = args.seq_len, args.batch
    config.data.read_threads = args.read_threads
    if args.files:
        config.data.dataset, config.data.files = "files", args.files
    rows = []
    setup, rate = time_pipeline(config, args.batches)
    rows.append((f"on the fly ({config.data.dataset})", setup, rate))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        meta = prepare.prepare(config, out, processes=args.processes, splits=("train",),
                                progress=False)
        prepare_s = time.perf_counter() - start
        tokens = meta["splits"]["train"]["tokens"]
        p = config.copy_and_resolve_references()
        p.data.dataset = f"prepared:{out}"
        setup, rate = time_pipeline(p, args.batches)
        rows.append(("prepared shards", setup, rate))

    print(f"causal_lm, T={args.seq_len}, host batch {args.batch}, {args.batches} batches, "
          f"read_threads={args.read_threads}, byte tokenizer")
    print(f"prepare-data: {tokens:,} tokens in {prepare_s:.1f} s = {tokens / prepare_s:,.0f} "
          f"tokens/s with {args.processes} processes")
    demand = {k: gpu_demand(GPT2_SMALL[k], args.seq_len)
              for k in ("total_params", "non_embedding_params")}
    print(f"GPT-2 small on one H100 at 50 % MFU consumes {demand['total_params']:,.0f} tokens/s "
          f"(N=124e6 total) / {demand['non_embedding_params']:,.0f} (N=85e6 non-embedding)")
    print("| mode | setup s | tokens/s per host | x demand (N total) | x demand (N non-emb) |")
    print("|---|---|---|---|---|")
    for name, setup, rate in rows:
        print(f"| {name} | {setup:.1f} | {rate:,.0f} | {rate / demand['total_params']:.1f} | "
              f"{rate / demand['non_embedding_params']:.1f} |")


if __name__ == "__main__":
    main()
