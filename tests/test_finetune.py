"""Fine-tuning: task heads against numpy, losses, init_from, freezing, bad input, end to end."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from scaling import runs
from scaling.commands import report as report_cmd
from scaling.commands import train as train_cmd
from scaling.config_loading import load
from scaling.models import build_model, example_batch, model_spec
from scaling.models.task import TaskModel
from scaling.tasks import TaskSpec, task_spec
from scaling.train_step import weighted_cross_entropy, weighted_squared_error

from _util import run_on_one_device, tiny_config

pytestmark = pytest.mark.usefixtures("compile_cache")  # same programs again and again

SMALL = dict(num_layers=2, width=32, num_heads=2, mlp_dim=64)


def finetune_config(family, data_dir, steps=2, task="builtin_modules", **more):
    """A tiny fine-tuning run on one device: 64 labelled examples, seq_len 32, batch 32."""
    config = load(f"experiments/finetune.py:{family}_tiny_builtin")
    config.model.update(SMALL)
    config.data.update(seq_len=32, data_dir=data_dir, dataset=task)
    config.task.kind = ("token_classification" if task == "builtin_tokens"
                        else "sequence_classification")
    config.task.max_train_examples = 64
    config.train.update(steps=steps, batch_size=32, log_every=1, eval_every=steps)
    config.optim.update(warmup_steps=0)
    config.metrics.update(tensorboard=False, device_peak_tflops=1.0)
    config.parallel.mesh.data = 1
    for key, value in more.items():
        section, field = key.split(".")
        config[section][field] = value
    return config


def _init(config, batch):
    spec, task = model_spec(config), task_spec(config)
    model = build_model(spec, task)
    return model, nn.unbox(model.init(jax.random.PRNGKey(0), batch)["params"])


def _batch(rng, family, b=3, t=6):
    ids = rng.integers(5, 200, (b, t)).astype(np.int32)
    mask = (np.arange(t)[None] < np.array([[6], [4], [2]])).astype(np.int32)
    batch = {"inputs": ids * mask, "input_mask": mask}
    if family == "bert":
        batch["token_types"] = np.zeros_like(ids)
    return batch


def _hidden(config, params, batch):
    """The backbone's last hidden states, from the pretraining model with the same params."""
    spec = model_spec(config)
    lm = build_model(spec)
    lm_params = nn.unbox(lm.init(jax.random.PRNGKey(1), batch)["params"])
    shared = {k: v for k, v in params.items() if k != "task_head"}
    lm_params.update(shared)
    _, state = lm.apply({"params": lm_params}, batch, capture_intermediates=True,
                        mutable=["intermediates"])
    inter = state["intermediates"]
    last = "ln_final" if spec.final_norm else "blocks"
    return np.asarray(inter[last]["__call__"][0]), inter


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_sequence_head_is_a_dense_layer_on_the_pooled_token(family, data_dir):
    config = finetune_config(family, data_dir, **{"task.pooling": "auto"})
    batch = _batch(np.random.default_rng(0), family)
    model, params = _init(config, batch)
    logits = np.asarray(model.apply({"params": params}, batch))
    hidden, inter = _hidden(config, params, batch)
    if family == "bert":   # BERT: the tanh pooler over [CLS]
        p = params["pooler"]
        pooled = np.tanh(hidden[:, 0] @ np.asarray(p["kernel"]) + np.asarray(p["bias"]))
        np.testing.assert_allclose(pooled, np.asarray(inter["pooled"][0]), atol=1e-5)
    else:                  # GPT-2: the last real token (lengths 6, 4, 2)
        pooled = hidden[np.arange(3), [5, 3, 1]]
    head = params["task_head"]
    expected = pooled @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    assert logits.shape == (3, 8)
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_token_and_regression_heads(data_dir):
    config = finetune_config("bert", data_dir)
    batch = _batch(np.random.default_rng(1), "bert")
    spec = model_spec(config)
    model = TaskModel(spec, TaskSpec("token_classification", 6, "first"))
    params = nn.unbox(model.init(jax.random.PRNGKey(0), batch)["params"])
    hidden, _ = _hidden(config, params, batch)
    head = params["task_head"]
    np.testing.assert_allclose(np.asarray(model.apply({"params": params}, batch)),
                               hidden @ np.asarray(head["kernel"]) + np.asarray(head["bias"]),
                               atol=1e-5)
    model = TaskModel(spec, TaskSpec("sequence_classification", 5, "mean"))
    params = nn.unbox(model.init(jax.random.PRNGKey(0), batch)["params"])
    hidden, _ = _hidden(config, params, batch)
    mask = batch["input_mask"][..., None]
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    head = params["task_head"]
    np.testing.assert_allclose(np.asarray(model.apply({"params": params}, batch)),
                               pooled @ np.asarray(head["kernel"]) + np.asarray(head["bias"]),
                               atol=1e-5)
    model = TaskModel(spec, TaskSpec("regression", 1, "first"))
    params = nn.unbox(model.init(jax.random.PRNGKey(0), batch)["params"])
    assert model.apply({"params": params}, batch).shape == (3,)
    assert params["task_head"]["kernel"].shape == (32, 1)


