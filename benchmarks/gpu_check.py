"""One prepared device check: each method's paper-size networks on CUDA, a few hundred training steps,
one generation round or planning step each, the projected hours of a full paper run, as JSON.

    python3 benchmarks/gpu_check.py --out gpu_check.json            # CUDA, paper sizes, under 8 minutes
    python3 benchmarks/gpu_check.py --out gpu_check.json --methods dydiff,synther --steps 200
    OMP_NUM_THREADS=1 python3 benchmarks/gpu_check.py --out /tmp/c.json --device cpu --size tiny  # seconds

``--device`` cuda | cpu (default cuda when torch sees it); ``--size`` paper | tiny (default paper on CUDA,
else tiny: every network a few units wide); ``--steps`` the most timed steps per network (300 / 4);
``--methods`` a comma list of dydiff, synther, world, dmemm, td, aepo, td3bc; ``--budget-s`` (420):
methods that would start after it are "skipped: budget", a method running when it ends is stopped and
recorded as an error.

Data: random episodes of Hopper's sizes (obs 11, act 3; 100 x 1000 steps at paper size, so that one
world-model epoch spans the timed steps as in a real run), no download. Each method runs the project's
own trainers and samplers with its paper-profile config (``for_profile("paper",
"hopper-medium-replay")``), only step counts changed: per network an untimed warm-up of 2 steps, then N
timed steps (N = --steps, or fewer when N would overrun the method's share of the budget), timed by the
trainer's own loop clock (torch.cuda.synchronize around what is timed here).
Per method the JSON has parameters, ``train`` (per network: steps, seconds, steps/s, the paper run's
steps and where that number comes from), ``generate`` (one round; planners and TD3+BC: one ``act`` at
the evaluation batch of 10 envs; with the paper run's amount and its source), ``act`` (planners, batch 1
and 10; their world model's device as ``world_ran_on`` when they fit one), ``ran_on`` (where the
method's parameters were: every trainer takes ``--device``), ``peak_gpu_mib`` and ``projected_hours`` =
(sum_c paper_steps_c / (steps_c / seconds_c) + paper_samples / (samples / seconds)) / 3600. DyDiff's
run counts its world model, denoiser, TD3+BC's 1M updates and 2000 rounds (world model and TD3+BC
measured once, shared with ``world`` and ``td3bc``: see ``measured_in``); env steps and checkpoints are
not counted. The JSON is rewritten after each method; a table ends the run.
The methods' measurements live in :mod:`gpu_check_methods` (benchmarks/gpu_check_methods.py); this file
is the driver (options, time budget, one record per method, the JSON and the table).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_check_methods import (  # noqa: E402  (benchmarks/ is on sys.path from here on)
    ACT_DIM,
    OBS_DIM,
    PAPER_DATASET,
    PAPER_TRANSITIONS,
    WORLD_EPOCHS_ASSUMED,
    Check,
    bench_dydiff,
    bench_planner,
    bench_synther,
    bench_td3bc,
    bench_world,
    synthetic_dataset,
)

SCHEMA = "gpu_check/1"
METHODS: tuple[str, ...] = ("dydiff", "synther", "world", "dmemm", "td", "aepo", "td3bc")
FORMULA = ("projected_hours = (sum over train[c] of paper_steps / (steps / seconds) "
           "+ generate.paper_samples / (generate.samples / generate.seconds)) / 3600")
SKIPPED = "skipped: budget"


class BudgetExceeded(Exception):
    """The global time budget ran out while a method was running."""


# --- the projection (pure) ---

def projected_hours(train: list[dict[str, Any]], generate: dict[str, Any]) -> float:
    """Hours of a full paper run at the measured rates (see :data:`FORMULA`)."""
    seconds = sum(c["paper_steps"] / c["steps_per_s"] for c in train)
    return (seconds + generate["paper_samples"] / generate["samples_per_s"]) / 3600.0


# --- machinery ---

@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` in the main thread after ``seconds`` (no-op off the main thread)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise BudgetExceeded(f"stopped after {seconds:.0f} s: the time budget (--budget-s) ran out")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- the methods (gpu_check_methods) ---

BENCHES: dict[str, Callable[[Check], dict[str, Any]]] = {
    "dydiff": bench_dydiff, "synther": bench_synther, "world": bench_world,
    "dmemm": lambda ck: bench_planner(ck, "dmemm"), "td": lambda ck: bench_planner(ck, "td"),
    "aepo": lambda ck: bench_planner(ck, "aepo"), "td3bc": bench_td3bc,
}


# --- driver ---

def run_method(name: str, ck: Check, seconds_left: float) -> dict[str, Any]:
    """One method's record: its measurements and projection, or ``error`` (the check goes on)."""
    import torch

    cuda = ck.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        with deadline(seconds_left):
            out = BENCHES[name](ck)
        out = {"status": "ok", **out}
        out["steps_per_s"] = out["train"][0]["steps_per_s"]
        out["samples_per_s"] = out["generate"]["samples_per_s"]
        out["projected_hours"] = projected_hours(out["train"], out["generate"])
    except Exception as exc:  # one method's failure is recorded; the others still run
        out = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc(limit=-4)}
    out["wall_s"] = time.perf_counter() - t0
    out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None
    return out


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` atomically (baselines.runs.write_json: NaN becomes null)."""
    from baselines.runs import write_json as write_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, record)


def table(record: dict[str, Any]) -> str:
    """A markdown table of the methods' headline numbers."""
    lines = ["| method | status | ran on | parameters | steps/s (first net) | samples/s | peak GPU MiB | "
             "paper run h |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

    for name, m in record["methods"].items():
        params = sum(m.get("parameters", {}).values()) if m.get("parameters") else None
        status = m["status"] if m["status"] != "error" else f"error: {m['error'][:50]}"
        lines.append(f"| {name} | {status} | {m.get('ran_on', '-')} | {f(params, ',')} | "
                     f"{f(m.get('steps_per_s'), '.1f')} | {f(m.get('samples_per_s'), '.1f')} | "
                     f"{f(m.get('peak_gpu_mib'), '.0f')} | {f(m.get('projected_hours'), '.1f')} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write (rewritten per method)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None)
    parser.add_argument("--size", choices=("paper", "tiny"), default=None)
    parser.add_argument("--steps", type=int, default=None, help="most timed training steps per network")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--budget-s", type=float, default=420.0)
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the check; returns the record it wrote to ``--out``."""
    start = time.perf_counter()
    args = parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device; use --device cpu --size tiny")
    size = args.size or ("paper" if device == "cuda" else "tiny")
    steps = args.steps or (300 if size == "paper" else 4)
    torch.manual_seed(0)
    record: dict[str, Any] = {
        "schema": SCHEMA, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "size": size,
        "max_steps": steps, "warmup_steps": 1 if size == "tiny" else 2, "budget_s": args.budget_s,
        "data": None, "paper_reference": {
            "dataset": PAPER_DATASET, "transitions": PAPER_TRANSITIONS,
            "transitions_source": "D4RL hopper-medium-replay-v2",
            "world_epochs_assumed": WORLD_EPOCHS_ASSUMED},
        "formula": FORMULA, "methods": {}}
    home = tempfile.mkdtemp(prefix="gpu-check-home-")
    previous_home = os.environ.get("AUGMENT_HOME")
    os.environ["AUGMENT_HOME"] = home  # nothing trained here touches the user's caches
    try:
        episodes, length = (4, 24) if size == "tiny" else (100, 1000)
        dataset = synthetic_dataset(episodes, length)
        record["data"] = {"kind": "synthetic random, Hopper sizes", "obs_dim": OBS_DIM, "act_dim": ACT_DIM,
                          "episodes": episodes, "transitions": dataset.num_transitions}
        ck = Check(device=device, size=size, max_steps=steps, warmup=record["warmup_steps"], dataset=dataset)
        for i, name in enumerate(args.methods):
            left = args.budget_s - (time.perf_counter() - start)
            if left <= 0:
                record["methods"][name] = {"status": SKIPPED}
            else:
                ck.slice_s = left / (len(args.methods) - i)
                print(f"gpu_check: {name} ({size}, {device}, {left:.0f} s left)", file=sys.stderr, flush=True)
                record["methods"][name] = run_method(name, ck, left)
            write_json(args.out, record)
    finally:
        if previous_home is None:
            os.environ.pop("AUGMENT_HOME", None)
        else:
            os.environ["AUGMENT_HOME"] = previous_home
        shutil.rmtree(home, ignore_errors=True)
    record["wall_s"] = time.perf_counter() - start
    write_json(args.out, record)
    print(table(record))
    print(f"wrote {args.out} ({record['wall_s']:.1f} s)")
    return record


if __name__ == "__main__":
    main()
