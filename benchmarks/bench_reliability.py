"""Reliability benchmark: the property-based suite and the fault suite with larger budgets, tallied.

Runs ``tests/test_property_store.py`` (hypothesis; ``--examples`` inputs per test, random seed) and
``tests/test_faults.py`` (``--kills`` kill -9 per store command, ``--train-kills`` per train / dydiff, plus
the full-disk, read-only and two-writer cases) through pytest, collects the tallies the tests append to a
JSON-lines log, and prints a markdown table: inputs fuzzed (accepted / refused), faults injected, stores
corrupted and silent wrong results (the tests fail on either, so a passing run has 0 of both), plus the
number of error-path cases of ``tests/test_error_paths.py``.

    OMP_NUM_THREADS=1 nice -n 10 python3 benchmarks/bench_reliability.py \
        --examples 150 --kills 5 --train-kills 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=150, help="hypothesis examples per property test")
    parser.add_argument("--kills", type=int, default=5, help="kill -9 per import, export and merge")
    parser.add_argument("--train-kills", type=int, default=3, help="kill -9 per train and per dydiff")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000, help="fault-suite seed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "reliability.jsonl"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "AUGMENT_RELIABILITY_LOG": str(log),
               "AUGMENT_FUZZ_EXAMPLES": str(args.examples), "AUGMENT_FUZZ_SEED": str(args.seed),
               "AUGMENT_FAULT_KILLS": str(args.kills), "AUGMENT_FAULT_TRAIN_KILLS": str(args.train_kills),
               "AUGMENT_FAULT_SEED": str(args.seed)}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "tests/test_property_store.py", "tests/test_faults.py"], cwd=ROOT, env=env)
        seconds = time.perf_counter() - t0
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    sys.path.insert(0, str(ROOT / "tests"))
    from test_error_paths import CASES

    totals: dict[str, int] = defaultdict(int)
    print(f"seed {args.seed}; pytest exit {proc.returncode}; {seconds:.0f} s wall\n")
    print("| suite | test | inputs / runs | accepted | refused | faults injected | finished before the kill "
          "| stores corrupted | silent wrong results |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [r["suite"], r["test"], r.get("inputs", r.get("runs", 0)), r.get("accepted", ""),
                 r.get("refused", ""), r.get("faults_injected", ""), r.get("finished_before_kill", ""),
                 r.get("stores_corrupted", 0), r.get("silent_wrong", 0)]
        print("| " + " | ".join(str(c) for c in cells) + " |")
        for key in ("inputs", "faults_injected", "stores_corrupted", "silent_wrong"):
            totals[key] += int(r.get(key, 0))
    print(f"\ninputs fuzzed {totals['inputs']}, faults injected {totals['faults_injected']}, "
          f"stores corrupted {totals['stores_corrupted']}, silent wrong results {totals['silent_wrong']}; "
          f"error-path cases {len(CASES)}")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