def test_losses_match_naive_formulas():
    rng = np.random.default_rng(2)
    logits, targets = rng.normal(size=(5, 3)), rng.integers(0, 3, 5)
    weights = np.array([1, 1, 0, 1, 1], np.float32)
    loss, correct, total = weighted_cross_entropy(jnp.asarray(logits), targets, weights)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert float(loss) == pytest.approx(-(log_p[np.arange(5), targets] * weights).sum(), rel=1e-5)
    assert float(correct) == ((logits.argmax(-1) == targets) * weights).sum() and total == 4
    predictions, values = rng.normal(size=5), rng.normal(size=5)
    loss, _, total = weighted_squared_error(jnp.asarray(predictions), values, weights)
    assert float(loss) == pytest.approx((((predictions - values) ** 2) * weights).sum(), rel=1e-5)


def _flat(params):
    return traverse_util.flatten_dict(jax.device_get(params), sep="/")


@pytest.fixture(scope="module")
def pretrained(data_dir, tmp_path_factory):
    """A 2-step tiny BERT MLM run (the backbone to fine-tune) and its final state."""
    workdir = tmp_path_factory.mktemp("pretrained")
    config = tiny_config("bert", data_dir, steps=2)
    config.model.update(SMALL)
    config.checkpoint.every = 0
    return workdir, run_on_one_device(config, workdir)


def test_init_from_restores_the_backbone_exactly_and_leaves_the_head_fresh(
        pretrained, data_dir, tmp_path, capsys):
    workdir, ref = pretrained
    # One step whose learning rate is 0 (warmup starts at 0): the state stays as restored.
    config = finetune_config("bert", data_dir, steps=1, **{"optim.warmup_steps": 5})
    config.checkpoint.init_from = str(workdir)
    result = run_on_one_device(config, tmp_path)
    out = capsys.readouterr().out
    assert "freshly initialised: task_head/bias, task_head/kernel" in out
    assert "not used from the checkpoint: head/" in out
    tuned, pre = _flat(result["state"].params), _flat(ref["state"].params)
    backbone = [k for k in tuned if not k.startswith("task_head/")]
    assert backbone and set(backbone) == {k for k in pre if not k.startswith("head/")}
    for k in backbone:
        np.testing.assert_array_equal(tuned[k], pre[k], err_msg=k)
    # The head is what a fresh initialisation with the run's seed gives (up to rounding:
    # run() initialises under jit).
    model = build_model(model_spec(config), task_spec(config))
    init_rng, _ = jax.random.split(jax.random.PRNGKey(config.train.seed))
    fresh = nn.unbox(model.init(init_rng, example_batch(model_spec(config), 1, 32))["params"])
    for k in ("kernel", "bias"):
        np.testing.assert_allclose(tuned[f"task_head/{k}"], fresh["task_head"][k], rtol=1e-6,
                                   atol=1e-8)


def test_freeze_backbone_leaves_it_bitwise_unchanged(pretrained, data_dir, tmp_path):
    workdir, ref = pretrained
    config = finetune_config("bert", data_dir, steps=3, **{"optim.freeze_backbone": True})
    config.checkpoint.init_from = str(workdir)
    tuned, pre = _flat(run_on_one_device(config, tmp_path)["state"].params), _flat(
        ref["state"].params)
    for k in tuned:
        if not k.startswith("task_head/"):
            np.testing.assert_array_equal(tuned[k], pre[k], err_msg=k)
    model = build_model(model_spec(config), task_spec(config))
    init_rng, _ = jax.random.split(jax.random.PRNGKey(config.train.seed))
    fresh = nn.unbox(model.init(init_rng, example_batch(model_spec(config), 1, 32))["params"])
    assert not np.array_equal(tuned["task_head/kernel"], fresh["task_head"]["kernel"])


