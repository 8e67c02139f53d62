"""The fast tokenizer backend gives the reference's ids, or is not used.

Differential tests per tokenizer family over adversarial text, both special-token rules;
the backend choice (auto, fastokens, hf) with its reasons; the qualification cache; the
per-unit check catching a planted mismatch; special-token strings in document text.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from pipelines.backends import FastokensBackend, load_backend
from pipelines.errors import BackendMismatchError, TokenizerError
from pipelines.identity import (UnitCheck, adversarial_texts, choose_backend, compare,
                                qualify, special_token_strings)
from pipelines.testing import corpus
from pipelines.tokenize import Encoder
from tests.tokenizer_families import EOS, FAST_FAMILIES, REFUSED_FAMILIES, tokenizer_json


def _fuzz(seed: int, specials: list[str], n: int = 60) -> list[str]:
    rng = random.Random(seed)
    pool = adversarial_texts(specials)[:400] + list(corpus.documents(60_000, seed=seed))
    return ["".join(rng.choice(pool)[: rng.randrange(1, 3000)]
                    for _ in range(rng.randrange(1, 6))) for _ in range(n)]


@pytest.fixture(autouse=True)
def verdict_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENYARD_CACHE_DIR", str(tmp_path / "verdicts"))


# -- identical ids, family by family ----------------------------------------------------


@pytest.mark.parametrize("split", [True, False], ids=["split-special", "control-special"])
@pytest.mark.parametrize("family", sorted(FAST_FAMILIES))
def test_fast_backend_gives_the_reference_ids(family, split):
    data = tokenizer_json(family)
    specials = special_token_strings(data.decode())
    texts = adversarial_texts(specials) + _fuzz(7, specials) + list(
        corpus.documents(200_000, seed=3))
    fast = load_backend("fastokens", data.decode(), split_special_tokens=split)
    hf = load_backend("hf", data.decode(), split_special_tokens=split)
    assert compare(fast, hf, texts) is None
    # through the encoder too: eos/bos by id, dtype, long documents whole vs in segments
    kwargs = dict(eos=EOS, bos=EOS, split_special_tokens=split, max_segment_chars=1024)
    a_ids, a_len = Encoder(data, backend="fastokens", **kwargs).encode(texts)
    b_ids, b_len = Encoder(data, backend="hf", **kwargs).encode(texts)
    assert a_ids.dtype == b_ids.dtype
    assert np.array_equal(a_len, b_len) and np.array_equal(a_ids, b_ids)


def test_a_huge_document_gives_the_same_ids_whole_and_in_pieces():
    data = tokenizer_json("gpt2")
    text = "".join(corpus.documents(400_000, seed=5))
    fast = Encoder(data, eos=EOS, backend="fastokens", max_segment_chars=4096)
    hf = Encoder(data, eos=EOS, backend="hf", max_segment_chars=4096)
    whole, _ = fast.encode([text])
    pieces = np.concatenate(list(fast.encode_pieces(text[i:i + 50_000]
                                                    for i in range(0, len(text), 50_000))))
    reference, _ = hf.encode([text])
    assert np.array_equal(whole, reference) and np.array_equal(pieces, reference)


# -- special-token strings in document text ----------------------------------------------


@pytest.mark.parametrize("backend", ["hf", "fastokens"])
def test_special_token_strings_in_text_are_ordinary_text_by_default(backend):
    data = tokenizer_json("added-tokens-template")
    texts = [f"before {EOS} after", "<s>chat</s>", "x<|im_start|>y"]
    plain = Encoder(data, eos=EOS, backend=backend, split_special_tokens=True)
    control = Encoder(data, eos=EOS, backend=backend, split_special_tokens=False)
    ids, lengths = plain.encode(texts)
    ends = np.cumsum(lengths)
    special_ids = {plain.reference.tokenizer.token_to_id(t)
                   for t in (EOS, "<s>", "</s>", "<|im_start|>")}
    for end, n in zip(ends, lengths):
        body = ids[end - n:end - 1].tolist()  # all but the eos added by id
        assert not special_ids & set(body)
        assert ids[end - 1] == plain.eos_id
    # the old behaviour, kept by split_special_tokens: false
    ids, lengths = control.encode(texts)
    assert int(np.sum(ids == control.eos_id)) == len(texts) + 1
    assert plain.reference.tokenizer.token_to_id("<s>") in ids.tolist()


# -- choosing the backend -----------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(REFUSED_FAMILIES))
def test_a_refused_tokenizer_runs_on_hf_under_auto_and_fails_clearly_under_fastokens(family):
    text = tokenizer_json(family).decode()
    choice = choose_backend("auto", text, "0" * 64, name="tok.json", split_special_tokens=True)
    assert choice.backend == "hf" and "does not support this tokenizer" in choice.reason
    with pytest.raises(TokenizerError) as info:
        choose_backend("fastokens", text, "0" * 64, name="tok.json", split_special_tokens=True)
    message = str(info.value)
    assert "tokenizer.backend is fastokens" in message and "tok.json" in message
    assert "unsupported" in message and "tokenizer.backend to auto" in message
    assert info.value.exit_code == 2


def test_auto_chooses_fastokens_and_says_why_and_hf_is_taken_as_asked():
    text = tokenizer_json("gpt2").decode()
    choice = choose_backend("auto", text, "1" * 64, name="t", split_special_tokens=True)
    assert choice.backend == "fastokens" and "gave HF's ids on" in choice.reason
    assert choose_backend("hf", text, "1" * 64, name="t",
                          split_special_tokens=True).backend == "hf"


def test_the_verdict_is_cached_per_file_and_versions(tmp_path):
    text = tokenizer_json("llama3").decode()
    calls = []

    def sample():
        calls.append(1)
        return ["a sample document"]

    first = qualify(text, "2" * 64, split_special_tokens=True, sample=sample)
    again = qualify(text, "2" * 64, split_special_tokens=True, sample=sample)
    assert first.ok and not first.cached and again.ok and again.cached
    assert calls == [1]  # the job's sample is read only when no verdict is cached
    other = qualify(text, "2" * 64, split_special_tokens=False, sample=sample)
    assert not other.cached
    files = list((tmp_path / "verdicts" / "qualified").glob("*.json"))
    assert len(files) == 2 and all("2" * 64 in f.name and "fastokens" in f.name for f in files)


def test_a_failed_qualification_falls_back_under_auto(monkeypatch):
    text = tokenizer_json("gpt2").decode()
    real = FastokensBackend.encode_flat

    def off_by_one_on_digits(self, texts):
        ids, lengths = real(self, texts)
        if any("42" in t for t in texts):
            ids = ids.copy()
            ids[-1] = (ids[-1] + 1) % 700
        return ids, lengths

    monkeypatch.setattr(FastokensBackend, "encode_flat", off_by_one_on_digits)
    choice = choose_backend("auto", text, "3" * 64, name="t", split_special_tokens=True)
    assert choice.backend == "hf" and "different ids than HF" in choice.reason
    with pytest.raises(TokenizerError, match="failed the identity checks"):
        choose_backend("fastokens", text, "4" * 64, name="t", split_special_tokens=True)


# -- the per-unit check ---------------------------------------------------------------------


def test_the_unit_check_samples_about_one_character_in_its_budget():
    data = tokenizer_json("gpt2")
    encoder = Encoder(data, eos=EOS, backend="fastokens", split_special_tokens=True)
    texts = list(corpus.documents(3_000_000, seed=8))
    check = UnitCheck(encoder, "000001")
    for i in range(0, len(texts), 300):
        batch = texts[i:i + 300]
        ids, lengths = encoder.encode(batch)
        check.check(batch, ids, lengths)
    check.finish()
    total = sum(map(len, texts))
    assert check.documents >= 3
    assert check.chars <= 3 * total / 4000 + 4096  # the budget plus the first document
    again = UnitCheck(encoder, "000001")
    for i in range(0, len(texts), 300):
        batch = texts[i:i + 300]
        again.check(batch, *encoder.encode(batch))
    again.finish()
    assert (again.documents, again.chars) == (check.documents, check.chars)  # deterministic


def test_a_planted_mismatch_is_caught_naming_the_document_and_position(monkeypatch):
    data = tokenizer_json("gpt2")
    encoder = Encoder(data, eos=EOS, backend="fastokens", split_special_tokens=True)
    texts = ["first short document", "second one", "third"]
    ids, lengths = encoder.encode(texts)
    planted = ids.copy()
    planted[3] += 1  # inside the first document
    check = UnitCheck(encoder, "000007")
    check.check(texts, planted, lengths)  # kept until the unit ends, then compared
    with pytest.raises(BackendMismatchError) as info:
        check.finish()
    err = info.value
    assert err.unit == "000007" and err.document == 1 and err.position == 3
    assert err.fast_id == int(planted[3]) and err.hf_id == int(ids[3])
    message = str(err)
    assert "document 1 of unit 000007" in message and "first difference at token 3" in message
    assert "first short document" in message and "tokenizer.backend to hf" in message
    json.dumps(err.__reduce__()[1][1]["message"])  # it travels back from workers



@pytest.mark.parametrize("requested, fastokens_loaded", [("hf", False), ("auto", True),
                                                         ("fastokens", True)])
def test_workers_warm_up_only_the_backends_the_job_may_use(tmp_path, tokenizer_file,
                                                           requested, fastokens_loaded):
    """A job that asks for HF never loads fastokens into its workers (measured: an HF
    worker with a fastokens tokenizer loaded beside it used ~35% more CPU per token)."""
    import subprocess
    import sys

    from tests.helpers import REPO, make_job

    job = tmp_path / "job.json"
    job.write_text(json.dumps(make_job(str(tmp_path / "raw"), str(tokenizer_file),
                                       str(tmp_path / "out"),
                                       **{"tokenizer.backend": requested})))
    code = (
        "import sys\n"
        "from pipelines.config import load_job\n"
        "from pipelines.plan import make_plan\n"
        "from pipelines.run import read_tokenizer, storage_of, unit_options\n"
        "from pipelines.task import warm_up\n"
        f"job = load_job({str(job)!r})\n"
        "storage = storage_of(job)\n"
        "data, facts = read_tokenizer(job, storage)\n"
        "plan = make_plan(job, facts, storage)\n"
        "warm_up(unit_options(job, plan, storage))\n"
        "print('fastokens' in sys.modules)\n")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.jsonl").write_text('{"text": "x"}\n')
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(fastokens_loaded)
