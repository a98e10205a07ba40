"""`scaling caption`: one-line errors before anything is loaded or compiled."""
import importlib
import json

import pytest

from scaling import cli


def _run(capsys, *argv):
    code = cli.main(["caption", *argv])
    return code, capsys.readouterr().err.strip()


def _write_config(workdir, variant):
    experiment = importlib.import_module(f"experiments.{variant.split(':')[0]}")
    config = experiment.get_config(variant.split(":")[1])
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config.to_dict()))


def test_a_missing_workdir(capsys, tmp_path):
    code, err = _run(capsys, "--workdir", str(tmp_path / "nothing"))
    assert code == 2 and "--workdir: no config.json" in err and len(err.splitlines()) == 1


def test_not_a_captioning_run(capsys, tmp_path):
    _write_config(tmp_path, "gpt2:tiny")
    code, err = _run(capsys, "--workdir", str(tmp_path))
    assert code == 2 and "model.family" in err and "'decoder'" in err
    assert len(err.splitlines()) == 1


def test_an_unreadable_image(capsys, tmp_path):
    pytest.importorskip("scaling.data.images")  # the captioning data side
    _write_config(tmp_path, "captioning:tiny")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    code, err = _run(capsys, "--workdir", str(tmp_path), "--image", str(bad))
    assert code == 2 and "--image: cannot read" in err and len(err.splitlines()) == 1
    code, err = _run(capsys, "--workdir", str(tmp_path), "--image", str(tmp_path / "no.png"))
    assert code == 2 and "--image: cannot read" in err


def test_bad_flags(capsys, tmp_path):
    code, err = _run(capsys, "--workdir", str(tmp_path), "--beam", "0")
    assert code == 2 and "--beam" in err
