"""One prepared device check: each method's paper-size networks on CUDA, a few hundred training steps,
one generation round or planning step each, the projected hours of a full paper run, as JSON.

    python3 benchmarks/gpu_check.py --out gpu_check.json            # CUDA, paper sizes, under 8 minutes
    python3 benchmarks/gpu_check.py --out gpu_check.json --methods dydiff,synther --steps 200
    OMP_NUM_THREADS=1 python3 benchmarks/gpu_check.py --out /tmp/c.json --device cpu --size tiny  # seconds

``--device`` cuda | cpu (default cuda when torch sees it); ``--size`` paper | tiny (default paper on CUDA,
else tiny: every network a few units wide); ``--steps`` the most timed steps per network (300 / 4);
``--methods`` a comma list of dydiff, synther, world, dmemm, td, aepo, td3bc; ``--budget-s`` (420):
methods that would start after it are "skipped: budget", a method running when it ends is stopped and
recorded as an error.

Data: random episodes of Hopper's sizes (obs 11, act 3; 100 x 1000 steps at paper size, so that one
world-model epoch spans the timed steps as in a real run), no download. Each method runs the project's
own trainers and samplers with its paper-profile config (``for_profile("paper",
"hopper-medium-replay")``), only step counts changed: per network an untimed warm-up of 2 steps, then N
timed steps (N = --steps, or fewer when N would overrun the method's share of the budget), timed by the
trainer's own loop clock (torch.cuda.synchronize around what is timed here).
Per method the JSON has parameters, ``train`` (per network: steps, seconds, steps/s, the paper run's
steps and where that number comes from), ``generate`` (one round; planners and TD3+BC: one ``act`` at
the evaluation batch of 10 envs; with the paper run's amount and its source), ``act`` (planners, batch 1
and 10), ``ran_on`` (the planners' trainers have no device option and run on the CPU), ``peak_gpu_mib``
and ``projected_hours`` = (sum_c paper_steps_c / (steps_c / seconds_c) + paper_samples / (samples /
seconds)) / 3600. DyDiff's run counts its world model, denoiser, TD3+BC's 1M updates and 2000 rounds
(world model and TD3+BC measured once, shared with ``world`` and ``td3bc``: see ``measured_in``); env
steps and checkpoints are not counted. The JSON is rewritten after each method; a table ends the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SCHEMA = "gpu_check/1"
METHODS: tuple[str, ...] = ("dydiff", "synther", "world", "dmemm", "td", "aepo", "td3bc")
OBS_DIM, ACT_DIM = 11, 3
#: The dataset a paper run is projected for, and its size (D4RL hopper-medium-replay-v2 transitions).
PAPER_DATASET = "hopper-medium-replay"
PAPER_TRANSITIONS = 402_000
#: The world model trains until early stopping (patience 7), so a real run has no fixed step count.
WORLD_EPOCHS_ASSUMED = 200
FORMULA = ("projected_hours = (sum over train[c] of paper_steps / (steps / seconds) "
           "+ generate.paper_samples / (generate.samples / generate.seconds)) / 3600")
SKIPPED = "skipped: budget"


class BudgetExceeded(Exception):
    """The global time budget ran out while a method was running."""


@dataclass
class Check:
    """What every method's check needs. device: ``cuda`` | ``cpu``; size: ``paper`` | ``tiny``;
    max_steps: the most timed training steps per network; warmup: untimed steps before them; slice_s: this
    method's share of the remaining budget (seconds); shared: networks measured once and reused."""

    device: str
    size: str
    max_steps: int
    warmup: int
    dataset: Any
    slice_s: float = 60.0
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def tiny(self) -> bool:
        return self.size == "tiny"



# --- records and arithmetic (pure) ---

