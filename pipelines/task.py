"""``run_unit``: read, tokenize, write shard, write marker. The only thing engines call.

A pure function of its arguments: the same unit gives the same bytes on any engine,
worker, attempt or tokenizer backend. Shard objects are written first, each visible only
once complete; the marker is written last, so a marker means the unit is done. A
retried, duplicated or zombie attempt rewrites identical bytes.

Under the ``fastokens`` backend every unit checks a sample of its documents against the
HF reference before anything is kept (:class:`pipelines.identity.UnitCheck`); when an
earlier unit's check failed and the driver switched the run to HF (the backend switch
under the output prefix, :mod:`pipelines.layout`), a fastokens attempt still running
writes no marker.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import time

from pipelines import layout, storage, worker_env
from pipelines.errors import TokenizerError, TokenyardError
from pipelines.formats import writer_for
from pipelines.read import Reject, UnitReader
from pipelines.records import ShardFile, UnitOptions, UnitResult, WorkUnit

log = logging.getLogger(__name__)


class BackendSwitched(TokenyardError):
    """The run switched to HF while this fastokens attempt ran; its work is not kept."""


@functools.lru_cache(maxsize=4)
def _tokenizer_bytes(path: str, sha256: str,
                     storage_options: storage.StorageOptions) -> bytes:
    """The tokenizer file's bytes, checked against the plan.

    Only its absence or a change is a :class:`TokenizerError`; storage errors keep their
    class (a transient one is retried like any other) and bugs propagate as they are.
    """
    try:
        data = storage.read_bytes(path, storage_options)
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
                            options.storage_options)
    return get_encoder(data, eos=options.eos, bos=options.bos,
                       max_segment_chars=options.max_segment_chars, name=options.tokenizer_path,
                       backend=options.backend,
                       split_special_tokens=options.split_special_tokens)


def warm_backends(options: UnitOptions) -> tuple[str, ...]:
    """The backends a run of these options may encode or check with.

    A job that asks for HF never loads fastokens: measured, an HF worker with a fastokens
    tokenizer loaded beside it encoded about 15% fewer tokens per CPU-second.
    """
    return ("hf",) if options.requested_backend == "hf" else ("hf", "fastokens")


def warm_up(options: UnitOptions) -> None:
    """Load the job's tokenizer into this process ahead of its first unit (best effort).

    Loads the backends the run may use: both under ``auto`` and ``fastokens`` (fastokens
    encodes, HF checks), whichever the driver chooses; only HF when the job asks for it.
    """
    from dataclasses import replace

    for backend in warm_backends(options):
        try:
            encoder_for(replace(options, backend=backend))
        except Exception as err:  # the unit itself reports what is wrong, if anything
            log.debug("warm-up with %s: %s", backend, err)


class _RejectSink:
    """Writes the unit's rejects file lazily: no file for a unit without rejects."""

    def __init__(self, output_uri: str, index: int,
                 storage_options: storage.StorageOptions) -> None:
        self.rel = layout.rejects_path(index)
        self.uri = layout.file_uri(output_uri, self.rel)
        self.storage_options = storage_options
        self.lines: list[bytes] = []

    def __call__(self, reject: Reject) -> None:
        self.lines.append(json.dumps(reject.to_dict(), sort_keys=True,
                                     ensure_ascii=False).encode() + b"\n")

    def commit(self) -> ShardFile | None:
        if not self.lines:
            return None
        data = b"".join(self.lines)
        storage.write_bytes(self.uri, data, self.storage_options)
        return ShardFile(self.rel, len(data), hashlib.sha256(data).hexdigest())


def run_unit(options: UnitOptions, unit: WorkUnit) -> UnitResult:
    """Tokenize one unit into its shard files and marker; return what it wrote."""
    from pipelines.identity import UnitCheck

    started = time.perf_counter()
    worker_env.apply()
    existing = layout.read_done_marker(options.output_uri, unit.index, options.fingerprint,
                                       options.storage_options)
    if existing is not None:
        log.info("unit %s is done already", unit.name)
        return existing
    encoder = encoder_for(options)
    check = UnitCheck(encoder, unit.name) if encoder.backend_name != "hf" else None
    rejects = _RejectSink(options.output_uri, unit.index, options.storage_options)
    writer_cls = writer_for(options.output_format)
    reader = UnitReader(options, rejects, doc_ids=writer_cls.needs_doc_ids)
    documents = tokens = 0
    max_id = -1
    base = layout.shard_base(unit.index)
    with writer_cls(layout.file_uri(options.output_uri, base), base, encoder.dtype,
                    options.storage_options) as writer:
        for batch in reader.batches(unit.slices):
            if batch.streamed is not None:
                # one huge document: its ids go to the shard as they are made
                n, top = writer.write_stream(encoder.encode_pieces(batch.streamed.pieces()),
                                             batch.streamed.doc_id)
                documents += 1
                tokens += n
                max_id = max(max_id, top)
                continue
            ids, lengths = encoder.encode(batch.texts)
            if check is not None:
                check.check(batch.texts, ids, lengths)
            writer.write(ids, lengths, batch.ids)
            documents += len(lengths)
            tokens += int(ids.size)
            if ids.size:
                max_id = max(max_id, int(ids.max()))
        if check is not None:
            check.finish()  # before the shard is kept
    if check is not None and layout.backend_switched(options.output_uri,
                                                     options.storage_options):
        raise BackendSwitched(f"unit {unit.name}: the run switched to the hf backend while "
                              "this fastokens attempt ran; its marker was not written.")
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
    layout.write_marker(options.output_uri, result, options.storage_options)
    log.info("unit %s: %d documents, %d tokens, %d rejected (%s)", unit.name, documents,
             tokens, reader.rejected, encoder.backend_name)
    return dataclasses.replace(
        result, backend=encoder.backend_name, seconds=time.perf_counter() - started,
        check_seconds=check.seconds if check else 0.0,
        checked_documents=check.documents if check else 0)
