"""`scaling sample --workdir runs/demo [--prompt "def "] [--tokens 200] [--top-k 40]`.

Generates text from the latest checkpoint of a decoder-only run (GPT-2 / Megatron): greedy
with --greedy, otherwise top-k sampling at --temperature.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scaling sample", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a run directory with checkpoints")
    parser.add_argument("--prompt", default="def ", help="text to continue")
    parser.add_argument("--tokens", type=int, default=200, help="tokens to generate")
    parser.add_argument("--greedy", action="store_true", help="always the most likely token")
    parser.add_argument("--top-k", type=int, default=40, help="sample among the k most likely")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default latest)")
    args = parser.parse_args(argv)

    from scaling import storage  # noqa: PLC0415

    config_path = storage.join(args.workdir, "config.json")
    if not storage.path(config_path).is_file():
        print(f"scaling sample: error: --workdir: no config.json in {args.workdir!r}; "
              "is it a training run directory?", file=sys.stderr)
        return 2

    import jax  # noqa: PLC0415  (after argument errors, which need no JAX)
    import ml_collections  # noqa: PLC0415

    from scaling import checkpoint  # noqa: PLC0415
    from scaling.data import make_tokenizer  # noqa: PLC0415
    from scaling.models import build_model, model_spec  # noqa: PLC0415
    from scaling.sample import generate  # noqa: PLC0415

    config = ml_collections.ConfigDict(json.loads(storage.read_text(config_path)))
    spec = model_spec(config)
    if spec.family != "decoder":
        print(f"scaling sample: error: model.family: sampling needs a decoder-only model, "
              f"this run is {spec.family!r}", file=sys.stderr)
        return 2
    try:
        state, _, step = checkpoint.load(args.workdir,
                                         checkpoint.abstract_train_state(spec, config), args.step)
    except FileNotFoundError as e:
        print(f"scaling sample: error: --workdir: {e}; train with checkpoints first",
              file=sys.stderr)
        return 2
    tokenizer = make_tokenizer(config.data)
    prompt = tokenizer.encode(args.prompt)
    out = generate(build_model(spec), state.params, prompt, max_len=spec.max_positions,
                   max_new_tokens=args.tokens, rng=jax.random.PRNGKey(args.seed),
                   temperature=args.temperature, top_k=args.top_k, greedy=args.greedy)
    print(f"# {spec.name}, step {step}, "
          f"{'greedy' if args.greedy else f'top-k {args.top_k}, T={args.temperature}'}",
          file=sys.stderr)
    print(args.prompt + tokenizer.decode(out))
    return 0
