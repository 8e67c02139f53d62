"""Tokenization for workers: load a tokenizers JSON file once per process, encode batches.

:func:`get_encoder` builds an :class:`Encoder` from the bytes of a tokenizer file and
keeps it for the life of the worker process. :meth:`Encoder.encode` turns a batch of
documents into one flat array of token ids (eos/bos added per document, by id) plus the
token count of each document, in the dtype Megatron uses for the vocabulary size.

Backends. The ids come from a backend of :mod:`pipelines.backends`: ``hf`` (the
reference) or ``fastokens``. Everything that describes the tokenizer (vocabulary size,
dtype, eos/bos ids, pre-tokenizer spans for cuts) comes from the HF reference, which
:attr:`Encoder.reference` loads on first use, so an encoder describes the same
tokenizer whichever backend encodes.

Long documents. HF's tokenizer slows down on single huge inputs, so under the ``hf``
backend a document longer than ``max_segment_chars`` is encoded in segments. fastokens
stays linear: it cuts only documents longer than ``ENCODE_CALL_CHARS``, to bound the
memory of one call (both give the same ids). A cut is made only where
it cannot change the tokens: at a pre-tokenizer boundary near the wanted length
(preferably between a non-space and a space; never inside a whitespace run),
and only after checking that encoding
a window of text around the cut in two halves gives exactly the tokens of encoding
the window whole. That check covers prefix spaces, whitespace runs, added and special
tokens, lookahead in the pre-tokenizer regex and per-character normalizers. When no
cut near the wanted length passes, the search moves on through the document, so a
huge run with no boundary (a long line of base64, say) stays in one segment: tokens
are never traded for speed. A tokenizer without a pre-tokenizer is never segmented.

Invalid text. A ``str`` holding an unpaired surrogate (JSON ``"\\ud800"``) cannot be
passed to the tokenizer; :func:`check_text` says why, and :meth:`Encoder.encode`
raises :class:`InvalidTextError` naming the first such document of a batch, so the
caller can reject that record and encode the rest.

Threads. Workers run one process per core. Nothing here sets anything global; engines
set :data:`pipelines.engines.base.WORKER_ENV` (``TOKENIZERS_PARALLELISM=false``,
``RAYON_NUM_THREADS=1``, ``FASTOKENS_BPE_THREADS=1``) in worker processes before the
first encode, so that each process encodes on one thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from pipelines.backends import Backend, HFBackend, cached_backend
from pipelines.defaults import DEFAULT_MAX_SEGMENT_CHARS
from pipelines.errors import TokenizerError

logger = logging.getLogger(__name__)

#: vocabularies with fewer entries than this are stored as uint16, others as int32
UINT16_VOCAB_LIMIT = 65_500
#: characters encoded between two clears of the model's cache (BPE word cache), which
#: bounds the tokenizer's memory on long-running workers
CACHE_RESET_CHARS = 1 << 30
#: characters of text on each side of a candidate cut that the cut check encodes
SEGMENT_WINDOW_CHARS = 256
#: candidate cuts checked per window before the search moves further on
_CANDIDATES_PER_WINDOW = 4
#: characters handed to one tokenizer call at most (a batch, or a long document's
#: segments): bounds the tokenizer's per-token output objects, which cost far more
#: than the ids kept from them
ENCODE_CALL_CHARS = 1_000_000


class InvalidTextError(ValueError):
    """A document of a batch cannot be encoded; ``index`` is its position in the batch."""

    def __init__(self, index: int, reason: str):
        super().__init__(index, reason)
        self.index = index
        self.reason = reason

    def __str__(self) -> str:
        return f"document {self.index} of the batch: {self.reason}"


def check_text(text: object) -> str | None:
    """Why ``text`` cannot be encoded, or None when it can."""
    if not isinstance(text, str):
        return f"text is {type(text).__name__}, not a string"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        char = text[err.start]
        return (f"text holds an unpaired surrogate U+{ord(char):04X} at character "
                f"{err.start}, which is not valid Unicode")
    return None


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size < UINT16_VOCAB_LIMIT else np.dtype(np.int32)


class Encoder:
    """A tokenizer ready for batch encoding, with the options of one job.

    ``backend`` names who encodes (``hf`` or ``fastokens``); a backend that cannot run
    the file raises :class:`pipelines.backends.BackendUnavailable`.
    ``split_special_tokens`` keeps special-token strings in the text ordinary text (the
    job default; this class defaults to the tokenizers library's own behaviour).
    """

    def __init__(self, data: bytes, *, eos: str | None = None, bos: str | None = None,
                 max_segment_chars: int = DEFAULT_MAX_SEGMENT_CHARS,
                 name: str = "tokenizer.json",
                 cache_reset_chars: int = CACHE_RESET_CHARS,
                 backend: str = "hf", split_special_tokens: bool = False) -> None:
        self.name = name
        self.sha256 = hashlib.sha256(data).hexdigest()
        self._json = _decode_json(data, name)
        self.split_special_tokens = split_special_tokens
        self._reference: HFBackend | None = None
        tokenizer = self.reference.tokenizer
        self.backend: Backend = self.reference if backend == "hf" else cached_backend(
            backend, self._json, sha256=self.sha256, split_special_tokens=split_special_tokens)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        # ids may have holes: size the dtype for the largest id too
        max_id = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=0)
        self.dtype = _dtype_for(max(self.vocab_size, max_id + 1))
        self.eos = eos
        self.bos = bos
        self.eos_id = self._token_id(eos, "eos")
        self.bos_id = self._token_id(bos, "bos")
        if max_segment_chars < 4 * SEGMENT_WINDOW_CHARS:
            raise ValueError(f"max_segment_chars must be at least {4 * SEGMENT_WINDOW_CHARS}")
        self.max_segment_chars = max_segment_chars
        #: the length above which a document is cut: short for HF (its cost grows faster
        #: than the text), a bound on one call's memory for a linear backend
        self.segment_chars = max_segment_chars if not self.backend.linear else max(
            max_segment_chars, ENCODE_CALL_CHARS)
        self.segmentable = tokenizer.pre_tokenizer is not None
        if not self.segmentable:
            logger.warning("%s has no pre-tokenizer: documents longer than %d characters are "
                           "encoded whole, which is slower", name, max_segment_chars)
        self.cache_reset_chars = cache_reset_chars
        #: how many times the model's cache was cleared (or the tokenizer rebuilt)
        self.cache_resets = 0
        self._chars_since_reset = 0
        #: tokens added before and after each document (bos, eos): 0 or 1 each
        self.prefix_len = 0 if self.bos_id is None else 1
        self.suffix_len = 0 if self.eos_id is None else 1

    @property
    def reference(self) -> HFBackend:
        """The HF tokenizer of this file: the reference ids and the tokenizer's facts."""
        if self._reference is None:
            try:
                self._reference = cached_backend("hf", self._json, sha256=self.sha256,
                                                 split_special_tokens=self.split_special_tokens)
            except Exception as err:  # the Rust side raises a bare Exception
                raise TokenizerError(
                    f"{self.name} could not be loaded by tokenizers: {err}.",
                    hint="Check that the file was written by a compatible version of the "
                         "tokenizers library (Tokenizer.save).") from None
        return self._reference

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def _token_id(self, token: str | None, role: str) -> int | None:
        if token is None:
            return None
        token_id = self.reference.tokenizer.token_to_id(token)
        if token_id is None:
            raise TokenizerError(
                f"the {role} token {token!r} is not in the vocabulary of {self.name} "
                f"({self.vocab_size} tokens).",
                hint=(f"Set tokenizer.{role} in the job file to a token the tokenizer has "
                      f"(e.g. its end-of-text special token), or to null for no {role} "
                      "token; a tokenizer trained with tokenyard train-tokenizer has "
                      "'<|endoftext|>'."),
            )
        return token_id

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of all documents concatenated (in :attr:`dtype`), and int64 lengths.

        Each document is ``[bos] + tokens + [eos]`` for the tokens that are set.
        Raises :class:`InvalidTextError` for the first document that cannot be encoded.
        Memory stays bounded by ``ENCODE_CALL_CHARS`` of pending segments plus the
        output, however long a document is: segments are cut lazily and handed to the
        tokenizer a bounded slice at a time.
        """
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.isascii():
                reason = check_text(text)
                if reason is not None:
                    raise InvalidTextError(index, reason)
        if not texts:
            return np.empty(0, self.dtype), np.empty(0, np.int64)
        chars = sum(map(len, texts))
        if chars <= ENCODE_CALL_CHARS and max(map(len, texts)) <= self.segment_chars:
            # the common case: one call, lengths straight from the backend
            flat, lengths = self.backend.encode_flat(texts)
        else:
            flat, lengths = self._encode_segmented(texts)
        self._count(chars)
        return self._with_specials(flat, lengths)

    def _encode_segmented(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        parts: list[np.ndarray] = []
        lengths = np.zeros(len(texts), np.int64)
        pending: list[str] = []
        owners: list[int] = []
        pending_chars = 0
        for index, segment in self._segments_of(texts):
            pending.append(segment)
            owners.append(index)
            pending_chars += len(segment)
            if pending_chars >= ENCODE_CALL_CHARS:
                parts.append(self._encode_call(pending, owners, lengths))
                pending, owners, pending_chars = [], [], 0
        if pending:
            parts.append(self._encode_call(pending, owners, lengths))
        flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return flat, lengths

    def _with_specials(self, flat: np.ndarray, lengths: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Cast to :attr:`dtype` and put bos/eos around each document, without a Python loop."""
        flat = flat.astype(self.dtype, copy=False)
        if not self.prefix_len and not self.suffix_len:
            return flat, lengths
        ends = np.cumsum(lengths)
        if self.prefix_len and self.suffix_len:
            # positions in the original array; np.insert sorts them stably, which keeps
            # bos before eos of an empty document and eos of one before bos of the next
            where = np.empty(2 * len(lengths), np.int64)
            where[0::2] = ends - lengths
            where[1::2] = ends
            values = np.empty(2 * len(lengths), self.dtype)
            values[0::2] = self.bos_id
            values[1::2] = self.eos_id
            out = np.insert(flat, where, values)
        elif self.suffix_len:
            out = np.insert(flat, ends, self.dtype.type(self.eos_id))
        else:
            out = np.insert(flat, ends - lengths, self.dtype.type(self.bos_id))
        return out, lengths + (self.prefix_len + self.suffix_len)

    def encode_pieces(self, pieces: Iterable[str]) -> Iterator[np.ndarray]:
        """One document that arrives in pieces (a huge file, read in chunks): its ids.

        Yields arrays of ``dtype`` whose concatenation is ``[bos] + tokens + [eos]`` of
        the whole text: the text is cut only at exact segment boundaries, so the ids
        equal those of :meth:`encode` on the joined text, while only about
        ``ENCODE_CALL_CHARS`` of it are held at a time (more only while no exact cut
        is found, e.g. a long run without whitespace).
        """
        if self.bos_id is not None:
            yield np.asarray([self.bos_id], self.dtype)
        buffer = ""
        pending: list[str] = []
        pending_chars = 0
        total = 0

        def flush() -> np.ndarray:
            return self.backend.encode_flat(pending)[0].astype(self.dtype, copy=False)

        for piece in pieces:
            if not piece:
                continue
            reason = None if piece.isascii() else check_text(piece)
            if reason is not None:
                raise InvalidTextError(0, reason)
            total += len(piece)
            buffer += piece
            start = 0
            while self.segmentable and len(buffer) - start > self.segment_chars:
                cut = self._find_cut(buffer, start)
                if cut is None:
                    break
                pending.append(buffer[start:cut])
                pending_chars += cut - start
                start = cut
                if pending_chars >= ENCODE_CALL_CHARS:
                    yield flush()
                    pending, pending_chars = [], 0
            buffer = buffer[start:]
        if buffer:
            pending.append(buffer)
        if pending:
            yield flush()
        self._count(total)
        if self.eos_id is not None:
            yield np.asarray([self.eos_id], self.dtype)

    def reference_ids(self, text: str) -> np.ndarray:
        """The reference (HF) ids of one text, without bos/eos, as uint32."""
        return self.reference.encode_flat([text])[0]

    def _segments_of(self, texts: Sequence[str]):
        """(document index, segment) pairs; long documents cut lazily into exact segments."""
        for index, text in enumerate(texts):
            if self.segmentable and len(text) > self.segment_chars:
                for segment in self.iter_segments(text):
                    yield index, segment
            else:
                yield index, text

    def _encode_call(self, segments: list[str], owners: list[int],
                     lengths: np.ndarray) -> np.ndarray:
        """One backend call; the flat ids; adds to ``lengths`` per owner."""
        flat, counts = self.backend.encode_flat(segments)
        np.add.at(lengths, np.asarray(owners, np.int64), counts)
        return flat

    def _count(self, chars: int) -> None:
        self._chars_since_reset += chars
        if self._chars_since_reset >= self.cache_reset_chars:
            self.reset_cache()

    def reset_cache(self) -> None:
        """Drop what the HF tokenizer cached while encoding; tokens do not change.

        fastokens keeps no cache that grows with the text it has seen.
        """
        reference = self._reference
        if reference is not None:
            clear = getattr(reference.tokenizer.model, "_clear_cache", None)
            if clear is not None:
                clear()
            else:  # a model without the call: rebuild it
                fresh = HFBackend(self._json, split_special_tokens=self.split_special_tokens)
                if self.backend is reference:
                    self.backend = fresh
                self._reference = fresh
        self._chars_since_reset = 0
        self.cache_resets += 1
        logger.debug("%s: cleared the tokenizer cache (%d times so far)", self.name,
                     self.cache_resets)

    def segments(self, text: str) -> list[str]:
        """``text`` cut into pieces whose tokens, concatenated, are the tokens of ``text``."""
        return list(self.iter_segments(text))

    def iter_segments(self, text: str):
        """:meth:`segments`, one at a time."""
        limit = self.segment_chars
        if not self.segmentable:
            yield text
            return
        start = 0
        while len(text) - start > limit:
            cut = self._find_cut(text, start)
            if cut is None:
                break
            yield text[start:cut]
            start = cut
        yield text[start:]

    def _find_cut(self, text: str, start: int) -> int | None:
        """The first safe cut at or after ``start + segment_chars - window / 2``."""
        half = SEGMENT_WINDOW_CHARS
        centre = start + self.segment_chars - half // 2
        while centre + half < len(text):
            lo, hi = max(start, centre - half), centre + half
            window = text[lo:hi]
            for cut in self._candidates(window, lo, centre):
                if self._cut_is_exact(window, cut - lo):
                    return cut
            centre += half
        return None

    def _candidates(self, window: str, lo: int, centre: int) -> list[int]:
        """Pre-tokenizer boundaries in the middle half of ``window``, best first."""
        quarter = SEGMENT_WINDOW_CHARS // 2
        first, last = centre - quarter, centre + quarter
        pre_tokenizer = self.reference.tokenizer.pre_tokenizer
        spans = [span for _, span in pre_tokenizer.pre_tokenize_str(window)]
        # piece edges that no piece straddles (some pre-tokenizers drop whitespace)
        inside: set[int] = set()
        edges: set[int] = set()
        for begin, end in spans:
            inside.update(range(lo + begin + 1, lo + end))
            edges.update((lo + begin, lo + end))
        # never inside a whitespace run
        boundaries = [k for k in edges if first <= k <= last and k not in inside
                      and not (window[k - lo - 1].isspace() and window[k - lo].isspace())]

        def rank(k: int) -> tuple[int, int]:
            before, at = window[k - lo - 1], window[k - lo]
            kind = 0 if at == " " else 1 if at.isspace() else 2 if before.isspace() else 3
            return kind, abs(k - centre)

        boundaries.sort(key=rank)
        return boundaries[:_CANDIDATES_PER_WINDOW]

    def _cut_is_exact(self, window: str, k: int) -> bool:
        flat, lengths = self.backend.encode_flat([window, window[:k], window[k:]])
        whole = int(lengths[0])
        return np.array_equal(flat[:whole], flat[whole:])


def _decode_json(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8")
        json.loads(text)
    except (UnicodeDecodeError, ValueError) as err:
        raise TokenizerError(f"{name} is not a tokenizers JSON file: {err}.",
                             hint="Point tokenizer.path at a tokenizer.json file as written by "
                                  "the tokenizers library (Tokenizer.save).") from None
    return text



#: encoders kept per process, most recently used last
_ENCODERS: OrderedDict[tuple, Encoder] = OrderedDict()
_ENCODERS_KEPT = 4


def get_encoder(data: bytes, *, eos: str | None, bos: str | None = None,
                max_segment_chars: int = DEFAULT_MAX_SEGMENT_CHARS,
                name: str = "tokenizer.json", backend: str = "hf",
                split_special_tokens: bool = False) -> Encoder:
    """The process's :class:`Encoder` for these tokenizer bytes and options, built once.

    ``name`` (the tokenizer's path, say) appears in error messages only; it is not
    part of the key, so the same bytes read from another path reuse the encoder.
    """
    key = (hashlib.sha256(data).hexdigest(), eos, bos, max_segment_chars, backend,
           split_special_tokens)
    encoder = _ENCODERS.get(key)
    if encoder is None:
        encoder = Encoder(data, eos=eos, bos=bos, max_segment_chars=max_segment_chars,
                          name=name, backend=backend,
                          split_special_tokens=split_special_tokens)
        logger.info("loaded %s (%d tokens, sha256 %s)", name, encoder.vocab_size, key[0][:12])
        _ENCODERS[key] = encoder
        while len(_ENCODERS) > _ENCODERS_KEPT:
            _ENCODERS.popitem(last=False)
    else:
        _ENCODERS.move_to_end(key)
    return encoder
