"""How physical is each generator's data? One-step MuJoCo error of stored transitions, side by side.

For each replay store (and the real dataset as the reference) ``--rows`` transitions are drawn at
random; the simulator is set to s (qpos/qvel from the observation, x = 0, :mod:`augment.diagnose`'s
helpers) and stepped with a; the error is ||T_sim(s, a) - s'||^2 in raw units. Also the share of
rows flagged terminal, and the share the env's termination rule flags on s'. This says what a
learner is fed, not how much it helps: the score table of ``augment compare`` does that.

    OMP_NUM_THREADS=1 python3 benchmarks/bench_generator_consistency.py --dataset hopper-medium-replay \
        --store synther=PATH.zarr --store rollout=RUN/synthetic.zarr --store dydiff=RUN/synthetic.zarr

Prints a markdown table; ``--out`` writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def consistency(env_id: str, obs: np.ndarray, act: np.ndarray, nxt: np.ndarray,
                terminals: np.ndarray) -> dict[str, Any]:
    """Errors of N transitions (obs (N, o), act (N, a), nxt (N, o), terminals (N,) bool)."""
    from augment.diagnose import one_step_errors
    from augment.world.termination import termination_fn

    err = one_step_errors(env_id, np.stack([obs, nxt], axis=1), act[:, None])[:, 0]
    rule = np.asarray(termination_fn(env_id)(nxt), dtype=bool)
    finite = np.isfinite(err)
    ok = err[finite]
    return {"rows": int(obs.shape[0]), "mean": float(ok.mean()), "median": float(np.median(ok)),
            "p90": float(np.quantile(ok, 0.9)), "non_finite": int((~finite).sum()),
            "terminal_rate": float(terminals.mean()), "rule_rate": float(rule.mean()),
            "terminal_rule_agreement": float((terminals == rule).mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--env", default=None, help="env id when the dataset file names none (e.g. Hopper-v5)")
    ap.add_argument("--store", action="append", default=[], help="NAME=PATH of a replay store (repeatable)")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    from stores.datasets import load_dataset
    from stores.replay import ReplayStore

    dataset = load_dataset(args.dataset, profile=args.profile, env_id=args.env, progress=False)
    rng = np.random.default_rng(args.seed)
    tr = dataset.transitions
    idx = rng.choice(len(tr), size=min(args.rows, len(tr)), replace=False)
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    results["real data"] = consistency(dataset.env_id, tr.observations[idx], tr.actions[idx],
                                       tr.next_observations[idx], tr.terminals[idx])
    for item in args.store:
        name, _, path = item.rpartition("=")  # names may hold "=" (rollout:h=5)
        data = ReplayStore.open(path).load(["observations", "actions", "next_observations", "terminals"])
        n = data["observations"].shape[0]
        rows = rng.choice(n, size=min(args.rows, n), replace=False)
        results[name] = consistency(dataset.env_id, data["observations"][rows], data["actions"][rows],
                                    data["next_observations"][rows], data["terminals"][rows].astype(bool))
        results[name]["path"] = path
    print("| data | rows | one-step error mean | median | p90 | terminal rate | rule on s' | agreement |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['rows']:,} | {r['mean']:.4g} | {r['median']:.4g} | {r['p90']:.4g} | "
              f"{r['terminal_rate']:.4f} | {r['rule_rate']:.4f} | {r['terminal_rule_agreement']:.3f} |")
    print(f"({time.perf_counter() - t0:.1f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"dataset": dataset.name, "content_hash": dataset.content_hash,
                                        "rows": args.rows, "seed": args.seed, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
