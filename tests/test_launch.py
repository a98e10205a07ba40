"""launch/: every script parses, and the SLURM script's dry run prints its srun line."""
import os
import pathlib
import subprocess

import pytest

LAUNCH = pathlib.Path(__file__).resolve().parents[1] / "launch"
SCRIPTS = sorted([*LAUNCH.glob("*.sh"), *LAUNCH.glob("*.sbatch")])


def test_there_are_launch_scripts():
    assert {p.name for p in SCRIPTS} >= {"host.sh", "local.sh", "slurm.sbatch", "tpu_pod.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_parses(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def _dry_run(cwd, **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("SCALING_REPO", "SLURM_SUBMIT_DIR", "SCALING_VENV")}
    out = subprocess.run(
        ["bash", str(LAUNCH / "slurm.sbatch"), "--config", "experiments/megatron.py:8b3",
         "--workdir", "/shared/runs/m8b", "--config.data.dataset=c4/en"],
        cwd=cwd, env={**environ, "DRY_RUN": "1", **env}, capture_output=True, text=True,
        check=True)
    return out.stdout.splitlines()


def test_slurm_dry_run_from_another_directory_prints_the_srun_line(tmp_path):
    lines = _dry_run(tmp_path, SCALING_VENV=str(tmp_path / "venv"))
    srun = [line for line in lines if line.startswith("srun ")]
    assert len(srun) == 1, lines
    repo = str(LAUNCH.parent)
    for text in (f"{repo}/launch/host.sh", "--config experiments/megatron.py:8b3",
                 "--workdir /shared/runs/m8b", "--config.data.dataset=c4/en",
                 f"PYTHON={tmp_path}/venv/bin/python"):
        assert text in srun[0], text
    # The venv is set up first (nothing is created in a dry run).
    assert any("pip install -e" in line and "[cuda]" in line for line in lines)
    assert not (tmp_path / "venv").exists()


def test_slurm_repo_from_the_environment(tmp_path):
    fake = tmp_path / "repo"
    (fake / "launch").mkdir(parents=True)
    (fake / "launch" / "host.sh").write_text("")
    (fake / ".venv").mkdir()
    (fake / ".venv" / ".scaling-cuda-installed").write_text("")
    lines = _dry_run(tmp_path, SCALING_REPO=str(fake))
    assert lines == [line for line in lines if line.startswith("srun ")]   # installed: no setup
    assert f"{fake}/launch/host.sh" in lines[0]
    lines = _dry_run(tmp_path, SLURM_SUBMIT_DIR=str(fake))
    assert f"{fake}/launch/host.sh" in lines[-1]
