"""``tokenyard sample``: decoded training samples, exactly as the model will see them."""

from __future__ import annotations

import argparse

from pipelines.cli.display import human


def register(sub) -> None:
    p = sub.add_parser(
        "sample", help="print decoded training samples of a dataset (what the model sees)",
        description="Print the first samples of the training order: windows of SEQ_LEN + 1 "
                    "tokens packed across documents, in the order the training reader "
                    "delivers them for this seed and epoch, decoded with the dataset's "
                    "tokenizer (special tokens shown).")
    p.add_argument("output", help="a dataset's output URI (where manifest.json is), or the "
                                  "root of a nightly catalog")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per sample, plus one")
    p.add_argument("--count", type=int, default=3, help="samples to print (default 3)")
    p.add_argument("--seed", type=int, default=0, help="the training run's seed (default 0)")
    p.add_argument("--epoch", type=int, default=0, help="the epoch to look at (default 0)")
    p.add_argument("--start", type=int, default=0,
                   help="the first sample's position in the epoch (default 0)")
    p.add_argument("--no-shuffle", action="store_true", help="the samples in window order")
    p.add_argument("--tokenizer", metavar="PATH",
                   help="the tokenizer file to decode with, when the one the manifest names is "
                        "not next to the dataset (it must have the manifest's sha256)")
    p.add_argument("--ids", action="store_true", help="print the token ids too")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (or AWS_ENDPOINT_URL)")
    p.add_argument("--cache-dir", help="where remote shards are cached (default shards/ in "
                                       "$TOKENYARD_CACHE_DIR, else ~/.cache/tokenyard)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tokenizers import Tokenizer

    from pipelines import storage
    from pipelines.errors import ConfigError
    from pipelines.training.cache import CacheSettings
    from pipelines.training.dataset import Order, SequenceDataset
    from pipelines.training.tokenizer import find_tokenizer

    for name in ("seq_len", "count", "seed", "epoch", "start"):
        value = getattr(args, name)
        if value < (1 if name in ("seq_len", "count") else 0):
            raise ConfigError(f"--{name.replace('_', '-')} must be at least "
                              f"{1 if name in ('seq_len', 'count') else 0}, not {value}.")
    storage_options = storage.StorageOptions(endpoint_url=args.endpoint_url)
    ds = SequenceDataset(args.output.rstrip("/") or args.output, args.seq_len, seed=args.seed,
                         storage_options=storage_options, boundaries=True,
                         order=Order(shuffle=not args.no_shuffle),
                         cache=CacheSettings(directory=args.cache_dir, prefetch_samples=0))
    info = ds.tokenizer
    where, data = find_tokenizer(info, [v.uri for s in ds.sources for v in s.versions],
                                 args.tokenizer, storage_options)
    tokenizer = Tokenizer.from_str(data.decode("utf-8"))
    per_epoch = ds.samples_per_epoch
    if args.start >= per_epoch:
        raise ConfigError(f"--start {args.start} is past the epoch's {per_epoch:,} samples.")
    count = min(args.count, per_epoch - args.start)
    print(f"{args.output}: {per_epoch:,} samples of {args.seq_len} + 1 tokens per epoch "
          f"({human(per_epoch * args.seq_len)} tokens), seed {args.seed}, epoch {args.epoch}"
          f"{', unshuffled' if args.no_shuffle else ''}; decoded with {where}")
    for i in range(count):
        position = args.epoch * per_epoch + args.start + i
        loc = ds.locate(position)
        item = ds.sample_at(position)
        tokens = item["tokens"]
        pieces = len(item["cu_seqlens"]) - 1
        print(f"\n── sample {loc.sample} of epoch {loc.epoch}: window {loc.window} of "
              f"{loc.source}, tokens {loc.start_token:,}..{loc.stop_token:,} from "
              f"{', '.join(loc.files)}; {pieces} document piece{'s' if pieces > 1 else ''} ──")
        print(tokenizer.decode(tokens.tolist(), skip_special_tokens=False))
        if args.ids:
            print(f"ids: {' '.join(map(str, tokens.tolist()))}")
    return 0
