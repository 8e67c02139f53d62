"""Imported by the local engine's fork server: loads a job's tokenizer before any fork.

The local engine starts its worker processes from a fork server (where the platform has
one) whose environment names a file holding the job's unit options and tokenizer bytes
(``TOKENYARD_PRELOAD``). Importing this module there imports the worker code and loads
the tokenizer backends the run may use (:func:`pipelines.task.warm_backends`) once;
every worker then forks from the server with them loaded, instead of importing and
loading them again (fastokens takes a few tenths of a second to load a tokenizer). The
server never encodes, so no tokenizer thread pool exists when it forks. Nothing here may
fail: a worker loads what it needs itself anyway.
"""

from __future__ import annotations

import logging
import os
import pickle

PRELOAD_ENV = "TOKENYARD_PRELOAD"

log = logging.getLogger(__name__)


def _preload() -> None:
    path = os.environ.pop(PRELOAD_ENV, None)
    if not path:
        return
    try:
        from pipelines import worker_env
        from pipelines.task import warm_backends
        from pipelines.tokenize import get_encoder

        worker_env.apply(override=True)
        with open(path, "rb") as f:
            options, data = pickle.load(f)
        for backend in warm_backends(options):
            get_encoder(data, eos=options.eos, bos=options.bos,
                        max_segment_chars=options.max_segment_chars,
                        name=options.tokenizer_path, backend=backend,
                        split_special_tokens=options.split_special_tokens)
    except Exception as err:  # the workers load it themselves
        log.debug("preloading the tokenizer failed: %s", err)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


_preload()
