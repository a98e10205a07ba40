"""The library's default XLA flags never override the user's and can be turned off."""
from scaling.runtime import xla_flags


def test_defaults_are_added_but_never_override(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    monkeypatch.delenv("SCALING_XLA_FLAGS", raising=False)
    xla_flags.apply_defaults()
    import os
    assert os.environ["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=8", "--xla_cpu_experimental_ynn_fusion_type="]
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=dot")
    xla_flags.apply_defaults()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=dot"


def test_turned_off_by_environment(monkeypatch):
    import os
    monkeypatch.setenv("SCALING_XLA_FLAGS", "none")
    monkeypatch.setenv("XLA_FLAGS", "")
    xla_flags.apply_defaults()
    assert os.environ["XLA_FLAGS"] == ""
