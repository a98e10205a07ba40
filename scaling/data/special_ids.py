"""The special ids shared by the byte, SentencePiece and words tokenizers (tokenizer.py,
words.py), so batches from any of them look alike; a leaf, imported by both."""

PAD_ID, EOS_ID, BOS_ID, SEP_ID, MASK_ID = 0, 1, 2, 3, 4
NUM_RESERVED = 5                    # ids below this are the specials above