def train_record(name: str, steps: int, seconds: float, paper_steps: int, source: str,
                 **extra: Any) -> dict[str, Any]:
    """One network's training measurement: ``steps`` in ``seconds`` and the paper run's ``paper_steps``."""
    return {"component": name, "steps": int(steps), "seconds": float(seconds),
            "steps_per_s": steps / seconds if seconds > 0 else math.nan, "paper_steps": int(paper_steps),
            "paper_steps_source": source, **extra}


def generation_record(what: str, samples: int, seconds: float, paper_samples: int, source: str,
                      **extra: Any) -> dict[str, Any]:
    """One generation round (or act call): ``samples`` in ``seconds``; the paper run makes
    ``paper_samples`` of the same unit."""
    return {"what": what, "samples": int(samples), "seconds": float(seconds),
            "samples_per_s": samples / seconds if seconds > 0 else math.nan,
            "paper_samples": int(paper_samples), "paper_samples_source": source, **extra}


def projected_hours(train: list[dict[str, Any]], generate: dict[str, Any]) -> float:
    """Hours of a full paper run at the measured rates (see :data:`FORMULA`)."""
    seconds = sum(c["paper_steps"] / c["steps_per_s"] for c in train)
    return (seconds + generate["paper_samples"] / generate["samples_per_s"]) / 3600.0


def choose_steps(seconds_per_step: float, budget_s: float, max_steps: int, min_steps: int = 3) -> int:
    """Timed steps for one network: ``max_steps``, or fewer (at least ``min(min_steps, max_steps)``) when
    ``seconds_per_step`` would overrun ``budget_s``."""
    if not seconds_per_step > 0:
        return max_steps
    return max(min(min_steps, max_steps), min(max_steps, int(budget_s / seconds_per_step)))


def world_steps_per_epoch(transitions: int, batch: int, ratio: float, max_holdout: int) -> int:
    """Steps of one full pass of :func:`augment.world.fit_ensemble`: ceil(train rows / batch) with
    min(ratio * N, max_holdout) rows held out."""
    holdout = max(1, min(int(ratio * transitions), max_holdout))
    return math.ceil((transitions - holdout) / batch)


def parameters(module: Any) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))


def d3rlpy_parameters(algo: Any) -> int:
    """Parameters of a d3rlpy algo's networks (target copies and optimisers left out)."""
    import torch

    mods = algo.impl._modules
    return int(sum(parameters(getattr(mods, f.name)) for f in dataclasses.fields(mods)
                   if not f.name.startswith("targ_") and isinstance(getattr(mods, f.name), torch.nn.Module)))


# --- machinery ---

