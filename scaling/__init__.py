"""scaling: Transformer scaling experiments in JAX/Flax.

Importing the package changes nothing in the process: entry points call
`scaling.runtime.setup()` for XLA flags and host malloc.
"""
