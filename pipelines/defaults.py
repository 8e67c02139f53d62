"""Named defaults that both the job configuration and the worker processes use.

Kept free of imports, so a worker process gets them without loading the configuration
layer (pydantic, YAML) that only the driver needs.
"""

#: longer documents are encoded in segments cut at pre-tokenizer boundaries (hf backend)
DEFAULT_MAX_SEGMENT_CHARS = 32_768
#: characters of text per tokenizer call: large enough that the call's fixed cost
#: vanishes, small enough that a batch's ids and the HF backend's per-token objects
#: stay a few MB
DEFAULT_BATCH_CHARS = 1_000_000
