"""The per-method measurements of :mod:`gpu_check` (benchmarks/gpu_check.py, which documents the JSON
and drives them): the shared :class:`Check`, the record helpers, the timing loop, the synthetic data,
the networks measured once and shared (world model, TD3+BC) and one ``bench_*`` function per method.

Every method trains and acts on ``Check.device``: the trajectory model and SynthER through their
configs' ``device``, the world model through ``train_world_model(device=...)``, the planners through
their configs' ``device`` (DMEMM, TD, AEPO; AEPO's d3rlpy IQL on ``cuda:0`` / ``cpu:0``), TD3+BC through
d3rlpy's device. ``ran_on`` records where each one's parameters actually were.

Imported by gpu_check.py, which puts the repository root and benchmarks/ on ``sys.path``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

OBS_DIM, ACT_DIM = 11, 3
#: The dataset a paper run is projected for, and its size (D4RL hopper-medium-replay-v2 transitions).
PAPER_DATASET = "hopper-medium-replay"
PAPER_TRANSITIONS = 402_000
#: The world model trains until early stopping (patience 7), so a real run has no fixed step count.
WORLD_EPOCHS_ASSUMED = 200


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
                          ran_on=rep["device"])
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


def planner_train(name: str, record: dict[str, Any], paper: Any, device: str,
                  iql_device: str | None = None) -> list[dict[str, Any]]:
    """The training measurements of a fitted planner's ``train_record``, with the paper's step counts;
    ``device`` (and AEPO's ``iql_device``, default ``device``) where they ran."""
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
                         paper.iql_steps, f"{src}.iql_steps", ran_on=iql_device or device),
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
    """A planner's training (budget fields set to N) and ``act`` at batch 1 and 10 (the evaluation batch),
    with its config's ``device`` set to ``ck.device`` (the networks and its world model train there)."""
    from bench_planner_latency import time_act

    from augment.planners.base import planner_class
    from augment.planners.run import PlanRunSettings
    from stores.recipe_budgets import budget_for

    cls = planner_class(name)
    paper = cls.default_config("paper", PAPER_DATASET)
    cfg = replace(cls.default_config("smoke", PAPER_DATASET), **TINY_PLANNERS[name]) if ck.tiny else paper
    cfg = replace(cfg, device=ck.device)
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
    iql_on = None
    if name == "aepo":
        params["iql"] = d3rlpy_parameters(planner.models.iql)
        iql_on = str(planner.models.iql.impl.device)
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
    world_on = planner.world.report.get("device") if planner.world is not None else None
    return {"parameters": params, "ran_on": ran_on,
            "train": planner_train(name, planner.train_record, paper, ran_on, iql_on), "generate": generate,
            "act": act, "config": planner.config.to_json(), "world_ran_on": world_on}


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
