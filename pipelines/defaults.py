"""Named defaults that both the job configuration and the worker processes use.

Kept free of heavy imports, so a worker process gets them without loading the
configuration layer (pydantic, YAML) that only the driver needs.
"""

import os

#: longer documents are encoded in segments cut at pre-tokenizer boundaries (hf backend)
DEFAULT_MAX_SEGMENT_CHARS = 32_768
#: characters of text per tokenizer call: large enough that the call's fixed cost
#: vanishes, small enough that a batch's ids and the HF backend's per-token objects
#: stay a few MB
DEFAULT_BATCH_CHARS = 1_000_000


def cache_root() -> str:
    """tokenyard's cache folder on this machine: ``$TOKENYARD_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/tokenyard``, else ``~/.cache/tokenyard``. It holds the tokenizer
    backends' verdicts (``qualified/``) and the training reader's shards (``shards/``)."""
    explicit = os.environ.get("TOKENYARD_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tokenyard")
