"""Pathological inputs: bounded memory, linear time, no crash.

Runs ``tokenyard run`` (engine local) on inputs built to hurt, and prints each case's
seconds, input MB/s and the peak RSS of the worker processes:

  huge-text    one plain-text document of --doc-mb MB
  huge-line    one JSONL record whose text is --doc-mb MB
  tiny-docs    --tiny-millions million documents of a few words each
  big-file     one JSONL file of --file-mb MB of ordinary documents (2 workers)
  linear       huge-text at half the size, to check time grows linearly

    python benchmarks/pathological.py                          # 300 MB doc, 5M docs, 2 GB file
    python benchmarks/pathological.py --doc-mb 50 --tiny-millions 1 --file-mb 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.testing.corpus import documents, tiny_tokenizer_json  # noqa: E402
from pipelines.testing.measure import PeakRSS  # noqa: E402


def one_document(mb: int) -> str:
    return "\n\n".join(documents(mb * 10**6, seed=5))


def write_cases(root: Path, args) -> dict[str, tuple[Path, int]]:
    cases: dict[str, tuple[Path, int]] = {}
    text = one_document(args.doc_mb)
    (root / "huge-text").mkdir(parents=True, exist_ok=True)
    (root / "huge-text" / "doc.txt").write_text(text, encoding="utf-8")
    cases["huge-text"] = (root / "huge-text", 1)
    (root / "huge-line").mkdir(exist_ok=True)
    (root / "huge-line" / "doc.jsonl").write_text(json.dumps({"text": text}) + "\n")
    cases["huge-line"] = (root / "huge-line", 1)
    half = text[: len(text) // 2]
    (root / "linear").mkdir(exist_ok=True)
    (root / "linear" / "doc.txt").write_text(half, encoding="utf-8")
    cases["linear"] = (root / "linear", 1)
    del text, half
    (root / "tiny-docs").mkdir(exist_ok=True)
    with open(root / "tiny-docs" / "tiny.jsonl", "w") as f:
        for i in range(int(args.tiny_millions * 10**6)):
            f.write(f'{{"text": "doc {i} says hi"}}\n')
    cases["tiny-docs"] = (root / "tiny-docs", 1)
    (root / "big-file").mkdir(exist_ok=True)
    from pipelines.testing.corpus import write_jsonl

    write_jsonl(root / "big-file" / "big.jsonl", args.file_mb * 10**6, seed=3)
    cases["big-file"] = (root / "big-file", 2)
    return cases


def run_case(root: Path, name: str, inp: Path, workers: int, tokenizer: Path) -> dict:
    out = root / f"out-{name}"
    job = {"name": name, "input": {"uri": str(inp)}, "tokenizer": {"path": str(tokenizer)},
           "output": {"uri": str(out)},
           "engine": {"kind": "local", "workers": workers}}
    job_file = root / f"{name}.json"
    job_file.write_text(json.dumps(job))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "run", str(job_file),
                             "--restart"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with PeakRSS(proc.pid) as rss:
        stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode:
        return {"case": name, "error": stderr.strip()[-500:]}
    manifest = json.loads((out / "manifest.json").read_text())
    size = sum(p.stat().st_size for p in inp.iterdir())
    return {"case": name, "input_mb": size / 1e6, "seconds": seconds,
            "mb_per_s": size / 1e6 / seconds, "documents": manifest["totals"]["documents"],
            "tokens": manifest["totals"]["tokens"], "worker_peak_mb": rss.worker_peak_mb(),
            "driver_peak_mb": rss.driver_peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doc-mb", type=int, default=300)
    parser.add_argument("--tiny-millions", type=float, default=5)
    parser.add_argument("--file-mb", type=int, default=2000)
    parser.add_argument("--workdir")
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="tokenyard-patho-"))
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = root / "tokenizer.json"
    tokenizer.write_bytes(tiny_tokenizer_json(2000))
    cases = write_cases(root, args)
    print(f"{'case':10}{'input MB':>10}{'seconds':>9}{'MB/s':>7}{'documents':>11}"
          f"{'worker RSS':>12}{'driver RSS':>12}")
    results = []
    for name, (inp, workers) in cases.items():
        r = run_case(root, name, inp, workers, tokenizer)
        results.append(r)
        if "error" in r:
            print(f"{name:10} FAILED: {r['error']}")
            continue
        print(f"{name:10}{r['input_mb']:10.1f}{r['seconds']:9.1f}{r['mb_per_s']:7.2f}"
              f"{r['documents']:11,}{r['worker_peak_mb']:10.0f}MB{r['driver_peak_mb']:10.0f}MB",
              flush=True)
    by = {r["case"]: r for r in results if "error" not in r}
    if "huge-text" in by and "linear" in by:
        ratio = by["huge-text"]["seconds"] / by["linear"]["seconds"]
        print(f"\ntime for the whole document / time for its first half: {ratio:.2f} "
              "(2.0 is linear; fixed start-up pulls it below 2)")


if __name__ == "__main__":
    main()
