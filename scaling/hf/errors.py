"""The one exception of the Hugging Face converters."""


class HFError(ValueError):
    """Bad input to import-hf / export-hf: a one-line message; the command exits 2."""