def timed(fn: Callable[[], Any], device: str) -> tuple[Any, float]:
    """(fn(), wall seconds) with the device synchronised before and after."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def measure(run: Callable[[int], tuple[float, Any]], ck: Check, share: float) -> tuple[int, Any]:
    """Warm up with ``ck.warmup`` steps, then train N steps; returns (N, what the timed call returned).

    run(n) trains n steps and returns (the trainer's loop seconds, its result). N = ck.max_steps when the
    warm-up's rate says it fits ``share`` of the method's slice; else fewer, then once more with the count
    that the rate of that (warm) call allows when it reaches max_steps or doubles: a first step carries
    one-time costs (lazy imports of torch.optim, CUDA handles, the allocator).
    """
    warm, _ = run(ck.warmup)
    budget = share * ck.slice_s
    n = choose_steps(warm / ck.warmup, budget, ck.max_steps)
    seconds, out = run(n)
    if n < ck.max_steps:
        bigger = choose_steps(seconds / n, budget - seconds, ck.max_steps)
        if bigger >= min(2 * n, ck.max_steps):
            n, (seconds, out) = bigger, run(bigger)
    return n, out


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` in the main thread after ``seconds`` (no-op off the main thread)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise BudgetExceeded(f"stopped after {seconds:.0f} s: the time budget (--budget-s) ran out")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def synthetic_dataset(episodes: int, length: int, seed: int = 0) -> Any:
    """Random Hopper-sized episodes (obs 11, act 3 in [-1, 1], rewards ~ N(1, 0.5), heights near 1.25 so
    the Hopper termination rule keeps most states): their content does not matter for speed."""
    from stores.schema import Episode, OfflineDataset

    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(episodes):
        obs = (0.1 * rng.standard_normal((length + 1, OBS_DIM))).astype(np.float32)
        obs[:, 0] += 1.25
        truncated = np.zeros(length, bool)
        truncated[-1] = True
        actions = rng.uniform(-1, 1, (length, ACT_DIM)).astype(np.float32)
        rewards = rng.normal(1.0, 0.5, length).astype(np.float32)
        eps.append(Episode(obs, actions, rewards, np.zeros(length, bool), truncated))
    return OfflineDataset(name="gpu-check-random-hopper", episodes=tuple(eps), env_id="Hopper-v5",
                          provenance={"source": "benchmarks/gpu_check.py", "kind": "random"})


def paper_train_steps() -> int:
    from baselines.loop import TrainConfig

    return TrainConfig.for_profile("paper").steps


# --- networks measured once and shared: world model, TD3+BC ---

def world_config(ck: Check) -> Any:
    from augment.world import WorldModelConfig

    cfg = WorldModelConfig.for_profile("paper")
    if ck.tiny:
        cfg = replace(cfg, members=3, elites=2, hidden=(8, 8), batch_size=16, reward_hidden=(8, 8),
                      reward_batch_size=16)
    return cfg


def trained_world(ck: Check) -> dict[str, Any]:
    """The paper-size world model (dynamics ensemble + reward model) trained N steps on ``ck.device``."""
    if "world" in ck.shared:
        return ck.shared["world"]
    from augment.world import train_world_model

    cfg = world_config(ck)
    n_train = ck.dataset.num_transitions - max(1, min(int(cfg.holdout_ratio * ck.dataset.num_transitions),
                                                      cfg.max_holdout))

    def run(steps: int) -> tuple[float, Any]:  # epochs of at most one full pass, early stopping off
        epochs = math.ceil(steps / math.ceil(n_train / min(cfg.batch_size, n_train)))
        per_epoch = math.ceil(steps / epochs)
        budget = replace(cfg, max_epochs=epochs, steps_per_epoch=per_epoch, reward_max_epochs=epochs,
                         reward_steps_per_epoch=per_epoch, patience=epochs + 1)
        model = train_world_model(ck.dataset, budget, progress=False, device=ck.device)
        return model.report["dynamics"]["seconds"] + model.report["reward"]["seconds"], model

    _, world = measure(run, ck, 0.1)
    rep = world.report
    paper = world_config(replace(ck, size="paper"))
    spe = world_steps_per_epoch(PAPER_TRANSITIONS, paper.batch_size, paper.holdout_ratio, paper.max_holdout)
    spe_r = world_steps_per_epoch(PAPER_TRANSITIONS, paper.reward_batch_size, paper.holdout_ratio,
                                  paper.max_holdout)
    source = (f"assumed {WORLD_EPOCHS_ASSUMED} epochs (early stopping decides in a real run) x "
              f"{{}} steps per full pass over {PAPER_DATASET} ({PAPER_TRANSITIONS:,} transitions, "
              "WorldModelConfig.for_profile('paper') batch and holdout)")
    train = [train_record(f"world {key} (Eq. {eq})", rep[key]["steps"], rep[key]["seconds"],
                          WORLD_EPOCHS_ASSUMED * per, source.format(per), measured_in="world",
                          ran_on=ck.device)
             for key, eq, per in (("dynamics", 5, spe), ("reward", 10, spe_r))]
    ck.shared["world"] = {"model": world, "train": train, "config": cfg.to_json(),
                          "parameters": {"dynamics_ensemble": parameters(world.dynamics),
                                         "reward_model": parameters(world.reward)}}
    return ck.shared["world"]


def trained_learner(ck: Check) -> dict[str, Any]:
    """TD3+BC (baselines.learners: d3rlpy, the paper's networks) on ``ck.device`` and N updates on the
    loop's sampler (``algo.update(sampler.sample())``, as baselines.loop does)."""
    if "td3bc" in ck.shared:
        return ck.shared["td3bc"]
    from baselines.learners import make_learner
    from baselines.sampler import MixedSampler

    algo = make_learner("td3bc", ck.dataset, seed=0, device=f"{ck.device}:0",
                        batch_size=16 if ck.tiny else 256, total_steps=paper_train_steps())
    sampler = MixedSampler(ck.dataset.transitions, batch_size=int(algo.config.batch_size), real_ratio=1.0,
                           seed=0)

    def run(n: int) -> tuple[float, float]:
        _, seconds = timed(lambda: [algo.update(sampler.sample()) for _ in range(n)], ck.device)
        return seconds, seconds

    n, seconds = measure(run, ck, 0.1)
    train = train_record("TD3+BC updates (d3rlpy)", n, seconds, paper_train_steps(),
                         "TrainConfig.for_profile('paper').steps", measured_in="td3bc",
                         ran_on=str(algo.impl.device))
    ck.shared["td3bc"] = {"algo": algo, "parameters": {"td3bc": d3rlpy_parameters(algo)}, "train": [train]}
    return ck.shared["td3bc"]


# --- the methods ---

def bench_dydiff(ck: Check) -> dict[str, Any]:
    """World model + trajectory denoiser (Eq. 4) + TD3+BC, and one DyDiff round of B_r trajectories."""
    from augment.diffusion.trajectory import TrajectoryDiffusionConfig, fit_trajectory_diffusion
    from augment.generators.dydiff import DyDiffConfig, DyDiffGenerator
    from baselines.learners import rollout_policy

    paper_dy = DyDiffConfig.for_profile("paper", PAPER_DATASET)
    paper_diff = TrajectoryDiffusionConfig.for_profile("paper")
    dy, diff = paper_dy, paper_diff
    if ck.tiny:
        dy = replace(dy, rollout_batch=8, rollout_length=8, sample_batch=8)
        diff = replace(diff, widths=(4, 8), batch_size=8, warmup_steps=1, edm=replace(diff.edm, num_steps=2))
    diff = replace(diff, horizon=dy.rollout_length, device=ck.device)
    world = trained_world(ck)
    learn = trained_learner(ck)

    def run(steps: int) -> tuple[float, Any]:
        model = fit_trajectory_diffusion(ck.dataset, replace(diff, train_steps=steps), progress=False,
                                         cache=False)
        return model.meta["train_seconds"], model

    n, model = measure(run, ck, 0.4)
    unet = train_record("trajectory U-Net (Eq. 4)", n, model.meta["train_seconds"], paper_diff.train_steps,
                        "TrajectoryDiffusionConfig.for_profile('paper').train_steps",
                        ran_on=str(model.device))
    train = [unet, *world["train"], *learn["train"]]
    gen = DyDiffGenerator(dy, world_config=world["model"].config, diffusion_config=model.config,
                          progress=False)
    gen.attach(ck.dataset, world["model"], model)
    policy = rollout_policy(learn["algo"], "td3bc")
    rng = np.random.default_rng(0)
    gen.generate(min(2, dy.rollout_batch), policy, rng)  # warm-up
    batch, seconds = timed(lambda: gen.generate(dy.rollout_batch, policy, rng), ck.device)
    rounds = paper_train_steps() // paper_dy.rollout_interval
    generate = generation_record(
        f"one DyDiff round (Algorithm 1, M={dy.iterations}): trajectories of L={dy.rollout_length}",
        dy.rollout_batch, seconds, rounds * paper_dy.rollout_batch,
        f"{rounds} rounds (TrainConfig.for_profile('paper').steps / DyDiffConfig.for_profile('paper', "
        f"'{PAPER_DATASET}').rollout_interval) x rollout_batch {paper_dy.rollout_batch}",
        kept=batch.batch_size, transitions=batch.num_transitions, stage_seconds=gen.last_round.seconds,
        network_evaluations_per_trajectory=gen.network_evaluations())
    return {"parameters": {"trajectory_unet": parameters(model.network), **world["parameters"],
                           **learn["parameters"]},
            "ran_on": str(model.device), "train": train, "generate": generate,
            "config": {"dydiff": dy.to_json(), "diffusion": diff.to_json(), "world": world["config"]},
            "reference": "DyDiff paper: ~20 h per task on one RTX 3080 Ti (REFERENCE section 6)"}


def bench_synther(ck: Check) -> dict[str, Any]:
    """SynthER's residual-MLP denoiser (EDM loss) and one batch of sampled transitions."""
    from augment.generators.arms import SYNTHER_TRANSITIONS
    from augment.generators.synther import SynthERConfig, SynthERGenerator, train_synther

    paper = SynthERConfig.for_profile("paper", PAPER_DATASET)
    cfg = replace(paper, device=ck.device)
    if ck.tiny:
        cfg = replace(cfg, width=8, blocks=1, emb_dim=4, batch_size=16, sample_batch=64,
                      edm=replace(cfg.edm, num_steps=2))

    def run(steps: int) -> tuple[float, Any]:
        model = train_synther(ck.dataset, replace(cfg, train_steps=steps), progress=False)
        return model.meta["train_seconds"], model

    n, model = measure(run, ck, 0.5)
    gen = SynthERGenerator(cfg, progress=False)
    gen.model, gen.env_id, gen.dataset_name = model, ck.dataset.env_id, ck.dataset.name
    rng = np.random.default_rng(0)
    gen.generate(min(256, cfg.sample_batch), rng=rng)  # warm-up
    _, seconds = timed(lambda: gen.generate(cfg.sample_batch, rng=rng), ck.device)
    return {"parameters": {"denoiser": parameters(model.network)}, "ran_on": str(model.device),
            "train": [train_record("residual MLP denoiser (EDM loss)", n, model.meta["train_seconds"],
                                   paper.train_steps, "SynthERConfig.for_profile('paper').train_steps",
                                   ran_on=str(model.device))],
            "generate": generation_record(
                f"one sample batch of transitions (N={cfg.edm.num_steps} Heun steps, "
                f"{model.network_evaluations_per_sample} denoiser calls)", cfg.sample_batch, seconds,
                SYNTHER_TRANSITIONS["paper"], "augment.generators.arms.SYNTHER_TRANSITIONS['paper']"),
            "config": {k: v for k, v in cfg.to_json().items() if k != "notes"}}


def bench_world(ck: Check) -> dict[str, Any]:
    """The world model alone, and one MBPO-style round of the single-step rollout generator."""
    from augment.generators.rollout import RolloutConfig, RolloutGenerator
    from baselines.learners import rollout_policy

    world = trained_world(ck)
    paper = RolloutConfig.for_profile("paper", PAPER_DATASET)
    cfg = replace(paper, rollout_batch=16) if ck.tiny else paper
    gen = RolloutGenerator(cfg, world_config=world["model"].config, progress=False)
    gen.attach(ck.dataset, world["model"])
    policy = rollout_policy(trained_learner(ck)["algo"], "td3bc")
    rng = np.random.default_rng(0)
    gen.generate(2, policy, rng)  # warm-up
    _, seconds = timed(lambda: gen.generate(cfg.rollout_batch, policy, rng), ck.device)
    rounds = paper_train_steps() // paper.rollout_interval
    return {"parameters": dict(world["parameters"]), "ran_on": ck.device, "train": list(world["train"]),
            "generate": generation_record(
                f"one single-step rollout round (RolloutGenerator, h={cfg.horizon}; the world model predicts "
                "on the CPU)", cfg.rollout_batch, seconds, rounds * paper.rollout_batch,
                f"{rounds} rounds (TrainConfig paper steps / RolloutConfig.for_profile('paper', "
                f"'{PAPER_DATASET}').rollout_interval) x rollout_batch {paper.rollout_batch}"),
            "config": world["config"]}


#: Field overrides that shrink each planner's smoke config to a few units per layer (``--size tiny``).
TINY_PLANNERS: dict[str, dict[str, Any]] = {
    "dmemm": {"widths": (4, 8), "batch_size": 4, "diffusion_steps": 3},
    "td": {"gpt_embed": 4, "gpt_heads": 2, "unet_widths": (4, 8), "inverse_hidden": (8, 8),
           "critic_hidden": (8, 8), "batch_size": 4},
    "aepo": {"eps_width": 8, "eps_blocks": 1, "eps_batch": 16, "iql_hidden": (8, 8),
             "iql_actor_hidden": (8, 8), "iql_batch": 16, "energy_hidden": (8, 8), "energy_batch": 16,
             "table_points": 4, "table_samples": 32},
}


def planner_train(name: str, record: dict[str, Any], paper: Any, device: str) -> list[dict[str, Any]]:
    """The training measurements of a fitted planner's ``train_record``, with the paper's step counts."""
    src = f"{type(paper).__name__}.for_profile('paper', '{PAPER_DATASET}')"
    if name == "dmemm":
        return [train_record("DMEMM U-Net (Eq. 12)", record["train_steps"], record["train_seconds"],
                             paper.train_steps, f"{src}.train_steps", ran_on=device)]
    if name == "td":
        return [train_record("GPT + U-Net + f_phi + critic (one step trains all four)", record["train_steps"],
                             record["seconds"], paper.train_steps, f"{src}.train_steps", ran_on=device)]
    return [train_record("eps_theta (Eq. 7)", record["eps_theta"]["steps"], record["eps_theta"]["seconds"],
                         paper.eps_steps, f"{src}.eps_steps", ran_on=device),
            train_record("IQL critics (d3rlpy, Eq. 27)", record["iql"]["steps"], record["iql"]["seconds"],
                         paper.iql_steps, f"{src}.iql_steps", ran_on=device),
            train_record("sigma~^2 table (Eq. 22), one estimate", 1, record["table"]["seconds"], 1,
                         "one table per run", ran_on=device),
            train_record("energy E_Theta (Eq. 26)", record["energy"]["steps"], record["energy"]["seconds"],
                         paper.energy_steps, f"{src}.energy_steps", ran_on=device)]


def planner_networks(name: str, planner: Any) -> dict[str, Any]:
    """name -> torch module of a fitted planner's networks (d3rlpy IQL counted separately)."""
    if name == "dmemm":
        return {"unet": planner.network}
    if name == "td":
        return {k: getattr(planner, k) for k in ("gpt", "unet", "inverse_dynamics", "critic")}
    return {"eps_theta": planner.models.eps_net, "energy": planner.models.energy_net}


def bench_planner(ck: Check, name: str) -> dict[str, Any]:
    """A planner's training (budget fields set to N) and ``act`` at batch 1 and 10 (the evaluation batch)."""
    from bench_planner_latency import time_act

    from augment.planners.base import planner_class
    from augment.planners.run import PlanRunSettings
    from stores.recipe_budgets import budget_for

    cls = planner_class(name)
    paper = cls.default_config("paper", PAPER_DATASET)
    cfg = replace(cls.default_config("smoke", PAPER_DATASET), **TINY_PLANNERS[name]) if ck.tiny else paper
    fields = cfg.training_budget_fields()
    world = {"max_epochs": 1, "steps_per_epoch": 1, "reward_max_epochs": 1, "reward_steps_per_epoch": 1}
    if ck.tiny:
        world.update(members=3, elites=2, hidden=(8, 8), reward_hidden=(8, 8), batch_size=16,
                     reward_batch_size=16)

    def run(steps: int) -> tuple[float, Any]:
        planner = cls(replace(cfg, **{f: steps for f in fields}), progress=False)
        planner.world_overrides = dict(world)  # the shared world model is DyDiff's; here one step of it
        planner.fit(ck.dataset, cache=False)
        comps = planner_train(name, planner.train_record, paper, "")
        return sum(c["seconds"] for c in comps if c["paper_steps"] > 1), planner

    _, planner = measure(run, ck, 0.5)
    nets = planner_networks(name, planner)
    ran_on = str(next(next(iter(nets.values())).parameters()).device)
    params = {k: parameters(v) for k, v in nets.items()}
    if name == "aepo":
        params["iql"] = d3rlpy_parameters(planner.models.iql)
    obs = ck.dataset.transitions.observations
    settings = PlanRunSettings.for_profile("paper")
    act = {}
    for b in sorted({1, settings.envs}):
        seconds, calls = time_act(planner, obs[:b], 1 if ck.tiny else 2)
        act[str(b)] = {"seconds_per_act_call": seconds, "actions_per_s": b / seconds,
                       "network_calls_per_act_call": calls}
    steps = budget_for("paper").max_episode_steps
    generate = generation_record(
        f"evaluation acting: one act call at batch {settings.envs} (median of timed calls)", settings.envs,
        act[str(settings.envs)]["seconds_per_act_call"], settings.episodes * steps,
        f"PlanRunSettings.for_profile('paper').episodes ({settings.episodes}) x max_episode_steps ({steps}, "
        "stores.recipe_budgets.budget_for('paper')), played by batches of PlanRunSettings envs")
    return {"parameters": params, "ran_on": ran_on,
            "train": planner_train(name, planner.train_record, paper, ran_on), "generate": generate,
            "act": act, "config": planner.config.to_json(),
            "note": None if ran_on.startswith(ck.device) else
            f"the {name} trainer and planner have no device option: they ran on the CPU"}


def bench_td3bc(ck: Check) -> dict[str, Any]:
    """TD3+BC updates and its evaluation acting (``LearnerPolicy.act`` at the evaluation batch)."""
    from baselines.learners import LearnerPolicy
    from baselines.loop import TrainConfig
    from stores.recipe_budgets import budget_for

    learn = trained_learner(ck)
    tc = TrainConfig.for_profile("paper")
    policy = LearnerPolicy(learn["algo"])
    obs = ck.dataset.transitions.observations[:tc.eval_envs]
    policy.act(obs)  # warm-up
    repeats = 2 if ck.tiny else 50
    _, seconds = timed(lambda: [policy.act(obs) for _ in range(repeats)], ck.device)
    steps = budget_for("paper").max_episode_steps
    evaluations = tc.steps // tc.eval_every
    return {"parameters": dict(learn["parameters"]), "ran_on": str(learn["algo"].impl.device),
            "train": list(learn["train"]),
            "generate": generation_record(
                f"evaluation acting: {repeats} act calls at batch {tc.eval_envs}", repeats * tc.eval_envs,
                seconds, evaluations * tc.eval_episodes * steps,
                f"{evaluations} evaluations (TrainConfig paper steps / eval_every) x eval_episodes "
                f"{tc.eval_episodes} x max_episode_steps {steps} (stores.recipe_budgets, paper)")}


BENCHES: dict[str, Callable[[Check], dict[str, Any]]] = {
    "dydiff": bench_dydiff, "synther": bench_synther, "world": bench_world,
    "dmemm": lambda ck: bench_planner(ck, "dmemm"), "td": lambda ck: bench_planner(ck, "td"),
    "aepo": lambda ck: bench_planner(ck, "aepo"), "td3bc": bench_td3bc,
}


# --- driver ---

def run_method(name: str, ck: Check, seconds_left: float) -> dict[str, Any]:
    """One method's record: its measurements and projection, or ``error`` (the check goes on)."""
    import torch

    cuda = ck.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        with deadline(seconds_left):
            out = BENCHES[name](ck)
        out = {"status": "ok", **out}
        out["steps_per_s"] = out["train"][0]["steps_per_s"]
        out["samples_per_s"] = out["generate"]["samples_per_s"]
        out["projected_hours"] = projected_hours(out["train"], out["generate"])
    except Exception as exc:  # one method's failure is recorded; the others still run
        out = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc(limit=-4)}
    out["wall_s"] = time.perf_counter() - t0
    out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None
    return out


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` atomically (baselines.runs.write_json: NaN becomes null)."""
    from baselines.runs import write_json as write_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, record)


def table(record: dict[str, Any]) -> str:
    """A markdown table of the methods' headline numbers."""
    lines = ["| method | status | ran on | parameters | steps/s (first net) | samples/s | peak GPU MiB | "
             "paper run h |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

    for name, m in record["methods"].items():
        params = sum(m.get("parameters", {}).values()) if m.get("parameters") else None
        status = m["status"] if m["status"] != "error" else f"error: {m['error'][:50]}"
        lines.append(f"| {name} | {status} | {m.get('ran_on', '-')} | {f(params, ',')} | "
                     f"{f(m.get('steps_per_s'), '.1f')} | {f(m.get('samples_per_s'), '.1f')} | "
                     f"{f(m.get('peak_gpu_mib'), '.0f')} | {f(m.get('projected_hours'), '.1f')} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write (rewritten per method)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None)
    parser.add_argument("--size", choices=("paper", "tiny"), default=None)
    parser.add_argument("--steps", type=int, default=None, help="most timed training steps per network")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--budget-s", type=float, default=420.0)
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the check; returns the record it wrote to ``--out``."""
    start = time.perf_counter()
    args = parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device; use --device cpu --size tiny")
    size = args.size or ("paper" if device == "cuda" else "tiny")
    steps = args.steps or (300 if size == "paper" else 4)
    torch.manual_seed(0)
    record: dict[str, Any] = {
        "schema": SCHEMA, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "size": size,
        "max_steps": steps, "warmup_steps": 1 if size == "tiny" else 2, "budget_s": args.budget_s,
        "data": None, "paper_reference": {
            "dataset": PAPER_DATASET, "transitions": PAPER_TRANSITIONS,
            "transitions_source": "D4RL hopper-medium-replay-v2",
            "world_epochs_assumed": WORLD_EPOCHS_ASSUMED},
        "formula": FORMULA, "methods": {}}
    home = tempfile.mkdtemp(prefix="gpu-check-home-")
    previous_home = os.environ.get("AUGMENT_HOME")
    os.environ["AUGMENT_HOME"] = home  # nothing trained here touches the user's caches
    try:
        episodes, length = (4, 24) if size == "tiny" else (100, 1000)
        dataset = synthetic_dataset(episodes, length)
        record["data"] = {"kind": "synthetic random, Hopper sizes", "obs_dim": OBS_DIM, "act_dim": ACT_DIM,
                          "episodes": episodes, "transitions": dataset.num_transitions}
        ck = Check(device=device, size=size, max_steps=steps, warmup=record["warmup_steps"], dataset=dataset)
        for i, name in enumerate(args.methods):
            left = args.budget_s - (time.perf_counter() - start)
            if left <= 0:
                record["methods"][name] = {"status": SKIPPED}
            else:
                ck.slice_s = left / (len(args.methods) - i)
                print(f"gpu_check: {name} ({size}, {device}, {left:.0f} s left)", file=sys.stderr, flush=True)
                record["methods"][name] = run_method(name, ck, left)
            write_json(args.out, record)
    finally:
        if previous_home is None:
            os.environ.pop("AUGMENT_HOME", None)
        else:
            os.environ["AUGMENT_HOME"] = previous_home
        shutil.rmtree(home, ignore_errors=True)
    record["wall_s"] = time.perf_counter() - start
    write_json(args.out, record)
    print(table(record))
    print(f"wrote {args.out} ({record['wall_s']:.1f} s)")
    return record


if __name__ == "__main__":
    main()
