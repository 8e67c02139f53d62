"""The environment of every worker process, set in one place.

Workers run one process per core, so each tokenizer must encode on one thread: HF
``tokenizers`` starts a Rayon pool of every core unless told otherwise (and deadlocks
after a fork once it has), and fastokens starts a pool of its own that ignores
``RAYON_NUM_THREADS``. The local and Dask engines set these in the processes they
start, Spark in its executors' environment, and the Kubernetes renderers in every pod.
"""

from __future__ import annotations

import os

WORKER_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "RAYON_NUM_THREADS": "1",
    "FASTOKENS_BPE_THREADS": "1",
}


def apply(*, override: bool = False) -> None:
    """Set :data:`WORKER_ENV` in this process (only where unset, unless ``override``)."""
    for name, value in WORKER_ENV.items():
        if override:
            os.environ[name] = value
        else:
            os.environ.setdefault(name, value)
