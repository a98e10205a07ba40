"""Checkpoints and fault tolerance: every run resumable, exactly, on any mesh.

Layout of a run directory (orbax-checkpoint's CheckpointManager owns `checkpoints/`):

    workdir/
      config.json                  the resolved config of the latest start (scaling.train)
      metrics.jsonl                appended to by every (re)start
      checkpoints/
        <step>/                    one committed checkpoint; orbax writes it to a temporary
                                   directory and renames it on commit, so a directory with a
                                   plain integer name is complete
          state/                   TrainState (params, opt_state, step, rng): OCDBT/zarr arrays,
                                   every process writes its own shards
          data/                    JSON: the train iterator's state = the NEXT batch to consume
          config/                  JSON: the resolved config the checkpoint was trained with
          _CHECKPOINT_METADATA
      checkpoints.corrupt/<step>/  a latest checkpoint that failed to restore, moved aside

What the pieces guarantee:
  * Saves are asynchronous (the arrays are copied to host before `save` returns, so the next
    step may donate them) and retention is orbax's: keep the last `checkpoint.keep` plus every
    `checkpoint.keep_period`-th step. Old steps are deleted only after the new one committed.
  * Restore goes straight into the target shardings (ShapeDtypeStructs carrying the current
    mesh's NamedShardings), so a checkpoint saved on any mesh restores onto any other.
  * A latest checkpoint that fails to restore (killed mid-write, truncated file) is moved
    aside with a warning and the previous one is used.
  * `preflight` runs before the run writes anything and turns an incompatible checkpoint into
    a one-line `CheckpointError` (the command exits 2).

Multi-host: every process calls `save` / `restore` (orbax synchronises them and only the
primary process writes JSON and metadata). The data item is process 0's iterator state:
every host reads the same number of batches, so their positions agree.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

from scaling import fingerprint, storage
from scaling.spec import ModelSpec

CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "checkpoints.corrupt"

# Model fields that change what the model computes but not its parameters' shapes: a run may
# resume with them changed. Every other model field must match the checkpoint's.
NON_SHAPE_MODEL_FIELDS = ("name", "dtype", "remat", "kernels", "attention_impl", "dropout",
                          "layer_norm_eps")


class CheckpointError(ValueError):
    """Bad input about checkpoints or the workdir: a one-line message, exit code 2."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, ...): a one-line message, exit code 3."""


