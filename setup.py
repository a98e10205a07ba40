"""Install with `pip install -e ".[test]"`; provides the `scaling` console script."""
from setuptools import find_packages, setup

setup(
    name="scaling",
    version="0.1.0",
    description="JAX/Flax Transformer scaling experiments: models, sharded training, metrics.",
    python_requires=">=3.11",
    packages=find_packages(include=["scaling", "scaling.*", "experiments"]),
    # Version ranges are the ones this project was tested with (jax 0.10.2, flax 0.12.8, ...).
    install_requires=[
        "jax>=0.10,<0.11",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "tensorflow-datasets>=4.9.10,<4.10",
        "array-record>=0.8,<0.9",
        "grain>=0.2.18,<0.3",
        "ml-collections>=1.1,<1.2",
        "numpy>=2.0,<3",
        "tensorboardX>=2.6,<2.7",
        "tqdm>=4.66,<5",
        "pyarrow>=26,<27",            # data.files: parquet
        "matplotlib>=3.8,<4",
        "scipy>=1.13,<2",
        "sentencepiece>=0.2.0,<0.3",  # optional tokenizer (data.tokenizer=sentencepiece)
        "safetensors>=0.8,<0.9",      # import-hf / export-hf weights
        "tokenizers>=0.23,<0.24",     # data.tokenizer=hf:<dir>
    ],
    extras_require={
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4",
                 # the reference models of tests/test_hf.py (CPU wheels are enough)
                 "torch>=2.13,<2.14", "transformers>=5.20,<6",
                 "scikit-learn>=1.5,<2",   # reference metrics in tests/test_task_metrics.py
                 "nltk>=3.10,<4",          # reference BLEU in tests/test_caption_metrics.py
                 "wandb>=0.31,<0.32",      # tests/test_tracking.py reads an offline W&B run
                 # a fake GCS bucket for tests/test_storage.py
                 "gcsfs>=2026.9,<2027", "gcp-storage-emulator>=2026.7,<2027"],
        # --workdir gs://... (gcsfs) and s3://... (s3fs), through etils.epath
        "cloud": ["gcsfs>=2026.9,<2027", "s3fs>=2026.9,<2027"],
        # import-hf SRC given as a Hub name (downloads the model directory)
        "hf": ["huggingface_hub>=2.4,<3"],
        # metrics.wandb=True (scaling/tracking.py)
        "wandb": ["wandb>=0.31,<0.32"],
        # accelerators: jax's CUDA 12 or TPU build of the same version
        "cuda": ["jax[cuda12]>=0.10,<0.11"],
        "tpu": ["jax[tpu]>=0.10,<0.11"],
    },
    entry_points={"console_scripts": ["scaling=scaling.cli:main"]},
)
