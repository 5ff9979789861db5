"""Training-loop speed, side by side in one run: bare ``algo.update`` vs our loop vs d3rlpy ``fit()``.

All three train TD3+BC (batch 256) from the same seed on the same dataset for ``--updates`` updates,
interleaved over ``--repeats`` rounds (the median is reported). Rates are updates per **CPU second** of
this process (``time.process_time``, one torch thread), which a busy shared machine distorts far less than
wall time:

* bare: ``algo.update(batch)`` over batches built beforehand by the MixedSampler (the floor);
* our loop: :func:`baselines.loop.train` with one evaluation (1 episode) and one checkpoint at the end,
  timed as the whole call minus the evaluation's wall time;
* d3rlpy fit(): ``algo.fit(MDPDataset, n_steps=...)`` with the no-op logger and no evaluators.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_loop.py --dataset hopper-medium-replay \
        --profile smoke --updates 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import d3rlpy
import structlog
import torch

from baselines.learners import make_learner
from baselines.loop import TrainConfig, train
from baselines.sampler import MixedSampler
from stores.datasets import load_dataset
from stores.schema import OfflineDataset


def bare(dataset: OfflineDataset, updates: int, seed: int) -> float:
    algo = make_learner("td3bc", dataset, seed=seed)
    sampler = MixedSampler(dataset.transitions, batch_size=256, seed=seed)
    batches = [sampler.sample() for _ in range(updates)]
    t0 = time.process_time()
    for b in batches:
        algo.update(b)
    return updates / (time.process_time() - t0)


def loop(dataset: OfflineDataset, updates: int, seed: int) -> float:
    config = TrainConfig(steps=updates, eval_every=updates, eval_episodes=1, checkpoint_every=updates,
                         seed=seed, profile="bench")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.process_time()
        r = train(dataset, "td3bc", config, Path(tmp) / "run", progress=False)
        cpu = time.process_time() - t0
    return updates / (cpu - r.times["evaluate"])


def fit(dataset: OfflineDataset, updates: int, seed: int) -> float:
    tr = dataset.transitions
    mdp = d3rlpy.dataset.MDPDataset(observations=tr.observations, actions=tr.actions, rewards=tr.rewards,
                                    terminals=tr.terminals, timeouts=tr.timeouts)
    algo = make_learner("td3bc", dataset, seed=seed)
    t0 = time.process_time()
    algo.fit(mdp, n_steps=updates, n_steps_per_epoch=updates,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False, save_interval=10**9)
    return updates / (time.process_time() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="hopper-medium-replay")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset, profile=args.profile, progress=False)
    rates: dict[str, list[float]] = {"bare algo.update (pre-built batches)": [], "our loop (train)": [],
                                     "d3rlpy fit()": []}
    fns = list(zip(rates, (bare, loop, fit), strict=True))
    for rep in range(args.repeats):
        for name, fn in fns:
            rates[name].append(fn(dataset, args.updates, seed=rep))
    med = {k: statistics.median(v) for k, v in rates.items()}
    ours = med["our loop (train)"]
    print(f"dataset {dataset.name} ({dataset.num_transitions:,} transitions), TD3+BC batch 256, "
          f"{args.updates} updates x {args.repeats} interleaved repeats, {args.threads} torch thread(s)")
    print("| variant | updates per CPU-s (median) | runs | our loop relative |")
    print("| --- | ---: | --- | ---: |")
    for name, m in med.items():
        runs = ", ".join(f"{r:.0f}" for r in rates[name])
        print(f"| {name} | {m:.1f} | {runs} | {ours / m:.2f}x |")


if __name__ == "__main__":
    main()
