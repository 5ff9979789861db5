"""DMEMM's mechanism check: are plans more dynamics-consistent with L_tr and transition guidance?

PLANNERS.md §1.6 (a). For each variant (default: the full method, without L_tr, without transition
guidance, and the Diffuser-style baseline with all four Table 3 switches off) the planner is fitted
(trained or loaded from the planner cache, like ``augment plan``), plans are drawn once from the same
``--starts`` real start states, and compared with MuJoCo (:mod:`augment.diagnose`'s simulator helpers;
Hopper/Walker2d/HalfCheetah observations are qpos[1:] and qvel, with x = 0):

* **one-step** - the simulator is set to each planned s_t and stepped with the planned a_t; error
  ||T_sim(s_t, a_t) - s_{t+1}||^2 (raw units), averaged over the transitions before the plan's first
  terminal state;
* **open loop** - the planned actions are replayed from s_0; per-step error ||s-hat_t - s^sim_t||^2
  (Eq. 37 style), averaged over the starts whose replay has not terminated before step t;
* **model** - ||s_{t+1} - T-hat(s_t, a_t)||^2 with T-hat's mean (what L_tr penalises);
* sum of R-hat over each plan, and the planned actions' mean |a|.

    OMP_NUM_THREADS=1 python benchmarks/bench_dmemm_mechanism.py --dataset hopper-medium-replay \
        --profile cpu --seed 0 --starts 64 --out benchmarks/dmemm/mechanism_cpu

Writes ``mechanism.json`` and ``mechanism.png`` under ``--out`` and prints a markdown table. The
``no-tr-guide`` variant shares its trained model with ``full`` (guidance is an acting setting).
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

VARIANTS = {"full": "", "no-tr-loss": "no-tr-loss", "no-tr-guide": "no-tr-guide", "diffuser": "diffuser",
            "no-weighting": "no-weighting", "no-rd-loss": "no-rd-loss"}


def mechanism(dataset: Any, planner: Any, starts: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """The consistency measures of one fitted planner's plans from ``dataset`` rows ``starts``."""
    from augment.diagnose import (
        alive_mask,
        mean_errors,
        one_step_errors,
        replay_actions,
        state_errors,
        stored_mask,
    )

    env = dataset.env_id
    s0 = dataset.transitions.observations[starts]
    t0 = time.perf_counter()
    plan = planner.plan_trajectories(s0, rng)
    plan_seconds = time.perf_counter() - t0
    states, actions = plan.states, plan.actions
    b, length = actions.shape[:2]
    sim, terminal_step = replay_actions(env, s0, actions)
    open_loop = mean_errors(state_errors(states, sim), alive_mask(terminal_step, length))
    one_step = one_step_errors(env, states, actions)
    stored = stored_mask(env, states)
    model_next = planner.world.predict_next(states[:, :-1].reshape(b * length, -1),
                                            actions.reshape(b * length, -1), rng, deterministic=True)
    model = ((model_next.reshape(b, length, -1) - states[:, 1:]) ** 2).sum(-1)
    rewards = planner.label_rewards(states, actions)
    return {
        "one_step_mean": float(one_step[stored].mean()), "one_step_per_step": mean_errors(one_step, stored),
        "open_loop_per_step": open_loop, "open_loop_mean": float(np.nanmean(open_loop)),
        "model_mean": float(model[stored].mean()), "model_per_step": mean_errors(model, stored),
        "reward_hat_sum": float(rewards.sum(axis=1).mean()), "mean_abs_action": float(np.abs(actions).mean()),
        "stored_fraction": float(stored.mean()), "plan_seconds": plan_seconds, "horizon": int(length)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="hopper-medium-replay")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every variant (cached)")
    parser.add_argument("--starts", type=int, default=64)
    parser.add_argument("--variants", default="full,no-tr-loss,no-tr-guide,diffuser")
    parser.add_argument("--set", default="", help="extra KEY=VALUE overrides for every variant")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/dmemm/mechanism"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from augment.diagnose import draw_start_states
    from augment.planners.run import make_planner
    from baselines.seeding import derive_seed
    from stores.datasets import load_dataset

    dataset = load_dataset(args.dataset, profile=args.profile)
    starts = draw_start_states(dataset, args.starts, derive_seed(args.seed, "mechanism-starts"))
    results: dict[str, Any] = {}
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name}; choose from {', '.join(VARIANTS)}")
        overrides = ",".join(x for x in (VARIANTS[name], args.set) if x)
        t0 = time.perf_counter()
        planner = make_planner("dmemm", dataset, profile=args.profile, overrides=overrides, seed=args.seed)
        fit_s = time.perf_counter() - t0
        rng = np.random.default_rng(derive_seed(args.seed, "mechanism-plans"))
        res = mechanism(dataset, planner, starts, rng)
        res.update(fit_seconds=fit_s, from_cache=planner.from_cache, overrides=overrides,
                   train_final=planner.train_record.get("final"), cache_path=str(planner.cache_path))
        results[name] = res
        print(f"{name}: one-step {res['one_step_mean']:.4g}  open-loop mean {res['open_loop_mean']:.4g}  "
              f"model {res['model_mean']:.4g}  sum R-hat {res['reward_hat_sum']:.4g}", file=sys.stderr)
    from baselines.runs import to_jsonable

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": dataset.name, "profile": args.profile, "seed": args.seed, "starts": int(starts.size),
            "threads": args.threads, "command": " ".join(sys.argv)}
    (args.out / "mechanism.json").write_text(json.dumps(to_jsonable({"meta": meta, "variants": results}),
                                                        indent=2))
    plot(results, args.out / "mechanism.png", title=f"DMEMM plans vs MuJoCo ({dataset.name}, {args.profile})")
    print(table(results))
    return results


def table(results: dict[str, Any]) -> str:
    lines = ["| variant | one-step MuJoCo error | open-loop e@1 | e@5 | e@10 | e@T | model error (T-hat) | "
             "sum R-hat | trained in s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        ol = np.asarray(r["open_loop_per_step"], dtype=float)
        at = [ol[t - 1] if t <= ol.size else float("nan") for t in (1, 5, 10)] + [ol[-1]]
        fit = "cache" if r["from_cache"] else f"{r['fit_seconds']:.0f}"
        lines.append(f"| {name} | {r['one_step_mean']:.4g} | " + " | ".join(f"{x:.4g}" for x in at)
                     + f" | {r['model_mean']:.4g} | {r['reward_hat_sum']:.4g} | {fit} |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, r in results.items():
        axes[0].plot(np.arange(1, len(r["one_step_per_step"]) + 1), r["one_step_per_step"], label=name)
        axes[1].plot(np.arange(1, len(r["open_loop_per_step"]) + 1), r["open_loop_per_step"], label=name)
    axes[0].set_title("one-step: ||T_sim(s_t, a_t) - s_t+1||^2")
    axes[1].set_title("open-loop replay: ||s_t - s_t^sim||^2")
    for ax in axes:
        ax.set_xlabel("plan step t")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
