"""Caption decoding and evaluation: greedy and beam search, BLEU-4 and the shapes exact-match."""
