"""The experiment config schema: every field a run reads, with its default.

Experiment files in `experiments/` start from `base_config()` and change what their family
needs; the command line then overrides any field (`--config.optim.lr=1e-3`). Keeping all
defaults here means a field is documented once and every family has the same shape; the
model section's fields are scaling.spec.ModelSpec's, declared there.
"""
from __future__ import annotations

import dataclasses

import ml_collections

from scaling.spec import ModelSpec


def model_config() -> ml_collections.ConfigDict:
    """The `model` section: scaling.spec.ModelSpec's fields with their defaults (declared,
    and documented field by field, there)."""
    return ml_collections.ConfigDict(dataclasses.asdict(ModelSpec()))


def base_config() -> ml_collections.ConfigDict:
    """All sections of a run's config with sensible defaults for a tiny CPU run."""
    c = ml_collections.ConfigDict()
    c.model = model_config()

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "builtin"          # builtin (local text corpus), files (data.files),
                                        #   prepared:DIR (`scaling prepare-data`) or a TFDS name
    c.data.corpus = ""                  # builtin: dir or glob of text files ("" = Python stdlib)
    c.data.files = ""                   # dataset=files: comma-separated globs (local or URL) of
                                        #   jsonl/parquet (field text_key), array_record or
                                        #   text files (see scaling/data/files.py)
    c.data.eval_files = ""              # dataset=files: the validation files ("" = hold out
                                        #   eval_fraction of the documents by a hash of text)
    c.data.files_text_per_line = False  # dataset=files: each line of a text file is a document
    c.data.data_dir = ""                # TFDS data dir ("" = TFDS default, ~/tensorflow_datasets)
    c.data.download = False             # TFDS name not prepared in data_dir: download and
                                        #   prepare it as array_record (else: an error naming
                                        #   the `tfds build` command); every host would, so
                                        #   prepare once before a multi-host run
    c.data.text_key = "text"            # TFDS feature holding text (or source for translation)
    c.data.target_key = ""              # translation datasets: target language key
    c.data.tokenizer = "byte"           # byte | sentencepiece | words (captions) | ...
    c.data.sp_vocab_size = 1024         # sentencepiece vocabulary size
    c.data.objective = "causal_lm"      # causal_lm | mlm | span_corruption | translation |
                                        #   permutation_lm | captioning | task (labelled
                                        #   examples of task.*; fine-tuning)
    c.data.seq_len = 128                # T (encoder_decoder: source length)
    c.data.target_len = 0               # encoder_decoder: target length (0 = seq_len)
    c.data.mask_rate = 0.15             # mlm: fraction of tokens selected
    c.data.dynamic_masking = False      # mlm: fresh masks each epoch (RoBERTa) vs static (BERT)
    c.data.noise_density = 0.15         # span corruption
    c.data.mean_span_length = 3.0
    c.data.perm_k = 6.0                 # permutation_lm (XLNet): predict the last 1/K of each
                                        #   factorization order (K >= 1; 1 = every position)
    c.data.eval_fraction = 0.02         # builtin, files: fraction of documents held out
    c.data.corpus_exclude = ""          # builtin: comma-separated globs of files the corpus
                                        #   leaves out (e.g. a task's held-out files)
    # Captioning (data.objective = "captioning"; scaling/data/captions.py, images.py):
    # data.dataset = "shapes" (the built-in set) or a TFDS image+caption dataset.
    c.data.image_key = "image"          # TFDS feature holding the image
    c.data.caption_key = "captions"     # ... the caption(s); "a/b" for a nested feature
                                        #   ("captions/text" for coco_captions)
    c.data.image_mean = (0.485, 0.456, 0.406)  # per channel, of pixels scaled to [0, 1]
    c.data.image_std = (0.229, 0.224, 0.225)   #   (ImageNet's); x -> (x - mean) / std
    c.data.augment = "none"             # none | crop (shift by up to 3 px + brightness
                                        #   jitter; never a flip: captions say left/right)
    c.data.caption_dropout = 0.0        # training: each caption word fed to the decoder is
                                        #   replaced by UNK (or MASK) with this probability
                                        #   (word dropout), so the next word must come from
                                        #   the image, not from the words before it
    c.data.shapes_grey_fraction = 0.0   # shapes, training: this fraction of images is shown
                                        #   in grey with the colour words cut from the
                                        #   caption, so shape features cannot lean on colour
    c.data.shapes_seed = 0              # shapes: the seed the whole set is drawn from
    c.data.shapes_num_train = 20000     # shapes: images per split (rendered at
    c.data.shapes_num_validation = 1000  #   model.image_size, prepared once in data_dir)
    c.data.words_min_count = 1          # tokenizer=words: keep words seen this often
    c.data.shuffle = True
    c.data.worker_count = 0             # grain worker processes (0 = in-process)
    # Added by the data pipeline (scaling/data):
    c.data.read_threads = 2             # grain threads building batches ahead of the step
    c.data.prefetch_batches = 4         # batches buffered ahead of the training step
    c.data.pack_max_documents = 200_000  # splits with more docs are not packed (one doc per example)

    c.train = ml_collections.ConfigDict()
    c.train.steps = 100
    c.train.batch_size = 16             # global batch, in sequences
    c.train.micro_batches = 1           # gradient accumulation steps per update
    c.train.seed = 0
    c.train.log_every = 10
    c.train.eval_every = 50
    c.train.eval_steps = 4
    c.train.nonfinite = "skip"          # non-finite loss/grads: skip the update (counted in
                                        # nonfinite_steps) | stop with an error naming the step
    c.train.max_skipped_steps = 20      # nonfinite=skip: stop once more steps than this in a
                                        # row were skipped (each is printed on the console)
    c.train.poison_step = 0             # TESTING HOOK: NaN loss weights in the batch of this
                                        # step, to exercise train.nonfinite (0 = off) ...
    c.train.poison_steps = 1            # ... and of this many steps from it

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 10
    c.optim.decay = "cosine"            # cosine | linear | constant | rsqrt (Vaswani et al.:
                                        #   lr * min(step/warmup, sqrt(warmup/step)))
    c.optim.end_lr_fraction = 0.1
    c.optim.weight_decay = 0.1
    c.optim.b1 = 0.9
    c.optim.b2 = 0.95
    c.optim.eps = 1e-8
    c.optim.clip_norm = 1.0             # 0 disables clipping
    c.optim.freeze_backbone = False     # fine-tuning: train the task head only (optax
                                        #   set_to_zero on every other parameter)

    c.parallel = ml_collections.ConfigDict()
    c.parallel.engine = "jit"           # jit (NamedSharding over a mesh) | pmap
    c.parallel.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.parallel.num_devices = 0          # use only the first N devices (0 = all; one process, jit)
    c.parallel.recipe_devices = 0       # the train.batch_size / micro_batches / mesh were laid
                                        #   out for this many devices (a published recipe, set
                                        #   by experiments/*.py); compile and plan keep the
                                        #   per-device micro-batch on other counts (0 = none)
    c.parallel.rules = "default"        # rules table name [+ overrides "vocab=none,embed=fsdp"]
    # Multi-process runs (scaling.distributed): SLURM and Cloud TPU pods are detected; else
    # give all three here or as SCALING_COORDINATOR / SCALING_NUM_PROCESSES /
    # SCALING_PROCESS_ID. Defaults = one process.
    c.parallel.coordinator_address = ""  # host:port of process 0's coordination service
    c.parallel.num_processes = 0        # processes in the job (0 = from env / detected / 1)
    c.parallel.process_id = -1          # this process (-1 = from env / detected)
    c.parallel.init_timeout_s = 300     # give up joining the job after this many seconds

    # Checkpoints (scaling/checkpoint.py): workdir/checkpoints/<step>; a run in a workdir that
    # has checkpoints resumes from the latest one. A save also happens at the end and on
    # SIGTERM/SIGINT.
    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 1000           # save every N steps (0 = only at the end / on a signal)
    c.checkpoint.keep = 2               # keep the last K checkpoints ...
    c.checkpoint.keep_period = 0        # ... plus every M-th step for good (0 = none)
    c.checkpoint.async_save = True      # write in the background while training continues
    c.checkpoint.init_from = ""         # fine-tuning: a run dir whose latest PARAMETERS start
                                        # this run (fresh optimizer, data, step 0); used only
                                        # while this workdir has no checkpoint of its own

    # Fine-tuning on a labelled task (scaling/tasks): data.objective = "task" and
    # data.dataset = a task name (builtin_modules, builtin_tokens, glue/sst2, glue/mnli, ...).
    c.task = ml_collections.ConfigDict()
    c.task.kind = ""                    # "" (pretraining) | sequence_classification |
                                        #   token_classification | regression
    c.task.num_labels = 0               # head outputs (0 = the dataset's label count)
    c.task.pooling = "auto"             # sequence heads: auto (encoder: first token, through
                                        #   the tanh pooler when model.pooler; decoder: last
                                        #   real token) | first | last | mean (over
                                        #   real tokens)
    c.task.max_train_examples = 0       # use only the first N of a fixed shuffle of the
                                        #   labelled train split (0 = all)

    c.metrics = ml_collections.ConfigDict()
    c.metrics.device_peak_tflops = 0.0  # 0 = look up the device, or probe the CPU (cached)
    c.metrics.cpu_peak_max_age_days = 7.0  # CPU: measure the cached probe again when older
    c.metrics.cpu_peak_repeats = 5      # CPU: readings per probe (best = peak; spread shown)
    c.metrics.tensorboard = True        # workdir/tb: scalars, the config as hparams, traces
    c.metrics.profile_steps = ""        # "FIRST:LAST", e.g. "5:8": trace those steps into
                                        #   workdir/tb/plugins/profile ("" = no trace)
    c.metrics.wandb = False             # also log to Weights & Biases (the "wandb" extra)
    c.metrics.wandb_project = "scaling"
    c.metrics.wandb_run_name = ""       # "" = the workdir's name
    c.metrics.wandb_entity = ""         # "" = W&B's default entity
    return c
