"""Acting latency of every registered planner: seconds and network calls per action, batch 1 and 10 envs.

For each planner in ``augment.planners.base.PLANNERS`` (others appear here by registering) and each
profile, the planner is built with its profile's networks but a training budget of one update per
training loop (``PlannerConfig.training_budget_fields``) and a one-step world model: latency depends on
the network sizes and the number of calls, not on the weights. Then ``act`` is timed on batches of
real dataset observations of size 1 and 10 (one warm-up call, then the median of ``--repeats``
calls). Everything is built in a temporary AUGMENT_HOME, so no cache is touched.

    OMP_NUM_THREADS=1 python benchmarks/bench_planner_latency.py --profiles smoke,cpu
    python benchmarks/bench_planner_latency.py --profiles smoke,cpu,paper --planners dmemm --threads 2
    # variants and overrides side by side at one horizon (TD plans 16 states; DMEMM T = 15 is 16 columns)
    python benchmarks/bench_planner_latency.py --profiles cpu --planner td --planner td:no-refine \
        --planner dmemm:horizon=15 --planner dmemm:diffuser,horizon=15

Planners with an ``observe`` hook (Trajectory Diffuser's return-to-go) get ``observe(0 rewards)`` after
every timed call, as the evaluation harness does (not timed).

Prints a markdown table; ``--out FILE.json`` also writes the rows. Seconds per action = seconds per
``act`` call / batch; network calls are per ``act`` call (one batched plan serves every env).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def hopper_dataset(episodes: int = 8, seed: int = 0) -> Any:
    """A few Hopper-v5 episodes of random actions (real observations; their content does not matter)."""
    import gymnasium as gym

    from stores.schema import Episode, OfflineDataset

    env = gym.make("Hopper-v5")
    rng = np.random.default_rng(seed)
    eps = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + k)
        o, a, r, te, tr = [obs], [], [], [], []
        for t in range(200):
            act = rng.uniform(-1, 1, size=3).astype(np.float32)
            obs, rew, term, trunc, _ = env.step(act)
            o.append(obs), a.append(act), r.append(rew), te.append(term), tr.append(trunc or t == 199)
            if term or trunc:
                break
        tr[-1] = tr[-1] and not te[-1]
        eps.append(Episode(np.asarray(o, np.float32), np.asarray(a, np.float32), np.asarray(r, np.float32),
                           np.asarray(te, bool), np.asarray(tr, bool)))
    env.close()
    return OfflineDataset(name="hopper-random-latency", episodes=tuple(eps), env_id="Hopper-v5")


def untrained_planner(name: str, profile: str, dataset: Any, overrides: str = "") -> Any:
    """Planner ``name`` with the ``profile``'s networks (``overrides``: ``"variant,KEY=VALUE"``) and one
    update per training loop, fitted."""
    from augment.planners.base import apply_overrides, parse_overrides, planner_class

    cls = planner_class(name)
    cfg = apply_overrides(cls.default_config(profile, dataset.name), parse_overrides(overrides))
    budget = {f: 1 for f in cfg.training_budget_fields()}
    import dataclasses

    cfg = dataclasses.replace(cfg, **budget)
    planner = cls(cfg, progress=False)
    planner.world_overrides = {"max_epochs": 1, "steps_per_epoch": 1, "reward_max_epochs": 1,
                               "reward_steps_per_epoch": 1}
    planner.fit(dataset, cache=False)
    return planner


def time_act(planner: Any, obs: np.ndarray, repeats: int) -> tuple[float, dict[str, float]]:
    """Median seconds per act call over ``repeats`` (after one warm-up) and network calls per call."""
    observe = getattr(planner, "observe", None)
    no_reward, not_done = np.zeros(obs.shape[0]), np.zeros(obs.shape[0], dtype=bool)
    planner.reset(obs.shape[0])
    planner.act(obs)
    times = []
    planner.reset_stats()
    for _ in range(repeats):
        if observe is not None:
            observe(no_reward, obs, not_done)
        t0 = time.perf_counter()
        planner.act(obs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), planner.acting_stats()["network_calls_per_act_call"]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", default="smoke,cpu")
    parser.add_argument("--planners", default=None, help="comma-separated (default: every registered one)")
    parser.add_argument("--planner", dest="specs", action="append", default=[],
                        help="NAME or NAME:VARIANT,KEY=VALUE (repeatable; replaces --planners)")
    parser.add_argument("--batches", default="1,10")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.environ["AUGMENT_HOME"] = tempfile.mkdtemp(prefix="bench-planner-latency-")
    from augment.planners.base import registered_planners

    names = args.specs or (args.planners.split(",") if args.planners else registered_planners())
    dataset = hopper_dataset()
    obs_pool = dataset.transitions.observations
    rows: list[dict[str, Any]] = []
    for profile in args.profiles.split(","):
        for spec in names:
            name, _, overrides = spec.partition(":")
            t0 = time.perf_counter()
            try:
                planner = untrained_planner(name, profile, dataset, overrides)
                name = spec
            except Exception as exc:  # a planner that cannot be built is reported, the others still run
                rows.append({"planner": spec, "profile": profile, "error": f"{type(exc).__name__}: {exc}"})
                print(f"{spec} {profile}: could not build ({exc})", file=sys.stderr)
                continue
            build = time.perf_counter() - t0
            for b in (int(x) for x in args.batches.split(",")):
                seconds, calls = time_act(planner, obs_pool[:b], args.repeats)
                rows.append({"planner": name, "profile": profile, "batch": b, "s_per_act_call": seconds,
                             "s_per_action": seconds / b, "calls_per_act_call": float(sum(calls.values())),
                             "calls": calls, "build_s": build})
                print(f"{name:8s} {profile:6s} B={b:3d}  {seconds:.4f} s/call  {seconds / b:.4f} s/action  "
                      f"{sum(calls.values()):g} calls ({calls})", file=sys.stderr, flush=True)
    print(markdown(rows, args.threads))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    return rows


def markdown(rows: list[dict[str, Any]], threads: int) -> str:
    lines = [f"| planner | profile | envs (B) | s / vector step | s / action | network calls / step | "
             f"(torch threads {threads}) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['planner']} | {r['profile']} | - | - | - | - | {r['error'][:60]} |")
            continue
        calls = ", ".join(f"{k} {v:g}" for k, v in r["calls"].items())
        lines.append(f"| {r['planner']} | {r['profile']} | {r['batch']} | {r['s_per_act_call']:.4f} | "
                     f"{r['s_per_action']:.4f} | {r['calls_per_act_call']:g} | {calls} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
