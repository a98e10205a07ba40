"""Tests of where documents come from: unprepared TFDS names, data.download, data.files."""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from scaling.commands import train as train_cmd
from scaling.config import base_config
from scaling.data import sources

# ----------------------------------------------------------------------------- unprepared TFDS


def test_unprepared_tfds_name_is_one_line_naming_tfds_build_and_download(tmp_path, capsys):
    workdir = tmp_path / "run"
    code = train_cmd.main(["--config", "experiments/gpt2.py:tiny", "--workdir", str(workdir),
                           "--config.data.dataset=tiny_shakespeare",
                           f"--config.data.data_dir={tmp_path / 'tfds'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("scaling train: error: data.dataset: 'tiny_shakespeare' is not "
                          "prepared"), err
    assert f"tfds build tiny_shakespeare --file_format=array_record " \
           f"--data_dir={tmp_path / 'tfds'}" in err, err
    assert "data.download=True" in err, err
    assert not os.path.exists(workdir)


TOY_TEXTS = [f"toy document {i}: " + "abc " * i for i in range(12)]


class ScalingToyTexts(tfds.core.GeneratorBasedBuilder):
    """A registered dataset whose 'download' is local: stands in for a real TFDS name."""

    VERSION = tfds.core.Version("1.0.0")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return None

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"text": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(TOY_TEXTS[:8]),
                "test": self._generate_examples(TOY_TEXTS[8:])}

    def _generate_examples(self, texts):
        for i, t in enumerate(texts):
            yield i, {"text": t}


def test_download_prepares_an_unprepared_tfds_name(tmp_path):
    c = base_config()
    c.data.dataset = "scaling_toy_texts"
    c.data.data_dir = str(tmp_path)
    with pytest.raises(ValueError, match="not prepared.*data.download=True"):
        sources.open_split(c.data, "train")
    c.data.download = True
    train = sources.open_split(c.data, "train")
    validation = sources.open_split(c.data, "validation")  # falls back to 'test'
    assert sorted(train[i] for i in range(len(train))) == sorted(TOY_TEXTS[:8])
    assert sorted(validation[i] for i in range(len(validation))) == sorted(TOY_TEXTS[8:])
    assert list((tmp_path / "scaling_toy_texts").rglob("*.array_record*"))
