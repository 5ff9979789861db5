"""Synthetic data as a Minari dataset: generate a store, export it to Minari, read it with Minari alone.

    python examples/minari_export.py --dataset hopper-medium-replay --profile smoke --n 1000 \
        --dataset-id augment/hopper-rollout-v0

Minari needs the env id (the dataset's, kept in the store's attributes). The store's provenance is in the
Minari dataset's metadata; per-row provenance columns are not (Minari has no per-step slot for them).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import minari
import numpy as np

from augment.generators.offline import generate_store
from stores.convert import export_store
from stores.datasets import load_dataset


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hopper-medium-replay")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--generator", default="rollout")
    parser.add_argument("--n", type=int, default=1000, help="synthetic transitions")
    parser.add_argument("--dataset-id", default="augment/hopper-rollout-v0", help="namespace/name-vN")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace a local dataset of that id")
    args = parser.parse_args(argv)
    if args.dataset_id in minari.list_local_datasets():
        if not args.overwrite:
            parser.error(f"Minari dataset {args.dataset_id} exists locally; pass --overwrite to replace it")
        minari.delete_dataset(args.dataset_id)

    dataset = load_dataset(args.dataset, profile=args.profile, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "synthetic.zarr"
        generate_store(args.generator, dataset, args.n, store, profile=args.profile, seed=args.seed,
                       progress=False)
        export_store(store, "minari", args.dataset_id)  # under MINARI_DATASETS_PATH
    # from here on only Minari
    data = minari.load_dataset(args.dataset_id)
    steps = sum(len(ep.actions) for ep in data.iterate_episodes())
    rewards = np.concatenate([ep.rewards for ep in data.iterate_episodes()])
    summary = {"episodes": float(data.total_episodes), "steps": float(data.total_steps),
               "steps_iterated": float(steps), "reward_mean": float(rewards.mean())}
    print(f"minari dataset {args.dataset_id} (env {data.spec.env_spec.id if data.spec.env_spec else None})")
    for key, value in summary.items():
        print(f"{key:16s} {value:,.3f}")
    return summary


if __name__ == "__main__":
    main()
