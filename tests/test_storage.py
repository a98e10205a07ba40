"""Run directories in a bucket: a gs:// training run, stopped and resumed, equals a local one.

The bucket is a fake GCS server (gcp-storage-emulator, in this process, in memory) that both
gcsfs (epath: metrics.jsonl, config.json, TensorBoard) and tensorstore (orbax: checkpoints)
talk to through their emulator settings. The reference is the same run in a local directory.
"""
import contextlib
import logging
import os
import socket

import pytest

from scaling import storage
from scaling.commands import report as report_cmd, train as train_cmd
from scaling.runs import read_run
from scaling.stop import StopRequest

from _util import run_on_one_device, tiny_config

gcp_storage_emulator = pytest.importorskip("gcp_storage_emulator.server")

STEPS, STOP_AT = 6, 3
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The local and the two bucket runs compile one program: compile it once.
pytestmark = pytest.mark.usefixtures("compile_cache")


def _with_generations(emulator):
    """Patch the emulator's object reads and uploads to keep GCS's generation contract,
    which tensorstore's OCDBT relies on for its manifest: reads send `x-goog-generation`
    and answer `ifGenerationNotMatch` of the current generation with 304; reads and
    uploads with a failed `ifGenerationMatch` get 412. Returns a function that undoes it."""
    from http import HTTPStatus
    from gcp_storage_emulator.handlers import objects

    def generation(storage, request, name):
        try:
            return str(storage.get_file_obj(request.params["bucket_name"], name)["generation"])
        except Exception:  # noqa: BLE001  (not found)
            return "0"

    def condition(request, name):
        return request.query.get(name, [None])[0]

    original_download, original_insert = objects.download, objects.insert

    def download(request, response, storage, *args, **kwargs):
        current = generation(storage, request, request.params["object_id"])
        if current != "0" and condition(request, "ifGenerationNotMatch") == current:
            response.status = HTTPStatus.NOT_MODIFIED
            response["x-goog-generation"] = current
            return
        if condition(request, "ifGenerationMatch") not in (None, current):
            response.status = HTTPStatus.PRECONDITION_FAILED
            return
        original_download(request, response, storage, *args, **kwargs)
        if current != "0":
            response["x-goog-generation"] = current

    def insert(request, response, storage, *args, **kwargs):
        name = condition(request, "name")
        if name is not None and condition(request, "ifGenerationMatch") not in (
                None, generation(storage, request, name)):
            response.status = HTTPStatus.PRECONDITION_FAILED
            return
        original_insert(request, response, storage, *args, **kwargs)

    replaced = []
    objects.download = download  # objects.get calls it for ?alt=media
    for _, handlers in emulator.HANDLERS:
        for method, fn in handlers.items():
            new = {original_download: download, original_insert: insert}.get(fn)
            if new is not None:
                handlers[method] = new
                replaced.append((handlers, method, fn))

    def undo():
        objects.download = original_download
        for handlers, method, fn in replaced:
            handlers[method] = fn
    return undo


