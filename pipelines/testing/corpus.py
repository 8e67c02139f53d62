"""A deterministic generator of realistic text documents, and small tokenizers trained on it.

The text is real English prose and code taken from the Python standard library that
runs this module (docstrings, comment blocks, function and class bodies), recombined
by a seeded :class:`random.Random` into documents whose lengths follow a heavy-tailed
distribution: many short documents, some long ones, and a few longer than the
encoder's default segment length. A small share of the paragraphs is non-English text
(CJK, Cyrillic, Arabic, accents, combining marks, emoji).

The same ``(total_bytes, seed)`` gives the same documents on the same Python version:
the source files and :mod:`random`'s algorithms are the only inputs.
"""

from __future__ import annotations

import functools
import gzip
import inspect
import json
import logging
import os
import random
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

#: share of documents drawn from code rather than prose
CODE_SHARE = 0.3
#: chance that a prose paragraph is replaced by a non-English one
UNICODE_SHARE = 0.04
#: chance that a document is "very long": longer than the default segment length
VERY_LONG_SHARE = 0.002

_UNICODE_PARAGRAPHS = (
    "文本被切分成工作单元，每个单元写出一个分片。分片的字节与引擎无关。",
    "トークナイザーは各ワーカーで一度だけ読み込まれ、文書はまとめて符号化されます。",
    "데이터는 작업 단위로 나뉘고 각 단위는 하나의 샤드를 씁니다.",
    "Данные делятся на рабочие единицы; каждая единица пишет один шард и один маркер.",
    "Les données brutes sont découpées en unités de travail, puis encodées en jetons.",
    "Die Rohdaten werden in Arbeitseinheiten geteilt; jede Einheit schreibt genau eine Scherbe.",
    "تُقسَّم البيانات إلى وحدات عمل، وكل وحدة تكتب جزءًا واحدًا.",
    "Ο κατακερματισμός είναι ντετερμινιστικός: ίδια είσοδος, ίδια έξοδος.",
    "Đầu vào giống nhau cho ra đầu ra giống hệt nhau, từng byte một.",
    "shards 📦 → tokens 🔢 → training 🚀 ✅ (ok) 👩‍💻 🏳️‍🌈",
    "combining marks: e\u0301 a\u0300 n\u0303 o\u0308 u\u0302 — Z\u0351\u0334a\u0336l\u0337g\u0335o\u0334",
    "zero\u200bwidth and non\u00a0breaking spaces, tabs\tand\u3000ideographic space",
)

_DOCSTRING = re.compile(r'("""|\'\'\')(.*?)\1', re.S)
_COMMENT_BLOCK = re.compile(r"(?:^[ \t]*#[^\n]*\n)+", re.M)
_TOP_LEVEL = re.compile(r"^(?=def |class |async def )", re.M)


def _stdlib_sources() -> list[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    sources = []
    for path in sorted(root.glob("*.py")):
        try:
            sources.append((path.name, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return sources


@functools.lru_cache(maxsize=1)
def _pools() -> tuple[tuple[str, ...], tuple[str, ...]]:
    prose: list[str] = []
    code: list[str] = []
    for _name, source in _stdlib_sources():
        for match in _DOCSTRING.finditer(source):
            body = inspect.cleandoc(match.group(2))
            for paragraph in re.split(r"\n\s*\n", body):
                paragraph = paragraph.strip()
                if len(paragraph) >= 40:
                    prose.append(paragraph)
        for match in _COMMENT_BLOCK.finditer(source):
            lines = [line.strip().lstrip("#").strip() for line in match.group(0).splitlines()]
            text = " ".join(line for line in lines if line)
            if len(text) >= 40 and not text.startswith("!"):
                prose.append(text)
        for block in _TOP_LEVEL.split(source)[1:]:
            block = block.rstrip()
            if 80 <= len(block) <= 6000:
                code.append(block)
    if not prose or not code:
        raise RuntimeError(f"no text found in the standard library at "
                           f"{sysconfig.get_paths()['stdlib']}")
    logger.debug("corpus pools: %d prose paragraphs, %d code blocks", len(prose), len(code))
    return tuple(prose), tuple(code)


def _target_chars(rng: random.Random) -> int:
    if rng.random() < VERY_LONG_SHARE:
        return rng.randrange(40_000, 300_000)
    # lognormal: median ~1,100 characters, 1% above ~22,000
    return max(20, int(rng.lognormvariate(7.0, 1.3)))


def _document(rng: random.Random, prose: tuple[str, ...], code: tuple[str, ...],
              target: int) -> str:
    is_code = rng.random() < CODE_SHARE
    pool = code if is_code else prose
    sep = "\n\n\n" if is_code else "\n\n"
    parts: list[str] = []
    size = 0
    while size < target:
        if not is_code and rng.random() < UNICODE_SHARE:
            part = rng.choice(_UNICODE_PARAGRAPHS)
        else:
            part = pool[rng.randrange(len(pool))]
        parts.append(part)
        size += len(part) + len(sep)
    text = sep.join(parts)
    return text[:target].rstrip() or text.strip()


def documents(total_bytes: int, seed: int = 0) -> Iterator[str]:
    """Documents whose UTF-8 sizes add up to about ``total_bytes``; the last one is cut to fit."""
    prose, code = _pools()
    rng = random.Random(seed)
    produced = 0
    while produced < total_bytes:
        remaining = total_bytes - produced
        text = _document(rng, prose, code, min(_target_chars(rng), max(remaining, 20)))
        produced += len(text.encode("utf-8"))
        yield text


def write_jsonl(path: str | os.PathLike, total_bytes: int, seed: int = 0, *,
                id_prefix: str = "doc", text_field: str = "text",
                id_field: str = "id") -> int:
    """Write generated documents as JSON lines with an id each; return the record count.

    A path ending in ``.gz`` or ``.zst`` is compressed, reproducibly (no timestamp or
    file name in the gzip header).
    """
    path = Path(path)
    lines = []
    for i, text in enumerate(documents(total_bytes, seed)):
        record = {id_field: f"{id_prefix}-{i:06d}", text_field: text}
        lines.append(json.dumps(record, ensure_ascii=False))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    elif path.name.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdCompressor(level=19).compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(lines)


@functools.lru_cache(maxsize=4)
def tiny_tokenizer_json(vocab_size: int = 512, *, eos: str = "<|endoftext|>",
                        sample_bytes: int = 400_000) -> bytes:
    """A small byte-level BPE trained on generated text; trained once per process."""
    from pipelines.train import train_bpe

    return train_bpe(documents(sample_bytes, seed=1234), vocab_size=vocab_size,
                     special_tokens=[eos])


@functools.lru_cache(maxsize=1)
def wide_tokenizer_json(vocab_size: int = 70_000) -> bytes:
    """:func:`tiny_tokenizer_json` with unused vocabulary entries up to ``vocab_size``.

    The extra entries have no merges, so encoding gives the same ids as the tiny
    tokenizer; only the vocabulary size (and so the int32 dtype) differs.
    """
    spec = json.loads(tiny_tokenizer_json())
    vocab = spec["model"]["vocab"]
    next_id = max(max(vocab.values()), *(t["id"] for t in spec["added_tokens"])) + 1
    while next_id < vocab_size:
        vocab[f"<unused_{next_id}>"] = next_id
        next_id += 1
    return json.dumps(spec, ensure_ascii=False).encode("utf-8")
