"""Proving, not assuming, that the fast backend gives the reference's ids.

Two checks guard every run that encodes with ``fastokens``:

* **Qualification**, before the run (:func:`qualify`): the job's tokenizer encodes a
  built-in adversarial set (mixed scripts, emoji sequences, combining marks, whitespace
  runs, tabs and CR/LF, control characters, digits, very long words, the tokenizer's own
  special-token strings inside text, a sweep of code points and seeded random mixes of
  all of these) plus a deterministic sample of the job's own documents, with both
  backends; every id must agree. The verdict is cached on local disk by the tokenizer
  file's sha256, both libraries' versions and the special-token flag, so a tokenizer is
  qualified once per machine and library upgrade.
* **In every unit** (:class:`UnitCheck`): a deterministic sample of the unit's documents
  (the first one, then about one character in :data:`CHECK_EVERY_CHARS`, whole
  documents of at most :data:`CHECK_MAX_DOC_CHARS` characters) is encoded again with HF
  and compared with the ids about to be written. A difference raises
  :class:`pipelines.errors.BackendMismatchError` naming the document and the first
  differing position: under ``backend: fastokens`` the unit fails; under ``auto`` the
  driver switches the run to HF (see :mod:`pipelines.run`).

:func:`choose_backend` applies the job's ``tokenizer.backend`` to these facts and says
which backend runs and why.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipelines.backends import BackendUnavailable, cached_backend, versions
from pipelines.defaults import cache_root
from pipelines.errors import BackendMismatchError, TokenizerError

log = logging.getLogger(__name__)

#: about one character in this many of a unit is checked against HF (in whole documents)
CHECK_EVERY_CHARS = 4000
#: the first document of a unit up to this long is checked too
CHECK_FIRST_DOC_CHARS = 4096
#: chosen documents are compared in one HF call once this many characters wait
CHECK_FLUSH_CHARS = 256 * 2**10
#: documents longer than this are not chosen for the per-unit check
CHECK_MAX_DOC_CHARS = 16_384
#: characters of the job's own documents that qualification encodes with both backends
QUALIFY_SAMPLE_BYTES = 64 * 2**10
#: format of the cached verdicts; a change makes every tokenizer qualify again
VERDICT_VERSION = 1


# -- the adversarial set ------------------------------------------------------------

_ATOMS = (
    # whitespace: runs, tabs, CR/LF, unusual spaces, line and paragraph separators
    " ", "  ", "   ", " " * 17, " " * 300, "\t", "\t\t", " \t ", "\n", "\n\n", "\n\n\n",
    "\r\n", "\r\n\r\n", "\r", " \r\n ", "\n \n  \n", "\u00a0", "\u2002", "\u2009",
    "\u200b", "\u200d", "\u2028", "\u2029", "\u3000", "\u180e", "\ufeff", "\x0b", "\x0c",
    "\x85",
    # control characters
    "\x00", "\x01", "\x07", "\x1b[31m", "\x1f", "\x7f", "\x9f",
    # words, contractions, case
    "word", " word", "Word", " WORD", "word's", " don't", " I'm", " we'LL", "'s", "'S",
    " they've", "l'homme", "rock'n'roll", "x" * 40, "supercalifragilistic" * 3,
    # digits
    "0", "7", "42", "123", "1234", "12345678901234567890", " 3.14159", "1,000,000",
    "2026-11-30", "0x7fff", "1e-9", "٣٤٥", "१२३", "①②③", "Ⅻ",
    # punctuation and symbols
    "!", "!!!", "?!.,;:", "...", "…", "—", "–", "«»", "„“", "(((", "))) ", "[]{}",
    "<>", "</div>", "&amp;", "#include <stdio.h>", "def f(x):\n    return x", "a_b_c",
    "$$", "€£¥₹", "©®™", "∑∫√∞≠", "→⇒↔",
    # scripts
    "文本被切分成工作单元", "日本語のテキスト", "데이터는 작업 단위로", "Данные делятся",
    "Ελληνικά", "עברית", "العربية", "हिन्दी", "ไทย", "ქართული", "Հայերեն", "ᚠᚢᚦ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟘𝟙𝟚", "ｆｕｌｌｗｉｄｔｈ", "ﬁ ﬂ", "Ǆ ǅ ǆ", "İı ẞß",
    # combining marks, normalization pairs
    "e\u0301", "é", "a\u0300", "n\u0303", "o\u0308", "u\u0302\u0323",
    "Z\u0351\u0334a\u0336l\u0337g\u0335o\u0334", "\u1100\u1161\u11a8", "각", "Å", "Å",
    "\u0301", "\u0301\u0301\u0301",
    # emoji sequences: ZWJ, skin tones, flags, keycaps, variation selectors
    "📦", "🚀✅", "👩‍💻", "👨‍👩‍👧‍👦", "👍🏽", "🏳️‍🌈", "🇺🇸🇫🇷", "1️⃣", "❤️", "☺︎", "🫠",
    "\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1",
)


def adversarial_texts(special_tokens: Sequence[str] = (), *, seed: int = 0) -> list[str]:
    """The built-in strings every fast backend must encode exactly as HF does."""
    out = list(_ATOMS)
    # the tokenizer's own special strings: alone, inside text, next to spaces, repeated,
    # cut in half, and glued to other special strings
    for token in special_tokens:
        out += [token, f" {token} ", f"text{token}text", f"a {token}b", f"{token}{token}",
                f"\n{token}\n", f"{token} ", f" {token}", token[: len(token) // 2],
                token[len(token) // 2:], token.upper(), f"x{token}" * 3]
    if len(special_tokens) > 1:
        out.append("".join(special_tokens))
    # very long words and runs without a boundary
    out += ["a" * 2000, "ab" * 1000, "QmFzZTY0" * 250, "1" * 2000, "é" * 1000, "🚀" * 300,
            " " * 2000, "\n" * 1000, "-" * 1500, "文" * 1500]
    # a sweep over code points, every plane (no surrogates)
    sweep = [chr(cp) for cp in range(0x20, 0x30000, 53) if not 0xD800 <= cp <= 0xDFFF]
    out += ["".join(sweep[i:i + 256]) for i in range(0, len(sweep), 256)]
    out.append("".join(chr(cp) for cp in range(0x80, 0x800)))
    # seeded mixes of everything above, joined with and without spaces
    rng = random.Random(seed)
    pool = out[:]
    for _ in range(150):
        parts = [rng.choice(pool)[: rng.randrange(1, 200)] for _ in range(rng.randrange(2, 12))]
        out.append(rng.choice(("", " ", "\n", "\t")).join(parts))
    return out


def special_token_strings(json_text: str) -> list[str]:
    """The contents of a tokenizer file's added tokens, specials first."""
    try:
        added = json.loads(json_text).get("added_tokens") or []
    except (ValueError, AttributeError):
        return []
    ordered = sorted(added, key=lambda t: not t.get("special", False))
    return [t["content"] for t in ordered if isinstance(t, dict) and t.get("content")][:64]


