"""The README's "From the quick start to a real run", command by command, as far as a CPU
allows: a small byte-level BPE saved as GPT-2's two files in place of GPT-2's own, jsonl
shards of a few hundred documents, GPT-2 small's recipe with the model and batch shrunk, a
fake GCS bucket for the workdir, a preemption (SIGTERM) and the restart, and the SLURM
script's dry run. The commands are the README's, with overrides appended.
"""
import json
import os
import subprocess

import pytest

from scaling import storage
from scaling.commands import plan as plan_cmd, prepare_data as prepare_cmd
from scaling.commands import report as report_cmd, train as train_cmd
from scaling.runs import read_run

from test_storage import bucket, stop_after  # noqa: F401  (bucket is a fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = f"{REPO}/experiments/gpt2.py:small"
# GPT-2 small's recipe as the README runs it, shrunk to seconds on one CPU device.
SHRINK = ["--config.model.num_layers=1", "--config.model.width=32", "--config.model.num_heads=2",
          "--config.model.mlp_dim=64", "--config.data.seq_len=32", "--config.train.batch_size=4",
          "--config.train.micro_batches=1", "--config.parallel.mesh.data=1",
          "--config.parallel.num_devices=1"]
RUN = ["--config.train.steps=4", "--config.train.log_every=1", "--config.train.eval_every=2",
       "--config.train.eval_steps=1", "--config.checkpoint.every=2",
       "--config.optim.warmup_steps=1", "--config.metrics.device_peak_tflops=1.0"]
WORDS = ("the model reads text and predicts the next token while the loss falls as it grows "
         "larger and sees more data for each step of training on eight accelerators").split()


@pytest.fixture
def tokenizers_dir(tmp_path, monkeypatch):
    """$SCALING_TOKENIZERS/gpt2 holding vocab.json + merges.txt, as `hf download` leaves them."""
    from tokenizers import ByteLevelBPETokenizer
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator([" ".join(WORDS)] * 50, vocab_size=400,
                            special_tokens=["<|endoftext|>"])
    (tmp_path / "tokenizers" / "gpt2").mkdir(parents=True)
    tok.save_model(str(tmp_path / "tokenizers" / "gpt2"))
    monkeypatch.setenv("SCALING_TOKENIZERS", str(tmp_path / "tokenizers"))
    return tmp_path / "tokenizers"


def _shards(directory, documents=400, shards=2):
    """OpenWebText-style jsonl shards: one {"text": ...} per line."""
    directory.mkdir()
    for s in range(shards):
        with open(directory / f"part-{s:05d}.jsonl", "w") as f:
            for d in range(s, documents, shards):
                words = [WORDS[(d * 7 + i * 3) % len(WORDS)] for i in range(20 + d % 30)]
                f.write(json.dumps({"text": " ".join(words) + "."}) + "\n")


def test_the_real_run_guide(tokenizers_dir, bucket, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    _shards(tmp_path / "owt")
    prepared = str(tmp_path / "owt_gpt2")

    # 3. Data: tokenize and pack once.
    assert prepare_cmd.main(["--config", CONFIG, "--out", prepared, "--processes", "2",
                             "--config.data.dataset=files",
                             f"--config.data.files={tmp_path}/owt/*.jsonl", *SHRINK]) == 0
    meta = json.load(open(os.path.join(prepared, "meta.json")))
    assert meta["tokenizer"].startswith("gpt2_bpe-") and meta["seq_len"] == 32

    # 4. The recipe's memory per device before queueing (the planner; compile is tested in
    # tests/test_recipes.py and tests/test_compile.py).
    assert plan_cmd.main(["--config", CONFIG, "--device", "h100"]) == 0
    assert "GiB" in capsys.readouterr().out

    # 5. Train into the bucket; a SIGTERM at step 2 saves and stops; 7. the same command
    # resumes from that checkpoint and finishes.
    workdir = f"{bucket}/runs/gpt2-small"
    train = ["--config", CONFIG, "--workdir", workdir,
             f"--config.data.dataset=prepared:{prepared}", *SHRINK, *RUN]
    with stop_after(2):
        assert train_cmd.main(train) == 0
    assert train_cmd.main(train) == 0
    run = read_run(workdir)
    starts = [r for r in run.events if r.get("event") == "run_start"]
    assert [s["resumed_from_step"] for s in starts] == [0, 2]
    assert run.run_end is not None and run.evals[-1]["step"] == 4
    assert 0 < run.evals[-1]["eval_bpb"] < 16  # bits per byte, reported beside the loss
    config = json.loads(storage.read_text(f"{workdir}/config.json"))
    assert config["data"]["tokenizer"] == f"gpt2_bpe:{tokenizers_dir}/gpt2"
    assert config["optim"]["lr"] == 6e-4 and config["data"]["dataset"] == f"prepared:{prepared}"
    assert list(storage.path(f"{workdir}/tb").glob("events.out.tfevents.*"))

    # 6. Watch: the report reads the bucket.
    capsys.readouterr()
    assert report_cmd.main([workdir]) == 0
    assert "gpt2" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["owt", "owt_gpt2", "tokenizers"]  # no ./gs:


def test_the_guide_slurm_line_dry_run(tmp_path):
    env = dict(os.environ, DRY_RUN="1", SCALING_REPO=REPO, SCALING_VENV=str(tmp_path / "venv"))
    out = subprocess.run(
        ["bash", f"{REPO}/launch/slurm.sbatch", "--config", "experiments/gpt2.py:small",
         "--workdir", "gs://my-bucket/runs/gpt2-small",
         "--config.data.dataset=prepared:/data/owt_gpt2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    srun = out.strip().splitlines()[-1]
    assert srun.startswith("srun ") and f"{REPO}/launch/host.sh" in srun
    assert "--workdir gs://my-bucket/runs/gpt2-small" in srun
    assert "prepared:/data/owt_gpt2" in srun
    assert "pip install -e" in out  # the first run sets up its own environment
