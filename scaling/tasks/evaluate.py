"""The task evaluation: one full pass over the validation split, metrics over all of it.

Unlike the pretraining eval (a fixed number of batches), every validation example counts
exactly once: the finite pass pads its last global batch with zero-weight examples, which
are dropped before the metrics. Predictions come back replicated, so every host computes
the same numbers (process 0 writes them).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from scaling import data as data_lib
from scaling.tasks import metrics, registry
from scaling.train_step import LOSSES, _model_inputs


def make_predict_step(model, kind: str, loss: str):
    """`predict(params, batch) -> {predictions, targets, weights, loss_sum, weight}`."""
    loss_sums = LOSSES[loss]

    def predict(params, batch):
        outputs = model.apply({"params": params}, _model_inputs(batch), train=False)
        loss_sum, _, weight = loss_sums(outputs, batch["targets"], batch["weights"])
        predictions = outputs if kind == registry.REGRESSION else jnp.argmax(outputs, -1)
        return {"predictions": predictions.astype(jnp.float32), "targets": batch["targets"],
                "weights": batch["weights"], "loss_sum": loss_sum, "weight": weight}

    return predict


def make_evaluator(config, model, loss: str, mesh, rules, to_global, params_sharding,
                   batch_sharding, host: dict):
    """`evaluate(params) -> {"eval_loss", "eval_<metric>"..., "eval_examples"}`.

    Args:
      config: the run config (data.dataset names the task and its metrics).
      model: the task model; loss: its LOSSES name.
      mesh, rules: run()'s mesh and logical-axis rules.
      to_global: this host's rows -> global arrays.
      params_sharding, batch_sharding: the parameters' and the batches' shardings.
      host: process_index / process_count for the pipeline.
    """
    info = registry.get(config.data.dataset)
    pipeline = data_lib.make_pipeline(config, "validation", num_epochs=1, **host)
    start = pipeline.get_state()
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        predict = jax.jit(make_predict_step(model, info.kind, loss),
                          in_shardings=(params_sharding, batch_sharding),
                          out_shardings=NamedSharding(mesh, P()))

    def evaluate(params) -> dict:
        pipeline.set_state(start)
        parts, loss_sum, weight = [], 0.0, 0.0
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            for local in pipeline:
                out = jax.device_get(predict(params, to_global(local)))
                loss_sum += float(out["loss_sum"])
                weight += float(out["weight"])
                real = np.asarray(out["weights"]) > 0   # padding rows / positions: weight 0
                parts.append((np.asarray(out["targets"])[real],
                              np.asarray(out["predictions"])[real]))
        labels = np.concatenate([p[0] for p in parts])
        predictions = np.concatenate([p[1] for p in parts])
        if info.kind != registry.REGRESSION:
            labels, predictions = labels.astype(np.int64), predictions.astype(np.int64)
        return {"eval_loss": loss_sum / max(weight, 1.0),
                **metrics.compute(info.metrics, labels, predictions),
                "eval_examples": int(len(labels))}

    return evaluate
