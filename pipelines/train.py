"""Training a GPT-2-style byte-level BPE tokenizer from text.

The result is a tokenizers JSON file (as bytes) that :mod:`pipelines.tokenize` loads:
the GPT-2 pre-tokenizer (ByteLevel with the GPT-2 regex, no prefix space), a ByteLevel
decoder so that decoding round-trips any text, the 256 byte symbols always in the
vocabulary (nothing is ever unknown), and no post-processor: the pipeline appends
eos/bos itself. Training the same texts with the same options gives the same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

logger = logging.getLogger(__name__)


def byte_level_bpe() -> Tokenizer:
    """An untrained tokenizer with the GPT-2 byte-level pipeline."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_bpe(texts: Iterable[str], *, vocab_size: int, special_tokens: list[str],
              min_frequency: int = 2) -> bytes:
    """Train a byte-level BPE on ``texts``; return its tokenizers JSON.

    ``vocab_size`` counts the 256 byte symbols and the special tokens, which get the
    first ids in the order given. Fewer merges than asked are learnt when the texts
    do not have enough pairs seen ``min_frequency`` times.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(special_tokens):
        raise ValueError(f"vocab_size {vocab_size} is below the {len(alphabet)} byte symbols "
                         f"plus {len(special_tokens)} special token(s)")
    tokenizer = byte_level_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    logger.info("trained a byte-level BPE of %d tokens", tokenizer.get_vocab_size())
    return tokenizer.to_str().encode("utf-8")
