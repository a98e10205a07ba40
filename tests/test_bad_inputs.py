"""Bad command-line input to `scaling train`: exit 2, one readable line, nothing written.

The table grows with every kind of bad input we meet; tests/test_train.py holds the
data, model and mesh cases.
"""
import os

import pytest

from scaling.commands import train as train_cmd

CASES = [
    # (arguments after --workdir, the line's expected start, text it must contain)
    (["--config", "experiments/gpt2.py:tiny", "--config.train.stepz=3"],
     "--config.train.stepz: no such field", "did you mean 'steps'?"),
    (["--config", "experiments/gpt2.py:tiny", "--config.parallel.mesh.pipeline=2"],
     "--config.parallel.mesh.pipeline: no such field", "parallel.mesh has: data, fsdp, tensor"),
    (["--config", "experiments/gpt2.py:tiny", "--config.nope=1"],
     "--config.nope: no such field", "the config has: checkpoint, data"),
    (["--config", "experiments/gpt2.py:tinyy"],
     "experiments/gpt2.py: unknown variant 'tinyy'", "choose one of: tiny, xl"),
    (["--config", "experiments/no_such_file.py:tiny"],
     "--config: no such config file 'experiments/no_such_file.py'", ""),
    (["--config=experiments/no_such_file.py"],
     "--config: no such config file", ""),
    (["--config", "experiments/gpt2.py:tiny", "--config.train.steps=abc"],
     "--config.train.steps=abc: invalid literal", ""),
    (["--config", "experiments/gpt2.py:tiny", "--config.train.batch_size=0"],
     "train.batch_size: must be a positive number", "got 0"),
    (["--config", "experiments/gpt2.py:tiny", "--config.train.batch_size=-4"],
     "train.batch_size: must be a positive number", "got -4"),
    (["--config", "experiments/gpt2.py:tiny", "--config.model.vocab_size=100"],
     "model.vocab_size: 100 is smaller than the 384 ids", "data.tokenizer='byte'"),
    (["--config", "experiments/gpt2.py:tiny", "--config.train.max_skipped_steps=-1"],
     "train.max_skipped_steps: must be >= 0", ""),
    (["--config", "experiments/gpt2.py:tiny", "--config.data.eval_fraction=1.5"],
     "data.eval_fraction: the held-out fraction", "got 1.5"),
    (["--config", "experiments/gpt2.py:tiny", "--config.data.dataset=tiny_shakespeare",
      "--config.data.data_dir=/nonexistent/tfds"],
     "data.dataset: 'tiny_shakespeare' is not prepared", "tfds build tiny_shakespeare"),
    (["--config", "experiments/gpt2.py:tiny", "--config.metrics.cpu_peak_repeats=0"],
     "metrics.cpu_peak_repeats: must be an integer >= 1", "got 0"),
    (["--config", "experiments/gpt2.py:tiny", "--config.metrics.cpu_peak_max_age_days=-1"],
     "metrics.cpu_peak_max_age_days: must be >= 0", ""),
]


@pytest.mark.parametrize("args, start, contains", CASES, ids=[" ".join(c[0][1:]) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, start, contains, tmp_path, capsys):
    workdir = tmp_path / "run"
    code = train_cmd.main([*args, "--workdir", str(workdir)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"scaling train: error: {start}"), err
    assert contains in err, err
    assert not os.path.exists(workdir)