@pytest.mark.parametrize("family,task", [("gpt2", "builtin_modules"),
                                         ("roberta", "builtin_tokens")])
def test_end_to_end_fine_tune_logs_task_metrics_over_the_whole_split(
        family, task, data_dir, tmp_path, capsys):
    config = finetune_config(family, data_dir, steps=4, task=task)
    result = run_on_one_device(config, tmp_path)
    assert all(np.isfinite(result["train_losses"]))
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    final = [r for r in records if "eval_accuracy" in r][-1]
    assert {"eval_loss", "eval_accuracy", "eval_macro_f1", "eval_examples"} <= set(final)
    from scaling.tasks import builtin_modules
    if task == "builtin_modules":   # every validation example counted once
        assert final["eval_examples"] == len(builtin_modules.examples("validation"))
    assert runs.summarize(runs.read_run(tmp_path))["final_eval_accuracy"] == pytest.approx(
        final["eval_accuracy"])
    capsys.readouterr()
    assert report_cmd.main([str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "eval acc" in table and f"{100 * final['eval_accuracy']:.1f}%" in table


def _cli(variant, workdir, **overrides):
    return ["--config", f"experiments/{variant}", "--workdir", str(workdir),
            *[f"--config.{k}={v}" for k, v in overrides.items()]]


BAD_INPUTS = [
    ("finetune.py:bert_tiny_builtin", {"task.num_labels": 4},
     "task.num_labels: 4 is smaller than builtin_modules's 8 labels"),
    ("finetune.py:bert_tiny_builtin", {"task.kind": "regression"},
     "task.kind: 'regression' does not fit builtin_modules"),
    ("finetune.py:bert_base_stsb", {"task.kind": "sequence_classification"},
     "task.kind: 'sequence_classification' does not fit glue/stsb"),
    ("finetune.py:bert_tiny_builtin", {"task.kind": "ranking"}, "task.kind: unknown 'ranking'"),
    ("finetune.py:bert_tiny_builtin", {"task.kind": ""}, "task.kind: data.objective='task'"),
    ("finetune.py:bert_tiny_builtin", {"data.objective": "mlm"}, "data.objective: 'mlm'"),
    ("finetune.py:bert_tiny_builtin", {"data.dataset": "glue/nope"}, "data.dataset:"),
    ("finetune.py:gpt2_tiny_builtin", {"task.pooling": "first"}, "task.pooling:"),
    ("finetune.py:bert_tiny_builtin", {"task.pooling": "max"}, "task.pooling: unknown"),
    ("finetune.py:bert_tiny_builtin", {"task.max_train_examples": -1},
     "task.max_train_examples:"),
    ("finetune.py:bert_tiny_builtin", {"parallel.engine": "pmap"}, "parallel.engine:"),
    ("gpt2.py:tiny", {"optim.freeze_backbone": True}, "optim.freeze_backbone:"),
    ("gpt2.py:tiny", {"data.corpus_exclude": "*"}, "data.corpus: no text files match"),
    ("finetune.py:bert_base_sst2", {"data.tokenizer": "byte"},
     "data.dataset: 'glue/sst2' is not prepared"),
]


@pytest.mark.parametrize("variant,overrides,message", BAD_INPUTS)
def test_bad_task_input_exits_2_with_one_line_before_writing(
        variant, overrides, message, tmp_path, capsys):
    workdir = tmp_path / "run"
    overrides = {"data.data_dir": str(tmp_path / "tfds"), **overrides}
    code = train_cmd.main(_cli(variant, workdir, **overrides))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert err.startswith("scaling train: error: " + message.split(":")[0]), err
    assert message in err, err
    assert not os.path.exists(workdir)


def test_init_from_a_checkpoint_of_another_family_names_the_missing_parameter(
        pretrained, data_dir, tmp_path, capsys):
    workdir, _ = pretrained
    code = train_cmd.main(_cli("finetune.py:gpt2_tiny_builtin", tmp_path / "run",
                               **{"checkpoint.init_from": workdir, "data.data_dir": data_dir,
                                  "model.num_layers": 2, "model.width": 32,
                                  "model.num_heads": 2, "model.mlp_dim": 64}))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "checkpoint: parameter" in err, err
    assert not os.path.exists(tmp_path / "run")
