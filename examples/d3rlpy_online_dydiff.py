"""d3rlpy ``fit`` with online DyDiff augmentation through a callback.

Trains d3rlpy's TD3+BC on a dataset while DyDiff (or any registered generator) rolls the current policy
out every ``--every`` updates and feeds a ``MixedReplayBuffer`` at real ratio ``--real-ratio``.

    python examples/d3rlpy_online_dydiff.py --dataset hopper-medium-replay --profile smoke --steps 200
"""

from __future__ import annotations

import argparse
import logging

import d3rlpy
import structlog

from augment.generators.offline import build_generator, fit_generator
from augment.integrations import GeneratorCallback
from baselines.learners import make_learner
from stores.datasets import load_dataset


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hopper-medium-replay")
    parser.add_argument("--profile", default="smoke", help="smoke | cpu | paper (model sizes and budgets)")
    parser.add_argument("--generator", default="dydiff", help="dydiff | rollout | synther | ...")
    parser.add_argument("--steps", type=int, default=200, help="d3rlpy updates")
    parser.add_argument("--every", type=int, default=100, help="updates between generator rounds")
    parser.add_argument("--rollout-batch", type=int, default=16, help="start states per round")
    parser.add_argument("--real-ratio", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    dataset = load_dataset(args.dataset, profile=args.profile, progress=False)
    # the learner: d3rlpy TD3+BC with the dataset's observation scaler, impl already created
    algo = make_learner("td3bc", dataset, seed=args.seed)
    # the generator: its models are trained once and cached (a second run loads them)
    generator = build_generator(args.generator, profile=args.profile, dataset_name=dataset.name,
                                progress=False)
    fit_generator(generator, dataset)
    callback = GeneratorCallback(generator, dataset, every=args.every, rollout_batch=args.rollout_batch,
                                 real_ratio=args.real_ratio, seed=args.seed)
    algo.fit(callback.start(algo), n_steps=args.steps, n_steps_per_epoch=args.steps, callback=callback,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False, save_interval=10**9)
    summary = {"updates": float(algo.grad_step), "rounds": float(callback.rounds),
               "synthetic_transitions": float(callback.synthetic_added),
               "synthetic_in_buffer": float(callback.synthetic.transition_count)}
    for key, value in summary.items():
        print(f"{key:24s} {value:,.0f}")
    return summary


if __name__ == "__main__":
    main()
