"""`scaling params [FAMILY...] [--json]`: the size table, counted from the real models.

Each row is built from its experiment config (experiments/<family>.py:<variant>) and counted
with `jax.eval_shape` of the model's init, so no parameter memory is allocated.
"""
from __future__ import annotations

import argparse
import json
import sys

from experiments.size_table import ROWS
from scaling.config_loading import ConfigError, load
from scaling.models import model_spec
from scaling.sizes import count_params

def _human(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def count_row(row) -> dict:
    """One size-table row as a dict (params None when the family is not implemented)."""
    out = dict(name=row.name, key=row.key, layers=row.layers + row.decoder_layers,
               layers_text=row.layers_text, width=row.width, heads=row.heads,
               published=row.published, exact=row.exact, in_table=row.in_table, note=row.note)
    try:
        config = load(f"{_experiments_dir()}/{row.experiment}.py:{row.variant}")
        spec = model_spec(config)
    except ConfigError:  # the family's experiment file does not exist yet (XLNet)
        return dict(out, params=None, status="not yet implemented")
    counts = count_params(spec)
    return dict(out, params=counts.backbone, non_embedding_params=counts.non_embedding,
                head_params=counts.head, status="ok",
                diff_vs_exact=None if row.exact is None else counts.backbone - row.exact,
                diff_vs_published=counts.backbone - row.published)


# Families with no size-table row (no published parameter count): their experiment
# variants are counted the same way, listed with --all or when the family is named.
UNPUBLISHED = {"captioning": ("tiny", "base", "large")}


def count_variant(experiment: str, variant: str) -> dict:
    """One experiment variant without a size-table row, counted from its config."""
    spec = model_spec(load(f"{_experiments_dir()}/{experiment}.py:{variant}"))
    counts = count_params(spec)
    layers = spec.num_layers + (spec.decoder_layers if spec.family in
                                ("encoder_decoder", "captioning") else 0)
    text = (f"{layers} ({spec.num_layers}+{spec.decoder_layers})" if layers != spec.num_layers
            else str(layers))
    return dict(name=spec.name, key=f"{experiment}:{variant}", layers=layers,
                layers_text=text, width=spec.width, heads=spec.num_heads, published=None,
                exact=None, in_table=False, note="no published count", params=counts.backbone,
                non_embedding_params=counts.non_embedding, head_params=counts.head,
                status="ok", diff_vs_exact=None, diff_vs_published=None)


def _experiments_dir() -> str:
    import experiments  # noqa: PLC0415
    return experiments.__path__[0]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scaling params", description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*",
                        help="only these experiment families (e.g. gpt2 bert); default: all")
    parser.add_argument("--all", action="store_true",
                        help="also list the smaller family members outside the lecture table")
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects")
    args = parser.parse_args(argv)

    known = sorted({r.experiment for r in ROWS} | set(UNPUBLISHED))
    for fam in args.families:
        if fam not in known:
            print(f"scaling params: unknown family {fam!r}; known: {', '.join(known)}",
                  file=sys.stderr)
            return 2
    rows = [r for r in ROWS if (args.all or args.families or r.in_table)
            and (not args.families or r.experiment in args.families)]
    results = [count_row(row) for row in rows]
    results += [count_variant(fam, variant) for fam, variants in UNPUBLISHED.items()
                if args.all or fam in args.families for variant in variants]

    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    header = (f"{'model':<18} {'config':<17} {'layers':>9} {'width':>6} {'heads':>5} "
              f"{'params (counted)':>17} {'published':>9} {'exact':>14} {'diff':>6}")
    print(header)
    print("-" * len(header))
    for r in results:
        if r["params"] is None:
            counted, diff = r["status"], ""
        else:
            counted = f"{r['params']:,}"
            diff = "" if r["exact"] is None else f"{r['diff_vs_exact']:+,}"
        exact = "" if r["exact"] is None else f"{r['exact']:,}"
        published = "-" if r["published"] is None else _human(r["published"])
        print(f"{r['name']:<18} {r['key']:<17} {r['layers_text']:>9} {r['width']:>6} "
              f"{r['heads']:>5} {counted:>17} {published:>9} {exact:>14} "
              f"{diff:>6}")
    print("\nparams: the model as published (BERT/RoBERTa: with pooler, without the MLM "
          "head); diff: counted - exact.")
    return 0
