"""`run(config, workdir)`: the one place that wires config -> model -> data -> step -> loop.

Read it top to bottom; each banner is one stage. Only this file talks to data, metrics and
(later) checkpoints; the step itself is pure (scaling.train_step).

    scaling train --config experiments/gpt2.py:tiny --workdir runs/demo
    python -m scaling train ...          (the same command: scaling/__main__.py)
"""
from __future__ import annotations

import json
import sys
import time

import flax.linen as nn
import jax
import numpy as np

from scaling import checkpoint as ckpt_lib
from scaling.batch_spec import FAMILY_OBJECTIVES
from scaling import data as data_lib
from scaling.compile_step import compile_step
from scaling.config_loading import ConfigError
from scaling import distributed, pmap_engine, sharding, storage, tasks, tracking, workdir_lock
from scaling import hardware
from scaling import metrics as metrics_lib
from scaling.metrics import MetricsWriter, Throughput, cut_window, memory_stats
from scaling.models import build_model, example_batch, model_spec
from scaling.optim import make_optimizer, make_schedule, validate_optim_config
from scaling.profiling import StepTracer, parse_profile_steps
from scaling.progress import Progress
from scaling.sizes import count_params
from scaling.spec import ModelSpec
from scaling.stop import StopRequest
from scaling.tasks import data as task_data, evaluate as task_eval
from scaling.train_step import bits_per_byte, loss_name, make_eval_step, param_norm


def validate(config, data_checks: bool = True) -> ModelSpec:
    """Every cheap check of the config, as one-line ValueErrors naming the field.

    Runs before any array is created or anything compiled, so bad input fails in seconds.
    data_checks=False skips the data section's checks (tokenizer files, datasets, task
    labels): `scaling compile` sizes a step where the data need not be present.
    """
    spec = model_spec(config)
    if data_checks:
        tasks.validate(config)  # fine-tuning: the task, its head and the model family
        data_lib.validate_data_config(config)
        data_lib.check_vocab_fits(config, spec.vocab_size)
    validate_optim_config(config.optim, config.train.steps)
    d, t = config.data, config.train
    if d.objective != "task" and d.objective not in FAMILY_OBJECTIVES[spec.family]:
        raise ValueError(f"data.objective: {d.objective!r} does not train a {spec.family} "
                         f"model; use one of {', '.join(FAMILY_OBJECTIVES[spec.family])}")
    if spec.family == "captioning":  # the decoder reads the caption; the image has no table
        caption_len = d.target_len or d.seq_len
        if spec.positions == "learned" and caption_len > spec.max_positions:
            raise ValueError(f"data.target_len: captions of {caption_len} tokens are longer "
                             f"than the decoder's {spec.max_positions} learned positions; raise "
                             "model.max_len or lower data.target_len")
    longest = max(d.seq_len, d.target_len) if spec.family != "captioning" else 0
    if spec.positions == "learned" and longest > spec.max_positions:
        offset = (f" after model.position_offset={spec.position_offset}"
                  if spec.position_offset else "")
        raise ValueError(f"data.seq_len: {longest} is longer than the model's "
                         f"{spec.max_positions} learned positions (model.max_len{offset})")
    for field in ("log_every", "eval_every", "eval_steps"):
        if t[field] <= 0:
            raise ValueError(f"train.{field}: must be positive, got {t[field]}")
    if t.max_skipped_steps < 0:
        raise ValueError(f"train.max_skipped_steps: must be >= 0, got {t.max_skipped_steps}")
    if t.nonfinite not in ("skip", "stop"):
        raise ValueError(f"train.nonfinite: unknown {t.nonfinite!r}; allowed: 'skip', 'stop'")
    ckpt_lib.validate_config(config)
    if config.parallel.engine not in ("jit", "pmap"):
        raise ValueError(f"parallel.engine: unknown {config.parallel.engine!r}; allowed: "
                         "'jit', 'pmap'")
    sharding.logical_rules(config.parallel.rules)
    metrics_lib.validate_config(config.metrics, config.train.steps)
    return spec


