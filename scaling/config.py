"""The experiment config schema: every field a run reads, with its default.

Experiment files in `experiments/` start from `base_config()` and change what their family
needs; the command line then overrides any field (`--config.optim.lr=1e-3`). Keeping all
defaults here means a field is documented once and every family has the same shape.
"""
from __future__ import annotations

import ml_collections


def model_config() -> ml_collections.ConfigDict:
    """Model fields shared by all families (see `scaling.spec.ModelSpec`)."""
    m = ml_collections.ConfigDict()
    m.name = "model"            # display name, e.g. "GPT-2 XL"
    m.family = "decoder"        # decoder | encoder | encoder_decoder | xlnet
    m.vocab_size = 256          # real vocabulary size (tokenizer's)
    m.vocab_pad_multiple = 1    # embedding rows padded up to a multiple of this (Megatron: 128)
    m.num_layers = 2            # decoder / encoder-only layers; encoder_decoder: encoder layers
    m.num_decoder_layers = 0    # encoder_decoder only: decoder layers (0 = same as num_layers)
    m.width = 64                # D, the model width
    m.num_heads = 4             # N; head_dim H = width // num_heads
    m.mlp_dim = 256             # F
    m.max_len = 128             # rows of a learned position table
    m.position_offset = 0       # position p reads row p + offset (RoBERTa: 2, fairseq's
                                #   padding_idx + 1); the longest sequence is max_len - offset
    m.positions = "learned"     # learned | sinusoidal
    m.norm = "pre"              # pre (GPT-2) | post (Vaswani, BERT)
    m.activation = "gelu"       # gelu (exact, erf) | gelu_tanh (tanh approximation) | relu
    m.attention_bias = True     # biases on Q/K/V/O projections
    m.mlp_bias = True           # biases on the two MLP projections
    m.type_vocab_size = 0       # token types (BERT: 2, RoBERTa: 1); encoder only
    m.embedding_norm = False    # LayerNorm right after the embedding sum (BERT)
    m.pooler = False            # tanh pooler over the first token (BERT)
    m.mlm_head = False          # BERT's transform (dense + act + LN) before the tied output
    m.final_norm = True         # LayerNorm after the last block (pre-norm models)
    m.tie_embeddings = True     # the output projection is the token embedding's transpose
    m.output_bias = False       # a bias on the output logits
    m.embed_scale = False       # multiply embeddings by sqrt(width) (Vaswani)
    m.dropout = 0.0
    m.layer_norm_eps = 1e-5
    m.dtype = "float32"         # compute dtype: float32 | bfloat16 (params stay float32)
    m.scan_layers = False       # lax.scan over identical layers (flat compile time in depth)
    m.remat = "none"            # none | dots | full
    m.kernels = "auto"          # auto (cpu: xla_cpu, gpu: gpu, tpu: reference) | reference
                                #   (scaling.nn, plain jnp) | xla_cpu | gpu (cuDNN attention)
                                #   | tpu (splash attention); see scaling.kernels
    m.attention_impl = "auto"   # attention-only override of model.kernels: auto (the kernel
                                #   set's) | xla (einsum reference) | blocked (causal: skips
                                #   fully masked key blocks) | jax (jax.nn.dot_product_attention)
                                #   | splash (Pallas TPU kernel)
    m.attention_block = 128     # query/key block length of blocked and splash attention
    return m


def base_config() -> ml_collections.ConfigDict:
    """All sections of a run's config with sensible defaults for a tiny CPU run."""
    c = ml_collections.ConfigDict()
    c.model = model_config()

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "builtin"          # builtin (local text corpus) or any TFDS name
    c.data.corpus = ""                  # builtin: dir or glob of text files ("" = Python stdlib)
    c.data.data_dir = ""                # TFDS data dir ("" = TFDS default, ~/tensorflow_datasets)
    c.data.text_key = "text"            # TFDS feature holding text (or source for translation)
    c.data.target_key = ""              # translation datasets: target language key
    c.data.tokenizer = "byte"           # byte | sentencepiece
    c.data.sp_vocab_size = 1024         # sentencepiece vocabulary size
    c.data.objective = "causal_lm"      # causal_lm | mlm | span_corruption | translation |
                                        #   task (labelled examples of task.*; fine-tuning)
    c.data.seq_len = 128                # T (encoder_decoder: source length)
    c.data.target_len = 0               # encoder_decoder: target length (0 = seq_len)
    c.data.mask_rate = 0.15             # mlm: fraction of tokens selected
    c.data.dynamic_masking = False      # mlm: fresh masks each epoch (RoBERTa) vs static (BERT)
    c.data.noise_density = 0.15         # span corruption
    c.data.mean_span_length = 3.0
    c.data.eval_fraction = 0.02         # builtin: fraction of documents held out
    c.data.corpus_exclude = ""          # builtin: comma-separated globs of files the corpus
                                        #   leaves out (e.g. a task's held-out files)
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
    c.optim.decay = "cosine"            # cosine | linear | constant
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
    c.metrics.device_peak_tflops = 0.0  # 0 = look up the device, or probe the CPU once
    c.metrics.tensorboard = True
    return c
