"""Tracking beyond metrics.jsonl: the config as TensorBoard hparams, W&B (offline), and the
profiler window; each read back from the files a tiny run leaves."""
import glob
import json
import struct
import sys

import pytest

from _util import run_on_one_device, tiny_config
from scaling import tracking
from scaling.commands import train as train_cmd
from scaling.metrics import MetricsWriter, flatten_config
from scaling.profiling import StepTracer, parse_profile_steps


def tfrecords(path):
    """The payloads of a TFRecord file (8-byte length, 4-byte crc, payload, 4-byte crc)."""
    data, pos = open(path, "rb").read(), 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        yield data[pos + 12:pos + 12 + length]
        pos += 12 + length + 4


def read_tb_hparams(tb_dir):
    """{name: value} of the hparams session-start summaries in tb_dir's event files."""
    from tensorboardX.proto import event_pb2, plugin_hparams_pb2
    out = {}
    for path in sorted(glob.glob(f"{tb_dir}/events.out.tfevents.*")):
        for payload in tfrecords(path):
            for value in event_pb2.Event.FromString(payload).summary.value:
                if value.tag != "_hparams_/session_start_info":
                    continue
                data = plugin_hparams_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content)
                for name, v in data.session_start_info.hparams.items():
                    out[name] = getattr(v, v.WhichOneof("kind"))
    return out


