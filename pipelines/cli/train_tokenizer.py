"""``tokenyard train-tokenizer``: a byte-level BPE from a sample of a job's inputs."""

from __future__ import annotations

import argparse
import hashlib

from pipelines.cli.display import human_bytes
from pipelines.cli.run import positive_int
from pipelines.config import parse_byte_size


def register(sub) -> None:
    p = sub.add_parser(
        "train-tokenizer", help="train a byte-level BPE tokenizer on a sample of a job's inputs",
        description="Train a GPT-2-style byte-level BPE on a sample of the job's input "
                    "documents and write its tokenizer.json (local path or s3://).")
    p.add_argument("job", help="the job file whose inputs to sample")
    p.add_argument("--vocab-size", type=positive_int, required=True,
                   help="vocabulary size, e.g. 32000")
    p.add_argument("--output", required=True, metavar="PATH",
                   help="where to write tokenizer.json (a local path or s3://)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a tokenizer file already at --output (datasets made with "
                        "it no longer match its sha256)")
    p.add_argument("--sample-bytes", default="50MB",
                   help="how much text to sample (default 50MB; ~12 s for a 32k vocabulary)")
    p.add_argument("--special-token", action="append", dest="special_tokens",
                   help="special tokens (repeatable); default: the job's eos and bos")
    p.add_argument("--min-frequency", type=positive_int, default=2, metavar="N",
                   help="merge only pairs seen at least N times (default 2)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from pipelines import storage
    from pipelines.config import load_job
    from pipelines.errors import ConfigError
    from pipelines.plan import make_plan
    from pipelines.records import TokenizerFacts, UnitOptions
    from pipelines.run import storage_of
    from pipelines.sample import sample_texts
    from pipelines.train import train_bpe

    from pipelines import uris

    job = load_job(args.job)
    uris.check_location(args.output, "--output")
    try:
        sample_bytes = parse_byte_size(args.sample_bytes)
    except ValueError:
        sample_bytes = 0
    if sample_bytes <= 0:
        raise ConfigError(f"--sample-bytes {args.sample_bytes!r} is not a positive size "
                          "(e.g. 50MB).")
    specials = args.special_tokens or [t for t in (job.tokenizer.eos, job.tokenizer.bos) if t]
    storage_options = storage_of(job)
    if storage.is_local(args.output) and storage.is_folder(args.output, storage_options):
        raise ConfigError(f"--output {args.output} is a folder; give the path of the file to "
                          f"write, e.g. {storage.join(args.output, 'tokenizer.json')}.")
    if not args.overwrite and storage.size_of(args.output, storage_options) is not None:
        raise ConfigError(
            f"--output {args.output} exists already; replacing a tokenizer changes the token "
            "ids of every dataset made with it, so nothing was trained or written.",
            hint="Write to a new path, or pass --overwrite to replace it.")
    # the tokenizer is what this trains: the plan only cuts the inputs for the sample
    none_yet = TokenizerFacts(name="-", sha256="-", vocab_size=0, dtype="", eos=None,
                              eos_id=None, bos=None, bos_id=None)
    plan = make_plan(job, none_yet, storage_options)
    unit_opts = UnitOptions(
        fingerprint=plan.fingerprint, output_uri="", output_format=job.output.format,
        storage_options=storage_options, tokenizer_path="", tokenizer_sha256="", eos=None,
        bos=None,
        text_field=job.input.text_field, id_field=None,
        batch_documents=job.tokenizer.batch_documents,
        max_segment_chars=job.tokenizer.max_segment_chars, on_error="skip")
    seen = [0, 0]

    def counted():
        for text in sample_texts(plan, unit_opts, sample_bytes):
            seen[0] += 1
            seen[1] += len(text)
            yield text

    try:
        data = train_bpe(counted(), vocab_size=args.vocab_size, special_tokens=specials,
                         min_frequency=args.min_frequency)
    except ValueError as err:
        raise ConfigError(f"cannot train: {err}.") from None
    storage.write_bytes(args.output, data, storage_options)
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_str(data.decode()).get_vocab_size(with_added_tokens=True)
    print(f"trained a byte-level BPE of {vocab} tokens on {seen[0]:,} documents "
          f"({human_bytes(seen[1])} of text); special tokens {', '.join(specials) or 'none'}")
    print(f"wrote {args.output} (sha256 {hashlib.sha256(data).hexdigest()[:12]})")
    return 0
