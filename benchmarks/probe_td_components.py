"""Which fitted network makes a Trajectory Diffuser seed walk or fall? A component swap between two seeds.

Written for issue 15's sweep, where TD on hopper-medium-replay (cpu) came out bimodal by fitted model:
seeds 1-2 hop the full 1,000 steps (normalized ~32), seeds 3-4 fall after ~40 steps (~1.5), each with a
small spread over its 10 episodes. TD acts with four networks (PLANNERS.md, Trajectory Diffuser): the
autoregressive coarse planner ``gpt``, the refining denoiser ``unet``, the ``inverse_dynamics`` that turns
(s_t, s_t+1) into a_t and the ``critic`` f_phi. This probe loads the fits of a good seed G and a bad seed B
from the planner cache (nothing is trained when both are cached) and evaluates B, G, and B with each one
of G's networks put in (and G with each of B's), all on the same episodes (one evaluation seed for every
row). The component whose swap moves the score from one mode to the other is the one whose fit differs.

    OMP_NUM_THREADS=1 python3 benchmarks/probe_td_components.py --dataset hopper-medium-replay \
        --good 2 --bad 3 --episodes 3 --out probe_td.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COMPONENTS = ("gpt", "unet", "inverse_dynamics", "critic")


def swap_rows(host_seed: int, donor_seed: int) -> list[tuple[str, int, str | None]]:
    """The rows of the probe: (label, host seed, component taken from the donor or None), host alone
    first, then one row per component."""
    rows: list[tuple[str, int, str | None]] = [(f"seed {host_seed}", host_seed, None)]
    rows += [(f"seed {host_seed} + {c} of seed {donor_seed}", host_seed, c) for c in COMPONENTS]
    return rows


@contextlib.contextmanager
def swapped(host: Any, component: str | None, donor: Any) -> Iterator[Any]:
    """``host`` with its network ``component`` replaced by ``donor``'s for the block (None: unchanged);
    the host's own network is put back on exit, also when the block raises."""
    if component is None:
        yield host
        return
    own = getattr(host, component)
    setattr(host, component, getattr(donor, component))
    try:
        yield host
    finally:
        setattr(host, component, own)


def run_probe(dataset: Any, *, good: int, bad: int, profile: str, episodes: int, eval_seed: int,
              max_steps: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Evaluate the swap grid; returns {"rows": [{label, host, swapped, normalized, return_mean,
    length_mean, seconds}], ...}: 10 rows (bad seed alone and with each of good's networks, then the
    reverse). dataset: a name or path for ``load_dataset``, or an OfflineDataset. Fits are loaded from the
    planner cache (or trained and cached); every row is evaluated on the same ``episodes`` episodes
    (``eval_seed``), normalized scores in D4RL units, lengths in env steps, seconds of wall time."""
    from augment.planners.base import check_env_fit
    from augment.planners.run import evaluate_planner, make_planner
    from stores.datasets import load_dataset
    from stores.schema import OfflineDataset

    data = dataset if isinstance(dataset, OfflineDataset) else load_dataset(dataset, profile=profile,
                                                                            progress=progress)
    env = check_env_fit(data, None)
    planners = {s: make_planner("td", data, profile=profile, seed=s, progress=progress) for s in (good, bad)}
    out_rows: list[dict[str, Any]] = []
    for host, donor in ((bad, good), (good, bad)):
        for label, host_seed, component in swap_rows(host, donor):
            t0 = time.perf_counter()
            with swapped(planners[host_seed], component, planners[donor]) as planner:
                res = evaluate_planner(planner, env, seed=eval_seed, episodes=episodes, envs=episodes,
                                       score_name=data.name, max_steps=max_steps)
            row = {"label": label, "host": host_seed, "swapped": component,
                   "normalized": float(res.normalized_mean), "return_mean": float(res.mean),
                   "length_mean": float(res.lengths.mean()),
                   "seconds": time.perf_counter() - t0}
            out_rows.append(row)
            if progress:
                print(f"{label:45s} normalized {row['normalized']:6.1f}  length {row['length_mean']:6.1f}  "
                      f"({row['seconds']:.0f} s)", flush=True)
    return {"dataset": data.name, "dataset_hash": data.content_hash, "profile": profile, "good": good,
            "bad": bad, "episodes": episodes, "eval_seed": eval_seed, "max_steps": max_steps,
            "rows": out_rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="hopper-medium-replay")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--good", type=int, default=2, help="training seed of a fit that walks")
    ap.add_argument("--bad", type=int, default=3, help="training seed of a fit that falls")
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    report = run_probe(args.dataset, good=args.good, bad=args.bad, profile=args.profile,
                       episodes=args.episodes, eval_seed=args.eval_seed, max_steps=args.max_steps,
                       progress=True)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
