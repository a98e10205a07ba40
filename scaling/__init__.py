"""scaling: Transformer scaling experiments in JAX/Flax."""
from scaling import xla_flags as _xla_flags

_xla_flags.apply_defaults()  # before JAX starts a backend; see scaling/xla_flags.py
