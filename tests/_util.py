"""Shared helpers for tests that train tiny models through run()."""
from scaling import train
from scaling.config_loading import load


def tiny_config(family, data_dir, steps=3, **model):
    config = load(f"experiments/{family}.py:tiny")
    config.model.update({**dict(num_layers=2, width=32, num_heads=2, mlp_dim=64), **model})
    if family == "transformer":
        config.model.num_decoder_layers = 1
        config.data.update(seq_len=32, target_len=16)
    else:
        config.data.seq_len = 32
    config.data.data_dir = data_dir
    config.train.update(steps=steps, batch_size=4, log_every=1, eval_every=steps, eval_steps=1)
    config.metrics.update(tensorboard=False, device_peak_tflops=1.0)
    config.parallel.mesh.data = 1  # one device: these tests are about training, not sharding
    return config


def run_on(config, workdir, num_devices: int = 0):
    """run() on all devices, or on the first `num_devices` (parallel.num_devices)."""
    config.parallel.num_devices = num_devices
    return train.run(config, str(workdir))


def run_on_one_device(config, workdir):
    return run_on(config, workdir, 1)