class _OrbaxWriteErrors(logging.Filter):
    """Drops orbax's own multi-line reports of a failed background write: the run reports
    it once, in one line (Checkpoints.check)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and "orbax" in record.pathname)


def checkpoint_dir(workdir: str) -> str:
    """`workdir/checkpoints` as a string: an absolute local path, or a URL."""
    return str(storage.path(workdir) / CHECKPOINT_DIR)


def _source_dir(path: str) -> str:
    """`checkpoint.init_from` may name a run directory or its checkpoints/ directory."""
    inner = storage.path(path) / CHECKPOINT_DIR
    return str(inner if inner.is_dir() else storage.path(path))


def saved_steps(directory: str) -> list[int]:
    """Committed checkpoint steps in `directory`, ascending (temporary dirs are not steps)."""
    if not storage.path(directory).is_dir():
        return []
    return sorted(ocp.utils.checkpoint_steps(directory))


def validate_config(config) -> None:
    """One-line ValueErrors for the checkpoint fields (and train.poison_step)."""
    c = config.checkpoint
    for field, low in (("every", 0), ("keep", 1), ("keep_period", 0)):
        if int(c[field]) < low:
            raise ValueError(f"checkpoint.{field}: must be >= {low}, got {c[field]}")
    if int(config.train.get("poison_step", 0)) < 0:
        raise ValueError(f"train.poison_step: must be >= 0, got {config.train.poison_step}")
    if int(config.train.get("poison_steps", 1)) < 1:
        raise ValueError(f"train.poison_steps: must be >= 1, got {config.train.poison_steps}")


def resolved_config(config, spec) -> dict:
    """The config as JSON-safe dicts, with model.vocab_size resolved (stored in checkpoints)."""
    import json
    resolved = config.to_dict()
    resolved["model"]["vocab_size"] = spec.vocab_size
    return json.loads(json.dumps(resolved, default=str))


# ----------------------------------------------------------------------------- preflight

@dataclasses.dataclass
class Resume:
    """What the restore stage of `scaling.train.run` will do."""
    directory: str          # the checkpoints directory to read
    steps: list[int]        # candidate steps, newest first (restore falls back along these)
    params_only: bool       # fine-tuning: parameters only, fresh optimizer, data and step 0
    damaged: list[int] = dataclasses.field(default_factory=list)  # unreadable newer steps,
                            # moved aside by the restore (never resumed from, never kept)
    fresh: tuple = ()       # params_only: the model's parameters not in the checkpoint (a
                            #   task head), which keep their fresh initialisation
    ignored: tuple = ()     # params_only: checkpoint parameters the model has no use for
                            #   (a pretraining head)


def check_workdir(workdir: str) -> None:
    """One-line CheckpointError when `workdir` is a file or cannot be written, or is a URL
    checkpoints cannot go to (scaling.storage.workdir)."""
    try:
        storage.workdir(workdir, checkpoints=True)
    except storage.StorageError as e:
        raise CheckpointError(str(e)) from None
    if storage.is_url(workdir):
        return  # bucket permissions show at the first write
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise CheckpointError(f"--workdir: {workdir!r} is a file; give a directory")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created in {existing!r}"
        raise CheckpointError(f"--workdir: {workdir!r} {what}")


def _manager(directory: str, ckpt_cfg=None, *, read_only: bool = False
             ) -> ocp.CheckpointManager:
    if read_only:
        options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                               enable_async_checkpointing=False)
    else:
        # When to save is the loop's decision (`Checkpoints.due`, the end, a signal), so
        # every save is forced; retention and atomic commits are orbax's.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(ckpt_cfg.keep),
            keep_period=int(ckpt_cfg.keep_period) or None,
            enable_async_checkpointing=bool(ckpt_cfg.async_save),
            cleanup_tmp_directories=True,   # half-written saves of a killed run
            create=True)
    # Registered handlers let a fresh manager read metadata (shapes) before any restore.
    # The read-only one reads `state` as a plain PyTree, which allows a partial restore
    # (parameters only, for checkpoint.init_from).
    state_handler = (ocp.PyTreeCheckpointHandler() if read_only
                     else ocp.StandardCheckpointHandler())
    return ocp.CheckpointManager(directory, options=options, item_handlers={
        "state": state_handler, "data": ocp.JsonCheckpointHandler(),
        "config": ocp.JsonCheckpointHandler()})


def _flat_shapes(tree) -> dict[str, tuple]:
    """'blocks/layer_0/attn/w_q' -> shape, for arrays, ShapeDtypeStructs or orbax metadata."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                        for k in path)
        out[name] = tuple(getattr(leaf, "shape", ()))
    return out


def _compare_params(saved: dict, current: dict, where: str) -> None:
    for name in sorted(set(saved) | set(current)):
        if name not in current:
            raise CheckpointError(f"checkpoint: parameter {name} {saved[name]} in {where} has "
                                  "no counterpart in the model of --config")
        if name not in saved:
            raise CheckpointError(f"checkpoint: parameter {name} {current[name]} of the model "
                                  f"is missing from {where}")
        if saved[name] != current[name]:
            raise CheckpointError(f"checkpoint: parameter {name} has shape {saved[name]} in "
                                  f"{where} but {current[name]} in the model of --config")


def _compare_init_params(saved: dict, current: dict, where: str,
                         task_model: bool) -> tuple[tuple, tuple]:
    """checkpoint.init_from into a task model: the backbone must match the checkpoint; the
    task head may be missing from it (fresh) and a pretraining head unused (ignored).

    Returns:
      (fresh parameter names, ignored parameter names).
    """
    if not task_model:
        _compare_params(saved, current, where)
        return (), ()
    from scaling.optim import TASK_HEAD
    fresh = tuple(n for n in sorted(current) if n not in saved)
    ignored = tuple(n for n in sorted(saved) if n not in current)
    for name in fresh:
        if name.split("/")[0] != TASK_HEAD:
            raise CheckpointError(f"checkpoint: parameter {name} {current[name]} of the model "
                                  f"is missing from {where} (checkpoint.init_from)")
    _compare_params({n: saved[n] for n in current if n in saved},
                    {n: current[n] for n in current if n in saved}, where)
    return fresh, ignored


