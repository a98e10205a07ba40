"""Test setup: 8 fake CPU devices for every test, so sharding tests need no special flags.

XLA reads XLA_FLAGS once, when the backend starts; setting it here, before any test module
imports jax, is what makes `jax.devices()` return 8 CPU devices. The library's default flags
are added too, as the entry points add them (scaling.runtime.setup), so that a run in the
test process computes what a `scaling train` subprocess computes, bit for bit.
"""
import os

from scaling.runtime import xla_flags

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
xla_flags.apply_defaults()


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One prepared builtin corpus (TFDS data dir) per test worker."""
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """A persistent JAX compilation cache for one module's runs (restored afterwards).

    Modules that compile the same few programs again and again, in-process and in
    subprocesses (test_checkpoint.py, test_faults.py), opt in with
    `pytestmark = pytest.mark.usefixtures("compile_cache")`; it cuts their time about 3x.
    Executables are deterministic, so exactness is unaffected.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc
    path = str(tmp_path_factory.getbasetemp() / "jax_compilation_cache")
    old = (jax.config.jax_compilation_cache_dir,
           jax.config.jax_persistent_cache_min_compile_time_secs)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    cc.reset_cache()
    yield path
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
    cc.reset_cache()
