"""Scheduling overhead of the sweep engines, side by side on one tiny grid: in-process, local process pool
(2 workers) and Ray (a local head with 2 CPUs).

The grid is one small Hopper dataset (random-action episodes, written here) x ``base`` x ``--seeds``
seeds, each run ``--steps`` TD3+BC updates with one 1-episode evaluation, so the runs themselves are short
and what an engine adds shows. Each engine runs the grid twice into fresh roots: ``cold`` (the first
sweep: the pool spawns its workers, Ray starts its workers, each importing torch, d3rlpy and gymnasium)
and ``warm`` (Ray keeps its workers; the local pool is a new pool each sweep, so it pays the spawn again).

Per sweep it reports: wall seconds from starting the engine to the last run's end
(:attr:`SweepResult.run_seconds`, no tables), the seconds spent inside the runs (the cells' attempt
records), and the overhead ``wall - run seconds / slots`` (slots = 1 in-process, 2 otherwise), total and
per run. Ray's head start (``ray.init``) is reported on its own.

Usage:
    OMP_NUM_THREADS=1 python3 benchmarks/bench_sweep_overhead.py --seeds 6 --steps 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from baselines.sweep import run_sweep
from baselines.sweep_grid import EngineOptions, build
from baselines.sweep_state import read_state
from stores.schema import Episode, OfflineDataset
from stores.sources import write_npz


def random_hopper(episodes: int, seed: int = 0) -> OfflineDataset:
    """``episodes`` Hopper-v5 episodes of uniformly random actions (at most 200 steps each)."""
    env = gym.make("Hopper-v5")
    rng = np.random.default_rng(seed)
    eps = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + k)
        o, a, r, term, trunc = [obs], [], [], [], []
        for t in range(200):
            act = rng.uniform(-1.0, 1.0, size=3).astype(np.float32)
            obs, rew, te, tr, _ = env.step(act)
            o.append(obs)
            a.append(act)
            r.append(rew)
            term.append(te)
            trunc.append(tr or (t == 199 and not te))
            if te or tr:
                break
        eps.append(Episode(observations=np.asarray(o, np.float32), actions=np.asarray(a, np.float32),
                           rewards=np.asarray(r, np.float32), terminated=np.asarray(term, bool),
                           truncated=np.asarray(trunc, bool)))
    env.close()
    return OfflineDataset(name="hopper-random-bench", episodes=tuple(eps), env_id="Hopper-v5",
                          provenance={"source": "bench_sweep_overhead", "policy": "uniform random"})


def one_sweep(root: Path, dataset: Path, seeds: int, steps: int, engine: EngineOptions) -> dict[str, float]:
    spec, _ = build({"root": str(root), "datasets": [str(dataset)], "arms": ["base"],
                     "seeds": list(range(seeds)), "profile": "smoke",
                     "overrides": {"steps": steps, "eval_every": steps, "eval_episodes": 1, "batch_size": 64,
                                   "checkpoint_every": steps}})
    res = run_sweep(spec, engine, progress=False)
    assert res.status.counts["done"] == seeds, res.status.line()
    inside = [read_state(root, s.cell.cell_id)["attempts"][-1]["seconds"] for s in res.status.cells]
    slots = 1 if engine.engine == "local" and engine.jobs == 1 else 2
    overhead = res.run_seconds - sum(inside) / slots
    return {"wall": res.run_seconds, "inside": sum(inside), "median_run": statistics.median(inside),
            "overhead": overhead, "per_run": overhead / seeds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=6, help="runs in the grid")
    parser.add_argument("--steps", type=int, default=20, help="learner updates per run")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    os.environ.setdefault("AUGMENT_HOME", str(tmp / "home"))
    os.environ.setdefault("MINARI_DATASETS_PATH", str(tmp / "minari"))
    dataset = write_npz(random_hopper(8), tmp / "hop.npz")
    rows: list[tuple[str, str, dict[str, float]]] = []
    for label, engine in [("in-process (local, jobs 1)", EngineOptions("local", jobs=1)),
                          ("process pool (local, jobs 2)", EngineOptions("local", jobs=2))]:
        for phase in ("cold", "warm"):
            rows.append((label, phase, one_sweep(tmp / f"{engine.jobs}-{phase}", dataset, args.seeds,
                                                 args.steps, engine)))
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback-only head; no token file in $HOME
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             object_store_memory=80 * 1024 * 1024)
    ray_start = time.perf_counter() - t0
    try:
        for phase in ("cold", "warm"):
            rows.append(("Ray (local head, 2 CPUs)", phase, one_sweep(
                tmp / f"ray-{phase}", dataset, args.seeds, args.steps, EngineOptions("ray"))))
    finally:
        ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"grid: 1 dataset x base x {args.seeds} seeds, {args.steps} updates per run; "
          f"ray.init (2 CPUs, loopback, no dashboard): {ray_start:.1f} s\n")
    print("| engine | sweep | wall s | s inside runs | median run s | overhead s | overhead per run s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, phase, r in rows:
        print(f"| {label} | {phase} | {r['wall']:.1f} | {r['inside']:.1f} | {r['median_run']:.2f} | "
              f"{r['overhead']:.1f} | {r['per_run']:.2f} |")


if __name__ == "__main__":
    main()
