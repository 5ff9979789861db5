"""Generation throughput of every generator side by side, in synthetic transitions per CPU-second.

For each generator (default: synther, rollout, dydiff): build it for the profile, fit it (models come from
the caches when present; the fit time is reported separately), then generate ``--n`` transitions in memory
through :func:`augment.generators.offline.generate_store` (the code behind ``augment generate``) and
measure process CPU time and wall time of generation alone. Policies: the behaviour-cloned policy of the
data (cached) for the generators that roll one out. Also measures, for SynthER on an env with a
termination rule, how its own terminal channel and the env's rule agree with the data
(:func:`augment.generators.synther.terminal_report`).

    OMP_NUM_THREADS=1 python3 benchmarks/bench_generators.py --profile smoke --n 2000
    OMP_NUM_THREADS=1 python3 benchmarks/bench_generators.py --profile cpu --n 20000 \
        --out benchmarks/generators/throughput_cpu.json
    # cpu-sized networks trained a few steps on the smoke recipe (speed only):
    OMP_NUM_THREADS=1 python3 benchmarks/bench_generators.py --profile cpu --dataset-profile smoke \
        --quick-fit --n 5000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def quick_generator(name: str, profile: str, dataset_name: str, progress: bool) -> Any:
    """The profile's generator with its networks at full size but trained for a few steps only:
    generation speed depends on sizes, horizons and step counts, not on how well the models fit."""
    from augment.diffusion.trajectory import TrajectoryDiffusionConfig
    from augment.generators.dydiff import DyDiffConfig, DyDiffGenerator
    from augment.generators.offline import build_generator
    from augment.generators.rollout import RolloutConfig, RolloutGenerator
    from augment.generators.synther import SynthERConfig, SynthERGenerator
    from augment.world import WorldModelConfig

    world = dataclasses.replace(WorldModelConfig.for_profile(profile), max_epochs=2, steps_per_epoch=20,
                                reward_max_epochs=2, reward_steps_per_epoch=20)
    if name == "dydiff":
        diffusion = dataclasses.replace(TrajectoryDiffusionConfig.for_profile(profile), train_steps=20,
                                        warmup_steps=5)
        return DyDiffGenerator(DyDiffConfig.for_profile(profile, dataset_name), world_config=world,
                               diffusion_config=diffusion, progress=progress)
    if name == "rollout":
        return RolloutGenerator(RolloutConfig.for_profile(profile, dataset_name), world_config=world,
                                progress=progress)
    if name == "synther":
        return SynthERGenerator(SynthERConfig.for_profile(profile, dataset_name, train_steps=20),
                                progress=progress)
    return build_generator(name, profile=profile, dataset_name=dataset_name, progress=progress)


def bench(dataset_name: str, profile: str, n: int, generators: list[str], seed: int,
          progress: bool, *, quick_fit: bool = False, dataset_profile: str | None = None) -> dict[str, Any]:
    """Fit and time each generator; returns a JSON-native record."""
    import torch

    from augment.generators.offline import build_generator, generate_store
    from augment.generators.synther import terminal_report
    from stores.datasets import load_dataset

    dataset = load_dataset(dataset_name, profile=dataset_profile or profile, progress=progress)
    rows: list[dict[str, Any]] = []
    terminals = None
    for name in generators:
        gen = (quick_generator(name, profile, dataset.name, progress) if quick_fit else
               build_generator(name, profile=profile, dataset_name=dataset.name, progress=progress))
        result, batch = generate_store(gen, dataset, n, None, policy="behavior", profile=profile, seed=seed,
                                       progress=progress)
        evals = getattr(gen, "network_evaluations", None)
        row = {**result.table_row(), "cpu s": result.cpu_seconds,
               "mean length": float(batch.lengths.mean()) if batch is not None else None,
               "terminal share": float(batch.terminals.any(axis=1).mean()) if batch is not None else None,
               "network evaluations / trajectory": evals()["total"] if callable(evals) else None}
        if name == "synther":
            model = gen.model
            row["network evaluations / trajectory"] = model.network_evaluations_per_sample
            if dataset.env_id is not None and not quick_fit:
                terminals = terminal_report(model, dataset, min(n, 20_000), np.random.default_rng(seed))
        rows.append(row)
    return {"dataset": dataset.name, "transitions": dataset.num_transitions, "profile": profile, "n": n,
            "quick_fit": quick_fit, "dataset_profile": dataset_profile or profile, "seed": seed,
            "torch_threads": torch.get_num_threads(), "generators": rows,
            "synther_terminals": terminals, "when": time.strftime("%Y-%m-%d %H:%M:%S")}


def markdown(record: dict[str, Any]) -> str:
    cols = ["generator", "rows", "trajectories", "mean length", "fit s", "wall s", "cpu s", "transitions/s",
            "transitions/CPU-s", "network evaluations / trajectory"]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in record["generators"]:
        cells = []
        for c in cols:
            v = row.get(c)
            cells.append("-" if v is None else (f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"
                                                if isinstance(v, int) else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hopper-medium-replay")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--n", type=int, default=2000, help="transitions per generator")
    parser.add_argument("--generators", default="synther,rollout,dydiff")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the record as JSON here")
    parser.add_argument("--quick-fit", action="store_true",
                        help="profile-sized networks trained for a few steps (speed only, no quality)")
    parser.add_argument("--dataset-profile", default=None,
                        help="the dataset recipe's profile (default: --profile)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    record = bench(args.dataset, args.profile, args.n, [g.strip() for g in args.generators.split(",")],
                   args.seed, not args.quiet, quick_fit=args.quick_fit, dataset_profile=args.dataset_profile)
    print(markdown(record))
    if record["synther_terminals"]:
        t = record["synther_terminals"]
        vs = t["model_vs_rule"]
        print(f"SynthER terminals: data {t['data_rate']:.4f}, own channel {t['model_rate']:.4f}, env rule "
              f"on generated s' {t['rule_rate']:.4f}; channel vs rule agreement {vs['agreement']:.3f} "
              f"(kappa {vs['kappa']:.3f}); rule on the real data agrees {t['rule_on_data']['agreement']:.4f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))
        print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
