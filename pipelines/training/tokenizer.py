"""What tokenizer a dataset was made with, and the check against what a model expects.

A dataset tokenized with another tokenizer than the model's still trains: the loss
goes down on ids that mean other words, and nothing fails. So the reader compares
the manifest's tokenizer (sha256 of the tokenizer file, vocabulary size, eos id) with
the :class:`TokenizerSpec` the caller gives, and refuses a mismatch with
:class:`~pipelines.errors.TokenizerMismatchError`, naming both values.

Pass the tokenizer's own vocabulary size (``tokenizer.get_vocab_size()``), not an
embedding table padded to a multiple of 64 or 128.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, fields

from pipelines import storage
from pipelines.errors import ConfigError, StorageNotFoundError, TokenizerError, \
    TokenizerMismatchError
from pipelines.records import TokenizerFacts


@dataclass(frozen=True)
class TokenizerSpec:
    """What the model expects; fields left None are not checked."""

    sha256: str | None = None
    vocab_size: int | None = None
    eos_id: int | None = None

    @classmethod
    def of(cls, value: "TokenizerSpec | Mapping | None") -> "TokenizerSpec | None":
        """A spec from itself, a mapping with the same keys, or None."""
        if value is None or isinstance(value, TokenizerSpec):
            return value
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ConfigError(
                    f"unknown key {unknown[0]!r} in the expected tokenizer; known keys are "
                    f"{', '.join(sorted(known))}.")
            return cls(**dict(value))
        raise ConfigError(f"the expected tokenizer must be a TokenizerSpec or a mapping, not "
                          f"{type(value).__name__}.")

    @classmethod
    def from_file(cls, uri: str, *, eos: str | None = None,
                  storage_options: storage.StorageOptions | None = None) -> "TokenizerSpec":
        """The spec of a tokenizers JSON file (the one the model was built with)."""
        from tokenizers import Tokenizer

        try:
            data = storage.read_bytes(uri, storage_options)
        except StorageNotFoundError:
            raise TokenizerError(f"the tokenizer file {uri} does not exist.") from None
        try:
            tok = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as err:  # tokenizers raises its own exception type
            raise TokenizerError(f"{uri} is not a tokenizers JSON file ({err}).") from None
        eos_id = tok.token_to_id(eos) if eos is not None else None
        if eos is not None and eos_id is None:
            raise TokenizerError(f"the eos token {eos!r} is not in the vocabulary of {uri}.")
        return cls(sha256=hashlib.sha256(data).hexdigest(),
                   vocab_size=tok.get_vocab_size(with_added_tokens=True), eos_id=eos_id)


def check_tokenizer(found: TokenizerFacts, expected: TokenizerSpec | None,
                    dataset: str) -> None:
    """Raise :class:`TokenizerMismatchError` for the first field that differs."""
    if expected is None:
        return
    for field in ("sha256", "vocab_size", "eos_id"):
        want = getattr(expected, field)
        have = getattr(found, field)
        if want is not None and want != have:
            raise TokenizerMismatchError(dataset, field, want, have)


def find_tokenizer(info: TokenizerFacts, dataset_uris: list[str], override: str | None,
                   storage_options: storage.StorageOptions | None) -> tuple[str, bytes]:
    """The tokenizer file a dataset was made with, as (where, bytes), checked by sha256.

    The manifest names the file only by its name and sha256 (paths are not part of a
    dataset's identity). It is looked for at ``override`` when given, else next to the
    datasets and in their parent (a nightly catalog's root).
    """
    if override is not None:
        candidates = [override]
    else:
        candidates = []
        for uri in dataset_uris:
            parent = uri.rstrip("/").rsplit("/", 1)[0] if "/" in uri.rstrip("/") else "."
            for where in (storage.join(uri, info.name), storage.join(parent, info.name)):
                if where not in candidates:
                    candidates.append(where)
    for where in candidates:
        try:
            data = storage.read_bytes(where, storage_options)
        except StorageNotFoundError:
            continue
        digest = hashlib.sha256(data).hexdigest()
        if info.sha256 and digest != info.sha256:
            if override is None:
                continue
            raise TokenizerError(
                f"{where} has sha256 {digest[:12]}…, but the dataset was tokenized with "
                f"{info.name} of sha256 {info.sha256[:12]}…; decoding with another tokenizer "
                "would print text the model never sees.",
                hint="Pass the tokenizer file the job used (its tokenizer.path).")
        return where, data
    looked = ", ".join(candidates)
    raise TokenizerError(
        f"the dataset was tokenized with {info.name} (sha256 {info.sha256[:12]}…), which is "
        f"not at {looked}.",
        hint="Pass --tokenizer PATH: the tokenizer.path of the job that made the dataset.")