def read_wandb_offline(run_dir):
    """(history rows, config) from an offline W&B run's transaction log (run-*.wandb): a
    7-byte W&B header, then LevelDB-log records (crc 4, length 2, type 1; 32 KiB blocks)
    holding wandb_internal_pb2.Record messages."""
    from wandb.proto import wandb_internal_pb2
    data = open(glob.glob(f"{run_dir}/run-*.wandb")[0], "rb").read()
    assert data[:4] == b":W&B"
    block, pos, parts, history, config = 32768, 7, b"", [], {}
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        if left < 7 or kind == 0:            # block trailer / padding
            pos += left
            continue
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind not in (1, 4):               # FIRST / MIDDLE: the record continues
            continue
        record, parts = wandb_internal_pb2.Record.FromString(parts), b""
        key = lambda item: item.key or "/".join(item.nested_key)  # noqa: E731
        if record.WhichOneof("record_type") == "history":
            history.append({key(i): json.loads(i.value_json) for i in record.history.item})
        elif record.WhichOneof("record_type") == "run":
            config.update({key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif record.WhichOneof("record_type") == "config":
            config.update({key(i): json.loads(i.value_json) for i in record.config.update})
    return history, config


def wandb_importable():
    try:
        import wandb  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory, data_dir):
    """One tiny run with TensorBoard, a profile window and (if installed) offline W&B."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    workdir = tmp_path_factory.mktemp("traced") / "run"
    config = tiny_config("gpt2", data_dir, steps=4)
    config.train.log_every = 2
    config.metrics.update(tensorboard=True, profile_steps="2:3", wandb=wandb_importable(),
                          wandb_project="scaling-tests")
    try:
        run_on_one_device(config, workdir)
    finally:
        mp.undo()
    return workdir


def test_profile_window_leaves_a_trace(traced_run):
    traces = glob.glob(str(traced_run / "tb" / "plugins" / "profile" / "*" / "*.xplane.pb"))
    assert len(traces) == 1
    records = [json.loads(line) for line in open(traced_run / "metrics.jsonl")]
    assert [r["step"] for r in records if "loss" in r] == [2, 4]
    assert any(r.get("badput_profile_s", 0) > 0 for r in records)


def test_resolved_config_is_in_tensorboard_hparams(traced_run):
    hparams = read_tb_hparams(traced_run / "tb")
    config = json.load(open(traced_run / "config.json"))
    assert hparams["model.width"] == config["model"]["width"] == 32
    assert hparams["model.name"] == config["model"]["name"]
    assert hparams["train.steps"] == 4 and hparams["metrics.profile_steps"] == "2:3"
    assert hparams["parallel.mesh.data"] == 1
    assert hparams["optim.lr"] == pytest.approx(config["optim"]["lr"])


@pytest.mark.skipif(not wandb_importable(), reason="wandb is not installed (the wandb extra)")
def test_wandb_offline_run_has_the_jsonl_scalars(traced_run):
    run_dirs = glob.glob(str(traced_run / "wandb" / "offline-run-*"))
    assert len(run_dirs) == 1
    history, config = read_wandb_offline(run_dirs[0])
    records = [json.loads(line) for line in open(traced_run / "metrics.jsonl")]
    train = [r for r in records if "loss" in r and "event" not in r]
    by_step = {}
    for row in history:
        by_step.setdefault(row["_step"], {}).update(row)
    for r in train:
        logged = by_step[r["step"]]
        for key in ("loss", "tokens_per_s", "mfu", "tokens_seen", "lr"):
            assert logged[key] == pytest.approx(r[key]), key
    evals = [r for r in records if "eval_loss" in r and "event" not in r]
    assert by_step[evals[-1]["step"]]["eval_loss"] == pytest.approx(evals[-1]["eval_loss"])
    assert config["model"]["width"] == 32 and config["train"]["steps"] == 4
    assert (traced_run / tracking.RUN_ID_FILE).read_text().strip() in run_dirs[0]


def test_writer_hands_the_jsonl_scalars_to_the_tracker(tmp_path):
    class Fake:
        def __init__(self):
            self.logged, self.events, self.closed = [], [], False

        def log(self, step, scalars):
            self.logged.append((step, scalars))

        def event(self, kind, fields):
            self.events.append((kind, fields))

        def close(self):
            self.closed = True

    fake = Fake()
    with MetricsWriter(tmp_path, enabled=True, tensorboard=False, tracker=fake) as writer:
        writer.write_event("run_start", params=10)
        writer.write({"step": 3, "loss": 1.5, "mfu": None, "mfu_warning": "x", "ok": True})
    assert fake.logged == [(3, {"loss": 1.5})]       # numbers only; nulls and text are not
    assert fake.events == [("run_start", {"params": 10})] and fake.closed
    off = Fake()
    MetricsWriter(tmp_path / "off", enabled=False, tracker=off).write({"step": 1, "loss": 1.0})
    assert off.logged == []                           # not process 0: nothing


def test_wandb_missing_is_one_warning_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)    # import wandb -> ImportError
    config = tiny_config("gpt2", "").metrics
    config.wandb = True
    assert tracking.open_wandb(config, {}, str(tmp_path)) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wandb package is not installed" in err
    config.wandb = False
    assert tracking.open_wandb(config, {}, str(tmp_path)) is None


def test_flatten_config():
    assert flatten_config({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": None, "g": {}}) \
        == {"a.b": 1, "a.c.d": "x", "e": "[1, 2]", "f": None, "g": "{}"}


@pytest.mark.parametrize("text, window", [("", None), ("5:8", (5, 8)), (" 3:3 ", (3, 3)),
                                          ("7", (7, 7))])
def test_parse_profile_steps(text, window):
    assert parse_profile_steps(text, 100) == window


@pytest.mark.parametrize("text", ["8:5", "0:2", "a:b", "5-8", "1:2:3", "-1:4"])
def test_parse_profile_steps_rejects(text):
    with pytest.raises(ValueError, match="metrics.profile_steps: expected 'FIRST:LAST'"):
        parse_profile_steps(text)


def test_tracer_window_resume_and_early_end(tmp_path, monkeypatch):
    import jax
    calls = []
    monkeypatch.setattr(jax.profiler, "start_trace", lambda d: calls.append(("start", d)))
    monkeypatch.setattr(jax.profiler, "stop_trace", lambda: calls.append(("stop",)))
    tracer = StepTracer((5, 8), str(tmp_path))
    for step in range(1, 11):
        tracer.before_step(step)
        tracer.after_step(step, None)
        calls.append(step)
    assert calls == [1, 2, 3, 4, ("start", str(tmp_path)), 5, 6, 7, ("stop",), 8, 9, 10]
    calls.clear()
    tracer = StepTracer((5, 8), str(tmp_path))       # resumed at step 7, stopped at step 7
    tracer.before_step(7)
    tracer.after_step(7, None)
    tracer.close()
    tracer.close()
    assert calls == [("start", str(tmp_path)), ("stop",)]


@pytest.mark.parametrize("value, message", [
    ("8:5", "metrics.profile_steps: expected 'FIRST:LAST'"),
    ("500:600", "metrics.profile_steps: the window '500:600' starts after the last step"),
])
def test_bad_profile_steps_fail_before_compiling(value, message, tmp_path, capsys):
    workdir = tmp_path / "run"
    code = train_cmd.main(["--config", "experiments/gpt2.py:tiny", "--config.train.steps=100",
                           f"--config.metrics.profile_steps={value}", "--workdir", str(workdir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and message in err, err
    assert not workdir.exists()
