"""Sampler speed: our MixedSampler vs d3rlpy's ReplayBuffer.sample_transition_batch, side by side.

Both sample batches of 256 from the same hopper-shaped arrays (402k transitions of 11-D observations and
3-D actions, episodes of 1000 steps, like hopper-medium-replay). Usage:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sampler.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import d3rlpy
import numpy as np
import structlog

from baselines.sampler import MixedSampler


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per CPU second of this process (``time.process_time``) over about ``seconds`` of CPU time."""
    fn()
    n, t0 = 0, time.process_time()
    while time.process_time() - t0 < seconds:
        fn()
        n += 1
    return n / (time.process_time() - t0)


def hopper_arrays(n: int = 402_000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    timeouts = np.zeros(n, bool)
    timeouts[999::1000] = True
    timeouts[-1] = True
    return {"observations": rng.normal(size=(n, 11)).astype(np.float32),
            "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "next_observations": rng.normal(size=(n, 11)).astype(np.float32),
            "terminals": np.zeros(n, bool), "timeouts": timeouts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    data = hopper_arrays()
    real_only = MixedSampler(data, batch_size=256, real_ratio=0.6, seed=0)
    mixed = MixedSampler(data, batch_size=256, real_ratio=0.6, max_synthetic=1_000_000, seed=0)
    mixed.add_synthetic({k: v[:200_000] for k, v in data.items()})
    mdp = d3rlpy.dataset.MDPDataset(observations=data["observations"], actions=data["actions"],
                                    rewards=data["rewards"], terminals=data["terminals"],
                                    timeouts=data["timeouts"])
    rows = [
        ("MixedSampler, all real (TransitionMiniBatch)", rate(real_only.sample, args.seconds)),
        ("MixedSampler, 60% real + 40% synthetic (TransitionMiniBatch)", rate(mixed.sample, args.seconds)),
        ("MixedSampler, packed rows only", rate(mixed.sample_rows, args.seconds)),
        ("d3rlpy ReplayBuffer.sample_transition_batch", rate(lambda: mdp.sample_transition_batch(256),
                                                              args.seconds)),
    ]
    ref = rows[-1][1]
    print("| sampler (batch 256, hopper shapes, 402k rows) | batches per CPU-s | vs d3rlpy |")
    print("| --- | ---: | ---: |")
    for name, r in rows:
        print(f"| {name} | {r:,.0f} | {r / ref:.1f}x |")


if __name__ == "__main__":
    main()
