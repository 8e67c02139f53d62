"""``run_unit``: read, tokenize, write shard, write marker. The only thing engines call.

A pure function of its arguments: the same unit gives the same bytes on any engine,
worker or attempt. Shard objects are written first, each visible only once complete;
the marker is written last, so a marker means the unit is done. A retried, duplicated
or zombie attempt rewrites identical bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os

from pipelines import storage
from pipelines.errors import TokenizerError
from pipelines.formats import writer_for
from pipelines.read import Reject, StreamedText, UnitReader
from pipelines.records import ShardFile, UnitOptions, UnitResult, WorkUnit

log = logging.getLogger(__name__)


def marker_uri(output_uri: str, index: int) -> str:
    return storage.join(output_uri, "_units", f"{index:06d}.json")


def shard_base(index: int) -> str:
    return f"shards/{index:06d}"


def rejects_path(index: int) -> str:
    return f"rejects/{index:06d}.jsonl"


@functools.lru_cache(maxsize=4)
def _tokenizer_bytes(path: str, sha256: str, storage_key: str) -> bytes:
    """The tokenizer file's bytes, checked against the plan.

    Only its absence or a change is a :class:`TokenizerError`; storage errors keep their
    class (a transient one is retried like any other) and bugs propagate as they are.
    """
    try:
        data = storage.read_bytes(path, json.loads(storage_key))
    except storage.StorageNotFoundError:
        raise TokenizerError(
            f"the tokenizer file {path} is gone: it was read when the job was planned and no "
            "longer exists.", hint="Restore it, or start over with --restart.") from None
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise TokenizerError(
            f"the tokenizer file {path} changed since the job was planned (sha256 "
            f"{found[:12]}, the plan says {sha256[:12]}).",
            hint="Restore it, or start over with --restart.")
    return data


def encoder_for(options: UnitOptions):
    from pipelines.tokenize import get_encoder

    data = _tokenizer_bytes(options.tokenizer_path, options.tokenizer_sha256,
                            json.dumps(options.storage, sort_keys=True))
    return get_encoder(data, eos=options.eos, bos=options.bos,
                       max_segment_chars=options.max_segment_chars)


def read_marker(output_uri: str, index: int, storage_opts: dict) -> UnitResult | None:
    """The unit's marker if it exists and parses; None otherwise."""
    try:
        raw = storage.read_bytes(marker_uri(output_uri, index), storage_opts)
    except storage.StorageNotFoundError:
        return None
    try:
        return UnitResult.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        log.warning("marker of unit %06d is unreadable; the unit will run again", index)
        return None


def marker_is_valid(result: UnitResult, fingerprint: str, output_uri: str,
                    storage_opts: dict) -> bool:
    """A marker counts only if it belongs to this plan and its files are all there."""
    if result.fingerprint != fingerprint:
        return False
    files = list(result.files) + ([result.rejects] if result.rejects else [])
    return all(storage.size_of(storage.join(output_uri, f.path), storage_opts) == f.size
               for f in files)


def _worker_environment() -> None:
    # one process per core: each tokenizer runs single-threaded (see STACK-NOTES)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAYON_NUM_THREADS", "1")


class _RejectSink:
    """Writes ``rejects/NNNNNN.jsonl`` lazily: no file for a unit without rejects."""

    def __init__(self, output_uri: str, index: int, storage_opts: dict) -> None:
        self.uri = storage.join(output_uri, rejects_path(index))
        self.rel = rejects_path(index)
        self.storage = storage_opts
        self.lines: list[bytes] = []

    def __call__(self, reject: Reject) -> None:
        self.lines.append(json.dumps(reject.to_dict(), sort_keys=True,
                                     ensure_ascii=False).encode() + b"\n")

    def commit(self) -> ShardFile | None:
        if not self.lines:
            return None
        data = b"".join(self.lines)
        storage.write_bytes(self.uri, data, self.storage)
        return ShardFile(self.rel, len(data), hashlib.sha256(data).hexdigest())


def run_unit(options: UnitOptions, unit: WorkUnit) -> UnitResult:
    """Tokenize one unit into its shard files and marker; return what it wrote."""
    _worker_environment()
    existing = read_marker(options.output_uri, unit.index, options.storage)
    if existing and marker_is_valid(existing, options.fingerprint, options.output_uri,
                                    options.storage):
        log.info("unit %s is done already", unit.name)
        return existing
    encoder = encoder_for(options)
    rejects = _RejectSink(options.output_uri, unit.index, options.storage)
    reader = UnitReader(options, rejects)
    documents = tokens = 0
    max_id = -1
    writer_cls = writer_for(options.output_format)
    base = shard_base(unit.index)
    with writer_cls(storage.join(options.output_uri, base), base, encoder.dtype,
                    options.storage) as writer:
        for batch in reader.batches(unit.slices):
            if isinstance(batch.texts[0], StreamedText):
                # one huge document: its ids go to the shard as they are made
                n, top = writer.write_stream(encoder.encode_pieces(batch.texts[0].pieces()),
                                             batch.ids[0])
                documents += 1
                tokens += n
                max_id = max(max_id, top)
                continue
            ids, lengths = encoder.encode(batch.texts)
            writer.write(ids, lengths, batch.ids)
            documents += len(lengths)
            tokens += int(ids.size)
            if ids.size:
                max_id = max(max_id, int(ids.max()))
    result = UnitResult(
        index=unit.index,
        fingerprint=options.fingerprint,
        records=reader.records,
        documents=documents,
        tokens=tokens,
        rejected=reader.rejected,
        input_bytes=unit.input_bytes,
        max_token_id=max_id,
        files=writer.files,
        rejects=rejects.commit(),
    )
    storage.write_bytes(marker_uri(options.output_uri, unit.index), result.to_json(),
                        options.storage)
    log.info("unit %s: %d documents, %d tokens, %d rejected", unit.name, documents, tokens,
             reader.rejected)
    return result
