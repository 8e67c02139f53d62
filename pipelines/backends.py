"""Tokenizer backends: the HF ``tokenizers`` reference and ``fastokens``, behind one call.

A backend turns a list of texts into one flat array of token ids plus the token count of
each text (:meth:`encode_flat`), with every flag that changes ids passed explicitly, so
that both libraries' different defaults never matter:

* ``add_special_tokens=False``: no post-processor template (eos/bos are added by id,
  per document, by :mod:`pipelines.tokenize`);
* special tokens in the text: with ``split_special_tokens`` (the job default) an added
  token marked special (``<|endoftext|>``, ``<s>``) that appears literally inside a
  document is tokenized as ordinary text; without it, it becomes the control token
  (HF's ``encode_special_tokens`` and fastokens' ``split_special_tokens`` are the same
  switch);
* truncation and padding that a ``tokenizer.json`` may carry are switched off: a
  document is never cut to a model's context length here.

``hf`` is the reference: output bytes are defined as what it produces. ``fastokens`` (a
Rust BPE that loads the same file, 30-50x faster per core) is used only where it has
been shown to give the same ids (see :mod:`pipelines.identity`). It refuses at load the
tokenizers it cannot run (Metaspace, NFKC, WordPiece, Unigram, ...), which
:func:`load_backend` reports as :class:`BackendUnavailable` with its reason.

Loaded backends are kept per process (:func:`cached_backend`): fastokens objects cannot
be pickled, so every worker loads them once from the tokenizer's bytes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import itertools
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

#: what ``tokenizer.backend`` accepts
BACKEND_CHOICES = ("auto", "fastokens", "hf")
#: the fastokens releases this code was qualified against (pyproject pins the same range)
FASTOKENS_TESTED = ">=0.3.5,<0.4"


class BackendUnavailable(Exception):
    """A backend cannot run this tokenizer here (not installed, or refused the file)."""

    def __init__(self, backend: str, reason: str):
        super().__init__(backend, reason)
        self.backend = backend
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.backend}: {self.reason}"


class Backend(Protocol):
    name: str
    #: encoding time grows linearly with a text's length, so long documents need not
    #: be cut into segments (HF's does not: it slows down on single huge inputs)
    linear: bool

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All texts' ids concatenated (uint32) and each text's token count (int64)."""


class HFBackend:
    """The reference: HF ``tokenizers``, configured for bulk encoding."""

    name = "hf"
    linear = False

    def __init__(self, json_text: str, *, split_special_tokens: bool) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(json_text)
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.tokenizer.encode_special_tokens = split_special_tokens
        self.split_special_tokens = split_special_tokens

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        ids = [encoding.ids for encoding in encodings]
        del encodings
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.uint32, int(lengths.sum()))
        return flat, lengths


class FastokensBackend:
    """``fastokens``: the same ids as HF on the tokenizers it accepts, much faster."""

    name = "fastokens"
    linear = True

    def __init__(self, json_text: str, *, split_special_tokens: bool) -> None:
        try:
            import fastokens
        except ImportError:
            raise BackendUnavailable(
                "fastokens", "the fastokens package is not installed "
                             "(pip install 'fastokens" + FASTOKENS_TESTED + "')") from None
        try:
            self.tokenizer = fastokens.Tokenizer.from_json_str(json_text)
        except Exception as err:  # fastokens refuses what it cannot run with ValueError
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BackendUnavailable("fastokens", f"it does not support this tokenizer "
                                                  f"({reason})") from None
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.split_special_tokens = split_special_tokens

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        ids, offsets = self.tokenizer.encode_batch_flat(
            list(texts), add_special_tokens=False,
            split_special_tokens=self.split_special_tokens)
        flat = np.frombuffer(ids, np.uint32)
        lengths = np.diff(np.frombuffer(offsets, np.uint64)).astype(np.int64)
        return flat, lengths


_BACKENDS = {"hf": HFBackend, "fastokens": FastokensBackend}


def load_backend(name: str, json_text: str, *, split_special_tokens: bool) -> Backend:
    """A new backend object; :class:`BackendUnavailable` when it cannot run the file."""
    return _BACKENDS[name](json_text, split_special_tokens=split_special_tokens)


#: backends kept per process, most recently used last
_LOADED: OrderedDict[tuple, Backend | BackendUnavailable] = OrderedDict()
_LOADED_KEPT = 8


def cached_backend(name: str, json_text: str, *, split_special_tokens: bool,
                   sha256: str | None = None) -> Backend:
    """The process's backend for this tokenizer text and flag, loaded once.

    A refusal is remembered too, so a worker does not try to load a refused file again.
    """
    sha256 = sha256 or hashlib.sha256(json_text.encode()).hexdigest()
    key = (name, sha256, split_special_tokens)
    found = _LOADED.get(key)
    if found is None:
        try:
            found = load_backend(name, json_text, split_special_tokens=split_special_tokens)
        except BackendUnavailable as err:
            found = err
        _LOADED[key] = found
        while len(_LOADED) > _LOADED_KEPT:
            _LOADED.popitem(last=False)
    else:
        _LOADED.move_to_end(key)
    if isinstance(found, BackendUnavailable):
        raise found
    return found


@functools.cache
def versions() -> dict[str, str | None]:
    """Installed versions of both libraries (None when not installed)."""
    out: dict[str, str | None] = {}
    for package in ("tokenizers", "fastokens"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out