def _close_finished_run(workdir: str, step: int) -> None:
    """A run killed after its final checkpoint lacks its run_end event: add it (sweeps and
    reports read it as 'finished'); a run that has one gets nothing new."""
    from scaling.runs import read_run  # noqa: PLC0415
    if jax.process_index() == 0 and read_run(workdir).run_end is None:
        with MetricsWriter(workdir, tensorboard=False) as writer:
            writer.write_event("run_end", step=step, note="completed at a rerun")


def _log(message: str) -> None:
    if jax.process_index() == 0:
        print(message, flush=True)


def run(config, workdir: str) -> dict:
    """Train `config` in `workdir`; returns a summary (losses, final eval, final state).

    Args:
      config: a full run config (scaling.config.base_config() shape).
      workdir: where the resolved config, metrics.jsonl and TensorBoard files go.

    Returns:
      {"train_losses": [loss at each log step], "eval": last eval metrics,
       "unigram_entropy": baseline of the eval split (tasks: the label entropy or
       variance), "state": the final TrainState}
    """
    # ---- 1. Validate: config errors surface before anything is built ---------------------
    spec = validate(config)
    distributed.initialize(config.parallel)  # joins a multi-process job; before any backend
    # The workdir, and any checkpoint in it, against this config: a one-line CheckpointError
    # (exit 2) before anything is written or deleted.
    resume = ckpt_lib.preflight(config, workdir, spec)
    if tasks.is_finetuning(config):  # e.g. an unprepared TFDS task: exit 2, nothing written
        try:
            task_data.check_available(config)
        except ValueError as e:
            raise ConfigError(str(e).splitlines()[0]) from None
    steps, batch_size = config.train.steps, config.train.batch_size

    # ---- 2. Mesh and logical-axis rules (layout errors are bad input: before any write) --
    engine = config.parallel.engine
    try:
        devices = sharding.job_devices(config.parallel.num_devices, engine)
        # pmap is pure data parallelism: its state is created on an all-data mesh, then copied.
        mesh = sharding.make_mesh({"data": -1} if engine == "pmap" else config.parallel.mesh,
                                  devices)
        rules = sharding.logical_rules(config.parallel.rules)
        sharding.check_divisibility(spec, mesh, batch_size, config.train.micro_batches)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    num_devices = mesh.devices.size

    # ---- 3. Workdir and the resolved config (process 0 writes) ---------------------------
    # One writer per workdir: the lock comes before anything is written or cleaned.
    resolved = config.to_dict()
    resolved["model"]["vocab_size"] = spec.vocab_size  # what "0 = tokenizer's" became
    if jax.process_index() == 0:
        workdir_lock.acquire(workdir)
        storage.write_text_atomic(storage.join(workdir, "config.json"),
                                  json.dumps(resolved, indent=1, default=str))

    # ---- 4. Data: this host's rows of every global batch --------------------------------
    host = dict(process_index=jax.process_index(), process_count=jax.process_count())
    train_iter = data_lib.make_pipeline(config, "train", **host)
    eval_iter = data_lib.make_pipeline(config, "validation", **host)
    eval_start = eval_iter.get_state()  # every evaluation reads the same batches
    task = tasks.task_spec(config)   # None when pretraining
    # The loss of a model that ignores its input: unigram entropy (LM) or label entropy /
    # variance (tasks).
    baseline = (data_lib.unigram_entropy(config, "validation") if task is None
                else task_data.label_baseline(config))
    baseline_name, baseline_key = (("unigram", "unigram_entropy") if task is None
                                   else ("constant-prediction", "label_baseline_loss"))
    # Bytes of text per token id: language-model evals also report bits per byte.
    token_bytes = data_lib.make_tokenizer(config.data).token_bytes if task is None else None
    batch_sh = sharding.batch_sharding(mesh)
    if engine == "pmap":  # this host's rows -> [devices, rows/device, ...]
        to_global = pmap_engine.split_batch
    else:
        def to_global(local_batch):  # this host's rows -> one global array per key
            return {k: jax.make_array_from_process_local_data(batch_sh, np.asarray(v))
                    for k, v in local_batch.items()}

    # ---- 5. Model, optimizer and the sharded train state ----------------------------------
    model = build_model(spec, task)   # a task model: the family's backbone + a task head
    loss = loss_name(task)
    tx = make_optimizer(config.optim, steps)
    schedule = make_schedule(config.optim, steps)
    seq_len, target_len = config.data.seq_len, config.data.target_len
    init_batch = example_batch(spec, 1, seq_len, target_len or None)
    rng = jax.random.PRNGKey(config.train.seed)

    # Shapes and shardings by eval_shape; then every array is created on its own devices.
    layout = sharding.train_state_layout(model, tx, init_batch, rng, mesh, rules)
    state_sh, params_sh = layout.shardings, layout.param_shardings
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        state = layout.create(rng)
    for path, notes in layout.fallbacks.items():
        _log(f"sharding: {path}: {'; '.join(notes)}")
    counts = count_params(spec)
    flops_per_token = spec.flops_per_token(seq_len, target_len)
    tokens_per_step = batch_size * spec.tokens_per_sequence(seq_len, target_len)

    # ---- 5b. Resume: the latest good checkpoint, straight into this mesh's shardings ------
    # Order matters for an exact resume: the state (any mesh -> this one), then the data
    # iterator's position, both before section 6 fetches the first batch. A damaged latest
    # checkpoint is moved aside with a warning and the previous one used.
    checkpoints = ckpt_lib.Checkpoints(workdir, config.checkpoint,
                                       ckpt_lib.resolved_config(config, spec))
    start_step, window_carry = 0, None
    if resume is not None:
        target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                              state, state_sh)
        if resume.params_only:   # fine-tuning: parameters only; fresh optimizer, data, step 0
            restored, _, _ = checkpoints.restore(resume, target)
            state = state.replace(params=ckpt_lib.merge_params(state.params, restored.params))
            _log(f"initialised parameters from {resume.directory}/{resume.steps[0]} "
                 "(checkpoint.init_from)")
            if resume.fresh:
                _log(f"  freshly initialised: {', '.join(resume.fresh)}")
            if resume.ignored:
                _log(f"  not used from the checkpoint: {', '.join(resume.ignored)}")
        else:
            state = None          # free the fresh state before the restored one is allocated
            state, data_state, start_step = checkpoints.restore(resume, target)
            if data_state is not None:  # None: a checkpoint written by `scaling import-hf`
                train_iter.set_state(data_state)
            ckpt_lib.trim_partial_line(storage.join(workdir, "metrics.jsonl"))
            window_carry = cut_window(workdir, start_step, config.train.log_every)
            if start_step >= steps:  # restored and verified: nothing left to train
                checkpoints.close()
                _close_finished_run(workdir, start_step)
                if jax.process_index() == 0:
                    workdir_lock.release(workdir)
                _log(f"already finished at step {start_step} (train.steps={steps}); nothing "
                     "to do. Raise --config.train.steps to train on.")
                return {"train_losses": [], "eval": {}, "unigram_entropy": None,
                        "state": state, "spec": spec, "start_step": start_step,
                        "stopped_at": None, "checkpoint_dir": checkpoints.directory}
            _log(f"resuming from step {start_step} ({checkpoints.directory}/{start_step}); "
                 "metrics.jsonl continues (records after that step are written again; "
                 "readers keep the latest)")

    def host_state(state):
        """The state as the checkpoint stores it (one copy; pmap keeps one per device)."""
        if engine == "pmap":
            return pmap_engine.unreplicate(state)
        return state

    # Steps seen by check_finite; whether any update was applied since the last save.
    skipped = {"checked_to": start_step, "in_a_row": 0, "applied": False}

    def check_finite(host_metrics, last_step: int) -> None:
        """Say each skipped (non-finite) step on the console; stop, before any save, at the
        first one under train.nonfinite=stop or after train.max_skipped_steps in a row.

        Called at log steps and before saves with the steps since the last log step; a step
        already checked is not counted again.
        """
        first = last_step - len(host_metrics) + 1
        for step, m in enumerate(host_metrics, start=first):
            if step <= skipped["checked_to"]:
                continue
            skipped["checked_to"] = step
            if not int(m["nonfinite"]):
                skipped["in_a_row"], skipped["applied"] = 0, True
                continue
            skipped["in_a_row"] += 1
            if config.train.nonfinite == "stop":
                reason = "the run stopped (train.nonfinite=stop)"
            elif skipped["in_a_row"] > config.train.max_skipped_steps:
                reason = (f"the run stopped after {skipped['in_a_row']} such steps in a row "
                          f"(train.max_skipped_steps={config.train.max_skipped_steps})")
            else:
                progress.message(f"step {step}: non-finite loss or gradients; update skipped "
                                 f"({skipped['in_a_row']} in a row)")
                continue
            checkpoints.close()   # the last good checkpoint stays the latest, committed
            latest = checkpoints.latest_step()
            raise FloatingPointError(
                f"step {step}: non-finite loss or gradients; the update was not applied and "
                f"{reason}; latest checkpoint: {'none' if latest is None else f'step {latest}'}")

    def worth_saving(step: int) -> bool:
        """False when every step since the last checkpoint was skipped: a save would hold the
        same parameters under a newer step, and retention could delete older good ones."""
        latest = checkpoints.latest_step()
        if skipped["applied"] or latest is None:
            skipped["applied"] = False
            return True
        progress.message(f"step {step}: no update applied since the checkpoint of step "
                         f"{latest}; not saving")
        return False

    # ---- 6. Compile the step ahead of time (its time and XLA FLOPs are logged) ------------
    t0 = time.perf_counter()
    if engine == "pmap":  # replicated copies per device, per-device batches, psum'd grads
        state = pmap_engine.replicate(state)
        first = to_global(next(train_iter))
        compiled = pmap_engine.make_step(model, tx, schedule, config.train.micro_batches,
                                         config.train.nonfinite).lower(state, first).compile()
        eval_fn = pmap_engine.make_eval(model, token_bytes)
        param_norm_fn = pmap_engine.make_param_norm()
    else:
        first = to_global(next(train_iter))
        compiled = compile_step(model, tx, schedule, config.train, layout, mesh, rules, first,
                                state, loss=loss).fn
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            eval_fn = jax.jit(make_eval_step(model, loss, token_bytes),
                              in_shardings=(params_sh, batch_sh))
            param_norm_fn = jax.jit(param_norm, in_shardings=(params_sh,))
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis() or {}
    cost = cost[0] if isinstance(cost, list) else cost
    hw_flops = float(cost.get("flops", 0.0)) or None

    # ---- 7. Metrics sinks -------------------------------------------------------------------
    # W&B (metrics.wandb) gets every record the writer writes; process 0 only.
    tracker = (tracking.open_wandb(config.metrics, resolved, workdir)
               if jax.process_index() == 0 else None)
    writer = MetricsWriter(workdir, tensorboard=config.metrics.tensorboard, tracker=tracker)
    writer.write_hparams(resolved)
    m = config.metrics
    peak, peak_source = hardware.device_peak_flops(
        override_tflops=m.device_peak_tflops, max_age_days=m.cpu_peak_max_age_days,
        repeats=int(m.cpu_peak_repeats))
    # A CPU peak comes from the cached probe: MFU > 1 proves it wrong, so it is expired and the
    # next run measures again; a table or configured peak is fixed by the config.
    probed = m.device_peak_tflops <= 0 and jax.devices()[0].platform == "cpu"

    def over_peak(kind: str, warning: str) -> None:   # once per kind, on the console
        progress.message(f"warning: {warning}")       # (called from the loop, section 8)
        if kind == "MFU" and probed:
            hardware.expire_cpu_peak(f"MFU > 1 in {workdir}")

    meter = Throughput(flops_per_token, tokens_per_step, num_devices, peak, hw_flops,
                       start_step=start_step, peak_source=peak_source, on_over_peak=over_peak,
                       remedy=("Re-measure with `scaling probe-peak` (this run expired the "
                               "cached probe, so the next run measures it again)." if probed
                               else "Set --config.metrics.device_peak_tflops."))
    meter.mark_unproductive(compile_s, "compile")
    writer.write_event(
        "run_start", model=spec.name, family=spec.family, params=counts.backbone,
        non_embedding_params=counts.non_embedding, flops_per_token=flops_per_token,
        flops_per_token_kaplan=spec.flops_per_token(seq_len, target_len, "kaplan"),
        flops_convention="palm: 6N + 12*L*T*d (N = matmul params incl. the output projection)",
        num_devices=num_devices, peak_flops_per_device=peak, peak_source=peak_source,
        config_name=config.get("experiment", ""), seq_len=seq_len, batch_size=batch_size,
        mesh=dict(mesh.shape), resumed_from_step=start_step, **{baseline_key: baseline})
    writer.write_event("compile", compile_time_s=compile_s, hardware_flops_per_step=hw_flops)
    _log(f"{spec.name}: {counts.backbone:,} params, {flops_per_token / 1e6:.1f} MFLOP/token, "
         f"mesh {dict(mesh.shape)}, compiled in {compile_s:.1f}s; "
         f"{baseline_name} baseline loss {baseline:.3f}")

    if task is not None:  # tasks: a full pass over the validation split, with task metrics
        evaluate = task_eval.make_evaluator(config, model, loss, mesh, rules, to_global,
                                            params_sh, batch_sh, host)
    else:  # language models: the same eval_steps batches every time
        def evaluate(params) -> dict:
            eval_iter.set_state(eval_start)
            total = {"loss_sum": 0.0, "correct": 0.0, "weight": 0.0, "bytes": 0.0}
            with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
                for _ in range(config.train.eval_steps):
                    out = jax.device_get(eval_fn(params, to_global(next(eval_iter))))
                    total = {k: total[k] + float(out.get(k, 0.0)) for k in total}
            loss = total["loss_sum"] / max(total["weight"], 1.0)
            bpb = bits_per_byte(total["loss_sum"], total["bytes"])
            return {"eval_loss": loss, "eval_ppl": float(np.exp(min(loss, 50.0))),
                    "eval_accuracy": total["correct"] / max(total["weight"], 1.0),
                    **({"eval_bpb": bpb} if bpb is not None else {})}

    # ---- 8. The loop: the only host syncs are at log and eval steps ---------------------
    # (On a CPU host set up by scaling/runtime/host_malloc.py a single-device step runs on this
    # thread, so the loop cannot run ahead of it there; grain's threads still prefetch.)
    progress = Progress(steps, start_step=int(state.step))
    tracer = StepTracer(parse_profile_steps(config.metrics.profile_steps),  # metrics.profile_steps
                        storage.join(workdir, metrics_lib.TB_DIR))
    pending, data_wait, train_losses, last_eval = [], 0.0, [], {}
    interval_start = time.perf_counter()
    batch = first
    data_state, stopped_at = None, None
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules), StopRequest() as stop:
        for step in range(int(state.step) + 1, steps + 1):
            poison = config.train.poison_step
            if poison and poison <= step < poison + config.train.poison_steps:  # testing hook
                batch = dict(batch, weights=batch["weights"] * np.nan)
            traced_s = tracer.before_step(step)
            state, metrics = compiled(state, batch)
            traced_s += tracer.after_step(step, metrics)
            if traced_s:  # starting / stopping the trace is not step time
                meter.mark_unproductive(traced_s, "profile")
                interval_start += traced_s
            pending.append(metrics)
            checkpoints.check()  # a background save that failed stops the run here
            data_state = train_iter.get_state()  # the position of the NEXT batch to consume
            stopping = stop.reached(step)  # SIGTERM/SIGINT (a host-side flag, no device sync)
            if step < steps:
                t = time.perf_counter()
                batch = to_global(next(train_iter))
                data_wait += time.perf_counter() - t

            if step % config.train.log_every == 0 or step == steps or stopping:
                host_metrics = jax.device_get(pending)  # waits for the steps to finish
                elapsed = time.perf_counter() - interval_start
                n = len(host_metrics)
                nonfinite = sum(int(m["nonfinite"]) for m in host_metrics)
                finite = [m for m in host_metrics if not m["nonfinite"]] or host_metrics
                # Loss and accuracy average the whole log window, also across a resume.
                carry, window_carry = window_carry or {"loss": 0.0, "accuracy": 0.0, "n": 0}, None
                record = {"step": step,
                          "loss": float((carry["loss"] + sum(m["loss"] for m in finite))
                                        / (carry["n"] + len(finite))),
                          "accuracy": float((carry["accuracy"] + sum(m["accuracy"] for m in finite))
                                            / (carry["n"] + len(finite))),
                          "lr": float(host_metrics[-1]["lr"]),
                          "grad_norm": float(host_metrics[-1]["grad_norm"]),
                          "param_norm": float(param_norm_fn(state.params)),
                          "nonfinite_steps": nonfinite}
                record.update(meter.update(max(elapsed - data_wait, 0.0) / n, data_wait / n, n))
                record.update(memory_stats())
                writer.write(record)
                progress.update(step, record)
                train_losses.append(record["loss"])
                check_finite(host_metrics, step)
                pending, data_wait = [], 0.0
                interval_start = time.perf_counter()

            if step % config.train.eval_every == 0 or step == steps:
                t = time.perf_counter()
                last_eval = evaluate(state.params)
                meter.mark_unproductive(time.perf_counter() - t, "eval")
                writer.write({"step": step, **last_eval})
                scores = "".join(f", {k[5:]} {v:.4f}" for k, v in last_eval.items()
                                 if task is not None and k not in ("eval_loss", "eval_examples"))
                if "eval_bpb" in last_eval:
                    scores += f", {last_eval['eval_bpb']:.4f} bits/byte"
                progress.message(f"step {step}: eval loss {last_eval['eval_loss']:.4f} "
                                 f"({baseline_name} baseline {baseline:.4f}, "
                                 f"{100 * (1 - last_eval['eval_loss'] / max(baseline, 1e-12)):.1f}"
                                 f"% below){scores}")
                interval_start += time.perf_counter() - t  # eval time is not step time

            # Checkpoint every checkpoint.every steps; on SIGTERM/SIGINT save here and stop.
            if stopping:
                stopped_at = step
                break
            if checkpoints.due(step) and step < steps:
                check_finite(jax.device_get(pending), step)
                if worth_saving(step):
                    writer.flush()  # a bucket's metrics.jsonl holds every record up to here
                    save_s = checkpoints.save(step, host_state(state), data_state)
                    meter.mark_unproductive(save_s, "checkpoint")
                    interval_start += save_s

    # ---- 9. The end: a final checkpoint (waits until committed) -------------------------
    final_step = int(jax.device_get(state.step))
    saved_final = False
    if data_state is not None:  # the loop ran (a run resumed at its last step has nothing new)
        check_finite(jax.device_get(pending), final_step)
        saved_final = worth_saving(final_step)
    if saved_final:
        t = time.perf_counter()
        with StopRequest():  # Ctrl-C now: the save goes on; a second abandons it
            checkpoints.save(final_step, host_state(state), data_state)
            checkpoints.wait()
        meter.mark_unproductive(time.perf_counter() - t, "checkpoint")
    tracer.close()
    checkpoints.close()
    progress.close()
    if stopped_at is not None:
        where = (f"checkpoint saved in {checkpoints.directory}/{stopped_at}" if saved_final
                 else f"latest checkpoint: step {checkpoints.latest_step()}")
        _log(f"{stop.signal_name}: stopped at step {stopped_at}; {where}")
    else:
        writer.write_event("run_end", step=steps, **{baseline_key: baseline}, **last_eval)
    writer.close()
    if jax.process_index() == 0:
        workdir_lock.release(workdir)
    return {"train_losses": train_losses, "eval": last_eval, "unigram_entropy": baseline,
            "state": state, "spec": spec, "start_step": start_step, "stopped_at": stopped_at,
            "checkpoint_dir": checkpoints.directory}


if __name__ == "__main__":  # a library module: the command line is scaling/__main__.py
    print("scaling.train is not a command; run `python -m scaling train ARGS` (or "
          "`scaling train ARGS`)", file=sys.stderr)
    sys.exit(2)