@pytest.fixture(scope="module")
def bucket():
    """A fake gs://bkt for this module; the emulator settings are undone afterwards."""
    pytest.importorskip("gcsfs")  # etils.epath's gs:// backend
    import http.server

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    url = f"http://localhost:{port}"
    env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
           "GOOGLE_AUTH_TOKEN_FOR_TESTING": "x", "NO_GCE_CHECK": "true",
           # gcsfs's bucket-type lookup needs real credentials: off (read at import)
           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    for name in ("gcp_storage_emulator", "gcsfs"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    undo = _with_generations(gcp_storage_emulator)
    server = gcp_storage_emulator.create_server("localhost", port, in_memory=True,
                                                default_bucket="bkt")
    # The emulator serves one request at a time on an http.server.HTTPServer: a deeper
    # listen backlog for tensorstore's parallel requests, and no traceback on stderr for
    # each connection a client closed early.
    plain = http.server.HTTPServer
    http.server.HTTPServer = type("QuietServer", (plain,), {
        "request_queue_size": 256, "handle_error": lambda self, request, address: None})
    try:
        server.start()  # the server is made (and listens) before start() returns
    finally:
        http.server.HTTPServer = plain
    try:
        yield "gs://bkt"
    finally:
        server.stop()
        undo()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def config(data_dir):
    c = tiny_config("gpt2", data_dir, steps=STEPS)
    c.train.update(log_every=2, eval_every=3)
    c.checkpoint.every = 2
    c.metrics.tensorboard = True
    return c


@contextlib.contextmanager
def stop_after(step):
    """As a SIGTERM arriving during `step`: the loop saves that step and stops."""
    original = StopRequest.reached

    def reached(self, s):
        if s == step:
            self.signal_name = "SIGTERM"
        return original(self, s)

    StopRequest.reached = reached
    try:
        yield
    finally:
        StopRequest.reached = original


def test_bucket_run_stopped_and_resumed_equals_local_run(bucket, data_dir, tmp_path):
    import jax
    import numpy as np

    local = run_on_one_device(config(data_dir), tmp_path / "local")

    workdir = f"{bucket}/run"
    with stop_after(STOP_AT):
        first = run_on_one_device(config(data_dir), workdir)
    assert first["stopped_at"] == STOP_AT
    resumed = run_on_one_device(config(data_dir), workdir)
    assert resumed["start_step"] == STOP_AT

    for x, y in zip(jax.tree.leaves(local["state"].params),
                    jax.tree.leaves(resumed["state"].params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    local_run, bucket_run = read_run(tmp_path / "local"), read_run(workdir)
    # The stop wrote a record of the cut window at step 3; every other step as locally.
    bucket_losses = {r["step"]: r["loss"] for r in bucket_run.train}
    assert bucket_losses.pop(STOP_AT) is not None
    assert bucket_losses == {r["step"]: r["loss"] for r in local_run.train}
    assert [r["eval_loss"] for r in bucket_run.evals] == [r["eval_loss"] for r in local_run.evals]
    assert bucket_run.run_end is not None and bucket_run.config == local_run.config

    root = storage.path(workdir)
    assert sorted(p.name for p in (root / "checkpoints").iterdir()
                  if p.name.isdigit()) == ["4", "6"]          # keep=2 of 2, 3, 4, 6
    events = list((root / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 2 and all(p.stat().length > 0 for p in events)  # one per start
    assert not os.path.exists("gs:")  # a URL taken for a local path would make ./gs:/bkt
    assert report_cmd.main([workdir, "--json"]) == 0


def test_bucket_lines_are_uploaded_every_ten_seconds_and_on_flush(bucket):
    """No append on a bucket: the appender rewrites the object, at most every 10 s."""
    now = [0.0]
    target = f"{bucket}/lines/metrics.jsonl"
    storage.path(target).write_text('{"step": 0}\n')  # a resumed run continues the file
    lines = storage.LineAppender(target, upload_every_s=10, clock=lambda: now[0])
    lines.write('{"step": 1}\n')
    assert storage.read_text(target) == '{"step": 0}\n'   # within 10 s: not yet
    now[0] = 10.0
    lines.write('{"step": 2}\n')
    assert storage.read_text(target).splitlines() == ['{"step": 0}', '{"step": 1}',
                                                      '{"step": 2}']
    lines.write('{"step": 3}\n')
    lines.close()
    assert storage.read_text(target).splitlines()[-1] == '{"step": 3}'


@pytest.mark.parametrize("url, says", [
    ("ftp://host/run", "unknown scheme 'ftp://'"),
    ("s3://bkt/run", "s3:// cannot hold training checkpoints"),
    ("gs://", "names no bucket"),
])
def test_unusable_workdir_url_exits_2_in_one_line(url, says, data_dir, tmp_path, capsys,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = train_cmd.main(["--config", f"{REPO}/experiments/gpt2.py:tiny", "--workdir", url,
                           f"--config.data.data_dir={data_dir}", "--config.train.steps=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--workdir" in err and says in err, err
    assert os.listdir(tmp_path) == []


def test_import_hf_into_a_bucket_samples_and_exports_as_a_local_import(bucket, tmp_path,
                                                                      capsys):
    """import-hf writes config.json, the tokenizer and checkpoints/0 into the bucket; sample
    and export-hf read them back exactly as they read a local import (the reference)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from test_hf import bpe_tokenizer, gpt2_model, run_cli, save

    tok = bpe_tokenizer(tmp_path / "tok", vocab_size=300)
    src = save(gpt2_model(vocab=len(tok), positions=32), tmp_path / "hf", tok)
    outputs = {}
    for where, workdir in (("local", str(tmp_path / "imported")), ("bucket", f"{bucket}/imp")):
        rc, _, err = run_cli(capsys, "import-hf", src, "--family", "gpt2", "--workdir", workdir)
        assert rc == 0, err
        rc, text, err = run_cli(capsys, "sample", "--workdir", workdir, "--tokens", "4",
                                "--prompt", "def ", "--greedy")
        assert rc == 0, err
        out = tmp_path / f"export_{where}"
        rc, _, err = run_cli(capsys, "export-hf", "--workdir", workdir, "--out", str(out))
        assert rc == 0, err
        outputs[where] = (text, (out / "model.safetensors").read_bytes(),
                          (out / "tokenizer.json").read_bytes())
    assert outputs["bucket"] == outputs["local"]
    assert storage.path(f"{bucket}/imp/tokenizer/tokenizer.json").is_file()
    assert not os.path.exists("gs:")
