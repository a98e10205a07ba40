"""RoBERTa (Liu et al. 2019): BERT's layout, one token type, 514 positions (2 reserved by
fairseq's padding offset), BPE vocabulary 50,265, dynamic masking (fresh masks every epoch).

Variants: tiny, base, large.
"""
from experiments._family import make_config
from experiments.bert import FAMILY as BERT

# Positions start at row 2 (fairseq's padding_idx + 1), as in the published weights.
FAMILY = dict(BERT, type_vocab_size=1, layer_norm_eps=1e-5, position_offset=2)
TINY = dict(vocab_size=0, num_layers=4, width=128, num_heads=4, mlp_dim=512, max_len=130)


def get_config(variant: str = "tiny"):
    config = make_config("roberta", variant, FAMILY, TINY,
                         data=dict(objective="mlm", dynamic_masking=True))
    if variant == "base":
        # REFERENCE.md's RoBERTa-base count (124,052,736) is the backbone without a token-type
        # row and without the pooler; the large count includes both.
        config.model.update(type_vocab_size=0, pooler=False)
    return config
