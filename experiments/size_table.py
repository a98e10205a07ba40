"""The classic size table, as data (../shared/REFERENCE.md).

One row per published model. `exact` is the parameter count reproduced from the original
papers, code and configs (None where no exact figure is claimed); `published` is the figure
the size table prints. Family config files (gpt2.py, bert.py, ...) read their variants from
here, so each architecture number lives in exactly one place.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Row:
    key: str                 # "<experiment>:<variant>", e.g. "gpt2:xl"
    name: str                # display name
    layers: int              # encoder(-only) or decoder(-only) layers; enc-dec: encoder layers
    width: int
    heads: int
    mlp_dim: int
    vocab_size: int
    max_len: int
    published: float         # parameters as the size table prints them
    exact: int | None        # exact count reproduced from the original definition
    decoder_layers: int = 0  # encoder-decoder only
    in_table: bool = True    # one of the eight rows of the lecture's table
    note: str = ""

    @property
    def experiment(self) -> str:
        return self.key.split(":")[0]

    @property
    def variant(self) -> str:
        return self.key.split(":")[1]

    @property
    def layers_text(self) -> str:
        if self.decoder_layers:
            return f"{self.layers + self.decoder_layers} ({self.layers}+{self.decoder_layers})"
        return str(self.layers)


ROWS = (
    Row("transformer:base", "Transformer-Base", 6, 512, 8, 2048, 37_000, 512, 65e6, 63_045_632,
        decoder_layers=6, note="65M not reproducible from the stated 37k vocab"),
    Row("transformer:big", "Transformer-Large", 6, 1024, 16, 4096, 37_000, 512, 213e6,
        214_171_648, decoder_layers=6),
    Row("bert:base", "BERT-Base", 12, 768, 12, 3072, 30_522, 512, 110e6, 109_482_240),
    Row("bert:large", "BERT-Large", 24, 1024, 16, 4096, 30_522, 512, 340e6, 335_141_888),
    Row("xlnet:large", "XLNet-Large", 24, 1024, 16, 4096, 32_000, 512, 340e6, 360_268_800,
        note="model without the 32,000-entry LM bias"),
    Row("roberta:large", "RoBERTa (large)", 24, 1024, 16, 4096, 50_265, 514, 355e6, 355_359_744),
    Row("gpt2:xl", "GPT-2 (XL)", 48, 1600, 25, 6400, 50_257, 1024, 1.5e9, 1_557_611_200),
    Row("megatron:8b3", "Megatron-LM", 72, 3072, 32, 12_288, 50_257, 1024, 8.3e9,
        8_317_040_640, note="vocab padded to 51,200"),
    # Smaller members of the same families (exact counts in REFERENCE.md).
    Row("gpt2:small", "GPT-2 small", 12, 768, 12, 3072, 50_257, 1024, 124e6, 124_439_808,
        in_table=False),
    Row("gpt2:medium", "GPT-2 medium", 24, 1024, 16, 4096, 50_257, 1024, 355e6, 354_823_168,
        in_table=False),
    Row("gpt2:large", "GPT-2 large", 36, 1280, 20, 5120, 50_257, 1024, 774e6, 774_030_080,
        in_table=False),
    Row("roberta:base", "RoBERTa-base", 12, 768, 12, 3072, 50_265, 512, 125e6, 124_052_736,
        in_table=False, note="512 positions, no token-type row"),
)

BY_KEY = {row.key: row for row in ROWS}


def rows_for(experiment: str) -> dict[str, Row]:
    """{variant: row} for one experiment file, e.g. rows_for('gpt2')['xl']."""
    return {row.variant: row for row in ROWS if row.experiment == experiment}
