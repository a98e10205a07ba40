"""Test setup: 8 fake CPU devices for every test, so sharding tests need no special flags.

XLA reads XLA_FLAGS once, when the backend starts; setting it here, before any test module
imports jax, is what makes `jax.devices()` return 8 CPU devices.
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One prepared builtin corpus (TFDS data dir) per test worker."""
    return str(tmp_path_factory.mktemp("tfds"))