def _as_json(value):
    """`value` as config.json holds it: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    return value


def _model_field_diff(saved_model: dict, current_model: dict) -> str | None:
    # A field missing on one side (a checkpoint older than the field) had its default.
    defaults = {f.name: f.default for f in dataclasses.fields(ModelSpec)}
    for key in sorted(set(saved_model) | set(current_model)):
        if key in NON_SHAPE_MODEL_FIELDS:
            continue
        saved, current = (m.get(key, defaults.get(key)) for m in (saved_model, current_model))
        if _as_json(saved) != _as_json(current):  # a tuple in the config is a list on disk
            return (f"model.{key} is {saved!r} in the checkpoint but {current!r} in --config")
    return None


def abstract_train_state(spec, config):
    """The TrainState as ShapeDtypeStructs (no shardings), from the spec and optimizer."""
    from scaling.models import build_model, example_batch
    from scaling.optim import make_optimizer
    from scaling.tasks import task_spec
    from scaling.train_state import make_init_fn

    init = make_init_fn(build_model(spec, task_spec(config)),
                        make_optimizer(config.optim, config.train.steps),
                        example_batch(spec, 1, min(config.data.seq_len, spec.max_positions)))
    return jax.eval_shape(init, jax.random.PRNGKey(0))


def preflight(config, workdir: str, spec) -> Resume | None:
    """Check the workdir and any checkpoint against `config` before anything is written.

    Args:
      config: the run config; reads `checkpoint.init_from` and the model, optim, data fields.
      workdir: the run directory.
      spec: the run's ModelSpec (its vocab_size is the resolved one).

    Returns:
      None for a fresh start, else a Resume: the workdir's own checkpoints when it has any
      (full state), otherwise `checkpoint.init_from`'s (parameters only).

    Raises:
      CheckpointError: one line naming the field or parameter that does not match.
    """
    check_workdir(workdir)
    own = checkpoint_dir(workdir)
    directory, params_only = own, False
    if not saved_steps(own) and config.checkpoint.init_from:
        directory, params_only = _source_dir(config.checkpoint.init_from), True
        if not saved_steps(directory):
            raise CheckpointError(f"checkpoint.init_from: no checkpoint in "
                                  f"{config.checkpoint.init_from!r}")
    steps = saved_steps(directory)[::-1]
    if not steps:
        return None

    manager = _manager(directory, read_only=True)
    current_model = dict(config.model.to_dict(), vocab_size=spec.vocab_size)
    abstract = abstract_train_state(spec, config)
    for step in steps:   # the newest readable one decides; restore falls back the same way
        try:
            saved = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
            saved_config = dict(saved["config"])
            metadata = manager.item_metadata(step)["state"]
            saved_params = _flat_shapes(metadata["params"])
            saved_opt = _flat_shapes(metadata["opt_state"])
        except Exception as e:  # noqa: BLE001  (any unreadable file: try the previous step)
            warnings.warn(f"checkpoint {directory}/{step} is unreadable "
                          f"({type(e).__name__}); trying an older one")
            continue
        where = f"the checkpoint at step {step}"
        if not params_only:
            diff = _model_field_diff(saved_config.get("model", {}), current_model)
            if diff:
                raise CheckpointError(
                    f"checkpoint: {diff}; resume with the checkpoint's model config, or "
                    f"fine-tune from its parameters in a new --workdir with "
                    f"--config.checkpoint.init_from={workdir}")
        fresh, ignored = (), ()
        if params_only:
            from scaling.tasks import is_finetuning
            fresh, ignored = _compare_init_params(saved_params, _flat_shapes(abstract.params),
                                                  where, is_finetuning(config))
        else:
            _compare_params(saved_params, _flat_shapes(abstract.params), where)
        if not params_only and saved_opt != _flat_shapes(abstract.opt_state):
            changed = _optimizer_fields_changed(saved_config, config)
            raise CheckpointError(
                f"checkpoint: the optimizer state of {where} has another structure than "
                f"--config's optimizer ({changed or 'the optimizer changed'}); resume with the "
                "checkpoint's optimizer settings, or start from its parameters in a new "
                f"--workdir with --config.checkpoint.init_from={workdir}")
        if not params_only:
            _report_config_changes(saved_config, resolved_config(config, spec))
        manager.close()
        return Resume(directory=directory, steps=[s for s in steps if s <= step],
                      params_only=params_only, fresh=fresh, ignored=ignored,
                      damaged=[] if params_only else [s for s in steps if s > step])
    manager.close()
    raise CheckpointError(f"checkpoint: none of the checkpoints in {directory} is readable "
                          f"(steps {', '.join(map(str, steps))})")


def _optimizer_fields_changed(saved_config: dict, config) -> str:
    """'optim.clip_norm 1.0 -> 0.0' for each optimizer field that differs (for errors)."""
    before, now = saved_config.get("optim", {}), config.optim.to_dict()
    return ", ".join(f"optim.{k} {before[k]!r} -> {now[k]!r}" for k in sorted(now)
                     if k in before and before[k] != now[k])


# Fields whose change on resume makes the data order differ from an uninterrupted run.
_DATA_ORDER_FIELDS = ("train.batch_size", "train.seed", "data.seq_len", "data.dataset",
                      "data.corpus", "data.files", "data.eval_files", "data.shuffle")


def _report_config_changes(saved_config: dict, config: dict) -> None:
    """Print each field that differs from the checkpoint's config (process 0).

    A resume may change any field but the model's shapes and the optimizer's structure; the
    user sees what changed, and what it implies for the schedule and the data order.
    """
    before, now = _flatten(saved_config), _flatten(config)
    changed = [k for k in sorted(set(before) & set(now)) if before[k] != now[k]]
    if not changed or jax.process_index() != 0:
        return
    print("resuming with a changed config: " + ", ".join(
        f"{k} {before[k]!r} -> {now[k]!r}" for k in changed), flush=True)
    if "train.steps" in changed:
        print("  train.steps changed: the learning-rate schedule is recomputed for the new "
              "length, so the rate at the resumed step differs from before", flush=True)
    order = [k for k in changed if k in _DATA_ORDER_FIELDS]
    if order:
        warnings.warn(f"resuming with {', '.join(order)} changed: the data order does not "
                      "continue exactly")


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ----------------------------------------------------------------------------- the manager

class Checkpoints:
    """The run's CheckpointManager plus the restore-with-fallback policy.

    Args:
      workdir: the run directory; checkpoints go to `workdir/checkpoints`.
      ckpt_cfg: `config.checkpoint` (every, keep, keep_period, async_save).
      config_dict: the resolved config, stored in every checkpoint.
    """

    def __init__(self, workdir: str, ckpt_cfg, config_dict: dict):
        self.directory = checkpoint_dir(workdir)
        self.corrupt_dir = str(storage.path(workdir) / CORRUPT_DIR)
        self.manager = _manager(self.directory, ckpt_cfg)
        self.config_dict = config_dict
        self.every = int(ckpt_cfg.every)
        self.save_seconds = 0.0     # blocking time of saves (async writes continue after)
        self._saving = None         # the step of the last save started
        self._log_filter = _OrbaxWriteErrors()
        logging.getLogger("absl").addFilter(self._log_filter)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def due(self, step: int) -> bool:
        """A periodic save is due after `step` (checkpoint.every; a host-side modulo)."""
        return self.every > 0 and step % self.every == 0

    def save(self, step: int, state, data_state: dict) -> float:
        """Start saving `state` and the data position at `step` (no-op if it exists).

        Returns the seconds the caller was blocked (the device-to-host copy; with
        checkpoint.async_save the write continues in the background). All processes call it.
        """
        if step in self.manager.all_steps():
            return 0.0
        t = time.perf_counter()
        self.wait()  # the previous write committed (orbax would wait too), or its error
        self._check_space(step, state)
        self._saving = step
        with self._write_errors():
            self.manager.save(step, force=True, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave({"train": data_state, "step": int(step),
                                        "fingerprints": fingerprint.fingerprints(state)}),
                config=ocp.args.JsonSave(self.config_dict)))
        seconds = time.perf_counter() - t
        self.save_seconds += seconds
        return seconds

    def restore(self, resume: Resume, abstract_state) -> tuple[Any, dict | None, int]:
        """Restore the newest readable checkpoint of `resume` into `abstract_state`'s shardings.

        Args:
          resume: from `preflight`.
          abstract_state: the TrainState as ShapeDtypeStructs with the target NamedShardings.

        Returns:
          (state, train iterator state or None, step). For `params_only` the returned state
          is `abstract_state` with only `params` filled in (the caller initialises the rest;
          the names in `resume.fresh` are left out: merge with `merge_params`) and the
          step is 0.
        """
        source = self.manager if resume.directory == self.directory else _manager(
            resume.directory, read_only=True)
        if resume.damaged and source is self.manager:
            self._set_aside(resume.damaged)  # unreadable in preflight: never resumed from
        failed = []
        for step in resume.steps:
            try:
                saved = dict(source.restore(step, args=ocp.args.Composite(
                    data=ocp.args.JsonRestore()))["data"]).get("fingerprints", {})
                if resume.params_only:
                    item = {"params": _without(abstract_state.params, resume.fresh)}
                    out = source.restore(step, args=ocp.args.Composite(
                        state=ocp.args.PyTreeRestore(
                            item=item, partial_restore=True,
                            restore_args=ocp.checkpoint_utils.construct_restore_args(item))))
                    _verify({"params": out["state"]["params"]}, saved)
                    return abstract_state.replace(params=out["state"]["params"]), None, 0
                out = source.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=ocp.args.JsonRestore()))
                _verify(out["state"], saved)
            except Exception as e:  # noqa: BLE001  (a damaged step: fall back to the previous)
                warnings.warn(f"checkpoint {resume.directory}/{step} failed to restore "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              "falling back to the previous checkpoint")
                failed.append(step)
                continue
            if failed and source is self.manager:
                self._set_aside(failed)
            return out["state"], dict(out["data"])["train"], step
        if source is self.manager:
            self._set_aside(failed)
        raise CheckpointError(
            f"checkpoint: no checkpoint in {resume.directory} could be restored (steps "
            f"{', '.join(map(str, failed))}"
            + (f", moved to {self.corrupt_dir}" if source is self.manager else "")
            + "); a rerun starts afresh")

    def _set_aside(self, steps: list[int]) -> None:
        if not steps:
            return
        """Move damaged steps out of the manager's directory (kept for inspection).

        They are newer than the restored step, so the resumed run would save over them.
        """
        if jax.process_index() == 0:
            storage.path(self.corrupt_dir).mkdir(parents=True, exist_ok=True)
            for step in steps:
                target = storage.path(self.corrupt_dir) / f"{step}.{int(time.time())}"
                (storage.path(self.directory) / str(step)).rename(target)
                warnings.warn(f"moved the damaged checkpoint of step {step} to {target}")
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("scaling.checkpoint.set_aside")
        self.manager.reload()

    def _check_space(self, step: int, state) -> None:
        """Refuse to start a save that cannot fit: the size of the last checkpoint (or of the
        state's arrays, before the first) against the free space, with 10 % to spare."""
        if storage.is_url(self.directory):
            return  # a bucket has no free-space figure
        kept = saved_steps(self.directory)
        if kept:
            need = _du(os.path.join(self.directory, str(kept[-1])))
        else:  # this process's shards of the state
            need = sum(sum(s.data.nbytes for s in x.addressable_shards)
                       for x in jax.tree.leaves(state) if hasattr(x, "addressable_shards"))
        free = shutil.disk_usage(self.directory).free
        if free < 1.1 * need:
            self.close()
            raise CheckpointWriteError(
                f"checkpoint: not enough space to save step {step} in {self.directory}: "
                f"{free / 1e6:,.1f} MB free, about {1.1 * need / 1e6:,.1f} MB needed; "
                + (f"the checkpoint of step {kept[-1]} is kept: " if kept else "")
                + "make room and rerun the same command to resume")

    def check(self) -> None:
        """Raise CheckpointWriteError if a background save failed (a host-side check, cheap
        enough for every step boundary)."""
        with self._write_errors():
            self.manager.check_for_errors()

    def wait(self) -> None:
        """Block until the last save is committed."""
        with self._write_errors():
            self.manager.wait_until_finished()

    def close(self) -> None:
        logging.getLogger("absl").removeFilter(self._log_filter)
        self.manager.close()

    @contextlib.contextmanager
    def _write_errors(self):
        """Turn orbax's failure to write into one line: what, where, the space, what is kept."""
        try:
            yield
        except Exception as e:  # noqa: BLE001  (any write failure: disk, permissions, I/O)
            try:
                self.manager.close()
            except Exception:  # noqa: BLE001  (the failed write may fail the close too)
                pass
            logging.getLogger("absl").removeFilter(self._log_filter)
            kept = saved_steps(self.directory)
            reason = " ".join(str(e).split())[:160]
            if storage.is_url(self.directory):
                space = "check the bucket's permissions and quota; "
            else:
                size = _du(os.path.join(self.directory, str(kept[-1]))) if kept else 0
                free = shutil.disk_usage(self.directory).free
                space = (f"{free / 1e6:,.0f} MB free there, a checkpoint takes about "
                         f"{size / 1e6:,.1f} MB; ")
            raise CheckpointWriteError(
                f"checkpoint: writing step {self._saving} to {self.directory} failed "
                f"({type(e).__name__}: {reason}); " + space
                + (f"the checkpoint of step {kept[-1]} is kept: " if kept else "")
                + "make room and rerun the same command to resume") from None


def _verify(state, saved: dict) -> None:
    """Raise when a restored array differs from what was written (see scaling.fingerprint)."""
    bad = fingerprint.mismatches(saved, state)
    if bad:
        raise ValueError(f"integrity check failed: {len(bad)} array(s) differ from what was "
                         f"written, e.g. {bad[0]}")


def _du(path: str) -> int:
    """Bytes under `path`."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files)


def _without(params, names: tuple):
    """`params` (nested dicts) without the leaves named 'a/b/c' in `names`."""
    from flax import traverse_util
    flat = traverse_util.flatten_dict(dict(params), sep="/")
    return traverse_util.unflatten_dict({k: v for k, v in flat.items() if k not in names},
                                        sep="/")


def merge_params(fresh, restored):
    """`fresh` parameters with every leaf that `restored` has replaced by the restored one."""
    from flax import traverse_util
    flat = traverse_util.flatten_dict(dict(fresh), sep="/")
    flat.update(traverse_util.flatten_dict(dict(restored), sep="/"))
    return traverse_util.unflatten_dict(flat, sep="/")


def load(workdir: str, abstract_state, step: int | None = None) -> tuple[Any, dict, int]:
    """Read a run's checkpoint (default: the latest) into `abstract_state`'s shardings.

    For tools and tests; training resumes through `preflight` + `Checkpoints.restore`.

    Returns:
      (state, train iterator state, step).
    """
    directory = checkpoint_dir(workdir)
    step = step if step is not None else max(saved_steps(directory), default=None)
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    manager = _manager(directory, read_only=True)
    try:
        out = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item=abstract_state,
                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state)),
            data=ocp.args.JsonRestore()))
    finally:
        manager.close()
    _verify(out["state"], dict(out["data"]).get("fingerprints", {}))
    return out["state"], dict(out["data"])["train"], step


# ----------------------------------------------------------------------------- metrics file

def trim_partial_line(path: str) -> None:
    """Cut an incomplete last line (a run killed mid-write) so appends stay valid JSONL."""
    if jax.process_index() == 0:
        storage.trim_partial_line(path)