# -- comparing ------------------------------------------------------------------------


def first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    """The first position where two id arrays differ (a length too), or None."""
    n = min(len(a), len(b))
    unequal = np.flatnonzero(np.asarray(a[:n], np.int64) != np.asarray(b[:n], np.int64))
    if unequal.size:
        return int(unequal[0])
    return None if len(a) == len(b) else n


def _excerpt(text: str, position_chars: int | None = None, width: int = 60) -> str:
    start = 0 if position_chars is None else max(0, position_chars - width // 2)
    shown = text[start:start + width]
    return json.dumps(shown, ensure_ascii=False) + ("…" if len(text) > start + width else "")


@dataclass(frozen=True)
class Mismatch:
    """Where two backends first disagreed."""

    text_index: int
    position: int
    fast_id: int | None
    hf_id: int | None
    excerpt: str

    def describe(self) -> str:
        return (f"text {self.text_index} {self.excerpt}: first difference at token "
                f"{self.position} (fastokens id {self.fast_id}, HF id {self.hf_id})")


def compare(fast, hf, texts: Sequence[str], *, batch_chars: int = 1_000_000) -> Mismatch | None:
    """The first text whose ids differ between two backends, or None when all agree."""
    start = 0
    while start < len(texts):
        end, chars = start, 0
        while end < len(texts) and (chars < batch_chars or end == start):
            chars += len(texts[end])
            end += 1
        batch = texts[start:end]
        a, a_len = fast.encode_flat(batch)
        b, b_len = hf.encode_flat(batch)
        if not (np.array_equal(a_len, b_len) and np.array_equal(a, b)):
            a_end, b_end = np.cumsum(a_len), np.cumsum(b_len)
            for i in range(len(batch)):
                x = a[a_end[i] - a_len[i]:a_end[i]]
                y = b[b_end[i] - b_len[i]:b_end[i]]
                at = first_difference(x, y)
                if at is not None:
                    return Mismatch(start + i, at, int(x[at]) if at < len(x) else None,
                                    int(y[at]) if at < len(y) else None,
                                    _excerpt(batch[i]))
        start = end
    return None


# -- qualification --------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The outcome of qualifying fastokens on one tokenizer file."""

    ok: bool
    #: why not, in words (empty when ok)
    reason: str
    texts: int
    chars: int
    seconds: float
    cached: bool = False


def _verdict_path(sha256: str, split_special_tokens: bool) -> Path:
    v = versions()
    key = (f"{sha256}-fastokens{v['fastokens']}-tokenizers{v['tokenizers']}-"
           f"split{int(split_special_tokens)}-v{VERDICT_VERSION}")
    return Path(cache_root()) / "qualified" / f"{key}.json"


def _load_verdict(path: Path) -> Verdict | None:
    try:
        return Verdict(**{**json.loads(path.read_text()), "cached": True})
    except (OSError, ValueError, TypeError):
        return None


def _save_verdict(path: Path, verdict: Verdict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                         suffix=".tmp") as f:
            json.dump({k: v for k, v in asdict(verdict).items() if k != "cached"}, f)
        os.replace(f.name, path)
    except OSError as err:  # a read-only home: qualify again next time
        log.debug("could not cache the verdict in %s: %s", path, err)


def check_identity(json_text: str, sha256: str, split_special_tokens: bool,
                   sample: Sequence[str]) -> Verdict:
    """Encode the adversarial set and ``sample`` with both backends; the verdict.

    A plain function of picklable arguments, so that it can run in a worker process
    that has the backends loaded already. Raises :class:`BackendUnavailable` when
    fastokens cannot load the file.
    """
    started = time.process_time()
    fast = cached_backend("fastokens", json_text, sha256=sha256,
                          split_special_tokens=split_special_tokens)
    hf = cached_backend("hf", json_text, sha256=sha256,
                        split_special_tokens=split_special_tokens)
    texts = adversarial_texts(special_token_strings(json_text))
    builtin = len(texts)
    texts += sample
    found = compare(fast, hf, texts)
    reason = ""
    if found is not None:
        where = "the built-in adversarial set" if found.text_index < builtin \
            else "a sample of the job's documents"
        reason = f"fastokens gave different ids than HF on {where}: {found.describe()}"
    return Verdict(ok=found is None, reason=reason, texts=len(texts),
                   chars=sum(map(len, texts)), seconds=time.process_time() - started)


def take_sample(texts: Iterable[str], budget_chars: int = QUALIFY_SAMPLE_BYTES) -> list[str]:
    """Documents for qualification, each cut to a bounded length, up to a budget."""
    out, taken = [], 0
    for text in texts:
        out.append(text[:CHECK_MAX_DOC_CHARS])
        taken += len(out[-1])
        if taken >= budget_chars:
            break
    return out


def qualify(json_text: str, sha256: str, *, split_special_tokens: bool,
            sample: Callable[[], Iterable[str]] = lambda: (),
            runner: Callable = lambda fn, *args: fn(*args)) -> Verdict:
    """Whether fastokens gives HF's ids on this tokenizer; cached per file and versions.

    ``sample`` gives the job's own documents; it is read only when no verdict is
    cached. ``runner(fn, *args)`` runs the check (in this process by default; the local
    engine runs it in a worker that has both backends loaded). Raises
    :class:`BackendUnavailable` when fastokens cannot load the file.
    """
    path = _verdict_path(sha256, split_special_tokens)
    cached = _load_verdict(path)
    if cached is not None:
        return cached
    verdict = runner(check_identity, json_text, sha256, split_special_tokens,
                     take_sample(sample()))
    _save_verdict(path, verdict)
    return verdict


@dataclass(frozen=True)
class BackendChoice:
    """Which backend a run uses, and why, in words for the log, run record and plan."""

    requested: str
    backend: str
    reason: str
    qualification_seconds: float = 0.0


def choose_backend(requested: str, json_text: str, sha256: str, *, name: str,
                   split_special_tokens: bool,
                   sample: Callable[[], Iterable[str]] = lambda: (),
                   runner: Callable = lambda fn, *args: fn(*args)) -> BackendChoice:
    """Apply ``tokenizer.backend`` (auto | fastokens | hf) to this tokenizer file.

    ``fastokens`` fails before any work when it cannot run the file or the checks fail;
    ``auto`` then falls back to HF and says why.
    """
    if requested == "hf":
        return BackendChoice(requested, "hf", "tokenizer.backend is hf")
    try:
        verdict = qualify(json_text, sha256, split_special_tokens=split_special_tokens,
                          sample=sample, runner=runner)
    except BackendUnavailable as err:
        if requested == "fastokens":
            raise TokenizerError(
                f"tokenizer.backend is fastokens, but {err.reason} ({name}).",
                hint="Set tokenizer.backend to auto (which falls back to hf by itself) or "
                     "to hf; output bytes are the same either way.") from None
        return BackendChoice(requested, "hf", f"{err.reason}; using hf, the reference")
    if not verdict.ok:
        if requested == "fastokens":
            raise TokenizerError(
                f"tokenizer.backend is fastokens, but it failed the identity checks on "
                f"{name}: {verdict.reason}.",
                hint="Set tokenizer.backend to auto or hf; hf is the reference and gives "
                     "the correct ids.")
        return BackendChoice(requested, "hf", f"{verdict.reason}; using hf, the reference",
                             verdict.seconds if not verdict.cached else 0.0)
    how = "cached verdict" if verdict.cached else f"checked in {verdict.seconds:.1f}s"
    what = "tokenizer.backend is fastokens" if requested == "fastokens" else \
        "auto: fastokens loads this tokenizer"
    return BackendChoice(
        requested, "fastokens",
        f"{what} and gave HF's ids on {verdict.texts} texts ({how}); every unit re-checks "
        "a sample of its documents",
        0.0 if verdict.cached else verdict.seconds)


# -- the per-unit check ---------------------------------------------------------------


class UnitCheck:
    """Re-encodes a deterministic sample of one unit's documents with HF and compares.

    The sample depends only on the unit's documents: the first document of at most
    :data:`CHECK_FIRST_DOC_CHARS`, then each document (of at most ``max_doc_chars``) at
    which the unit's characters since the last check reach ``every_chars`` times its
    length: about one character in ``every_chars`` is checked. Chosen documents are
    kept (text and ids) and compared in one HF call when :data:`CHECK_FLUSH_CHARS` of
    them are waiting and at :meth:`finish`, which the unit calls before its shard is
    kept.
    """

    def __init__(self, encoder, unit_name: str, *, every_chars: int = CHECK_EVERY_CHARS,
                 max_doc_chars: int = CHECK_MAX_DOC_CHARS) -> None:
        self.encoder = encoder
        self.unit_name = unit_name
        self.every_chars = every_chars
        self.max_doc_chars = max_doc_chars
        self._credit = 0.0
        self._first_done = False
        self._seen_documents = 0
        #: chosen and not yet compared: (document number in the unit, text, fast ids)
        self._waiting: list[tuple[int, str, np.ndarray]] = []
        self._waiting_chars = 0
        self.documents = 0
        self.chars = 0
        self.seconds = 0.0

    def check(self, texts: Sequence[str], ids: np.ndarray, lengths: np.ndarray) -> None:
        """Take the chosen documents of a batch; ``ids``/``lengths`` include bos/eos."""
        credit, every, limit = self._credit, self.every_chars, self.max_doc_chars
        ends = None
        for i, text in enumerate(texts):
            n = len(text)
            credit += n / every
            if n <= limit and credit >= n:
                credit -= n
            elif not self._first_done and n <= CHECK_FIRST_DOC_CHARS:
                self._first_done = True
            else:
                continue
            if ends is None:
                ends = np.cumsum(lengths)
            start = int(ends[i] - lengths[i]) + self.encoder.prefix_len
            fast = ids[start:int(ends[i]) - self.encoder.suffix_len].copy()
            self._waiting.append((self._seen_documents + i + 1, text, fast))
            self._waiting_chars += n
        self._credit = credit
        self._seen_documents += len(texts)
        if self._waiting_chars >= CHECK_FLUSH_CHARS:
            self._compare()

    def finish(self) -> None:
        """Compare what is waiting; raises :class:`BackendMismatchError` on a difference."""
        self._compare()

    def _compare(self) -> None:
        if not self._waiting:
            return
        started = time.process_time()
        waiting, self._waiting, self._waiting_chars = self._waiting, [], 0
        reference, ref_lengths = self.encoder.reference.encode_flat([w[1] for w in waiting])
        fast = np.concatenate([w[2] for w in waiting])
        same = (np.array_equal(ref_lengths, [len(w[2]) for w in waiting])
                and np.array_equal(fast.astype(np.int64), reference.astype(np.int64)))
        if not same:
            ref_ends = np.cumsum(ref_lengths)
            for k, (number, text, ids) in enumerate(waiting):
                expected = reference[int(ref_ends[k] - ref_lengths[k]):int(ref_ends[k])]
                at = first_difference(ids, expected)
                if at is not None:
                    raise BackendMismatchError(
                        unit=self.unit_name, document=number, position=at,
                        fast_id=int(ids[at]) if at < len(ids) else None,
                        hf_id=int(expected[at]) if at < len(expected) else None,
                        excerpt=_excerpt(text))
        self.documents += len(waiting)
        self.chars += sum(len(w[1]) for w in waiting)
        self.seconds += time.process_time() - started
