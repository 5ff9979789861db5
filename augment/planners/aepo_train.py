"""AEPO's staged training (Algorithm 1 reorganised, PLANNERS.md Sec. 3.7-3.8) and its trained bundle.

Stages, each on the whole dataset:

1. eps_theta(s, a_t, t) by Eq. 7: t ~ U(t_min, 1), a_t = alpha_t a_0 + sigma_t eps, MSE on eps;
2. d3rlpy IQL (Eq. 27) with the project's learner config (:mod:`augment.planners.aepo_critic`);
   stages 1 and 2 are independent;
3. the sigma~^2(t) table from the trained eps_theta (Eq. 22, or Eq. 24 for posterior 2), clamped to
   [0, Var(a_0)];
4. E_Theta(s, a_t, t) regressed (Eq. 26) on the target of Eq. 25, computed each step on a fresh batch
   under autograd (Q and Q'(s, a_0) through d3rlpy's Q forwarder) and detached; optionally minus the
   state-only baseline beta V(s) (pitfall 3; it leaves grad_a unchanged).

Algorithm 1 interleaves all four in one loop; staging means E_Theta never regresses on targets that
drift while eps_theta and Q still train (pitfall 6).

Every stage runs on one ``device`` (d3rlpy's IQL on its ``cuda:N`` / ``cpu:0`` name); batches, times and
noise are drawn on the CPU (seeded generators) and moved there, so the CPU numbers do not depend on it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augment.diffusion.dpm_solver import VPSchedule
from augment.diffusion.training import cpu_state, fit_steps
from augment.planners.aepo_critic import IQLCritic, iql_config, make_iql, train_iql
from augment.planners.aepo_math import (
    SigmaTable,
    action_variance,
    energy_target_from_q,
    estimate_sigma_table,
    posterior_mean,
)
from augment.planners.aepo_nets import EnergyNet, StateEpsNet
from augment.planners.devices import d3rlpy_device
from baselines.seeding import derive_seed
from stores.errors import UserInputError
from stores.schema import OfflineDataset

Tensor = torch.Tensor
CPU = torch.device("cpu")


def action_box(act_min: np.ndarray, act_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The box actions are clipped to: [-1, 1]^d when the dataset's actions lie inside it (MuJoCo
    locomotion), else the dataset's per-dimension range."""
    lo, hi = np.asarray(act_min, np.float32), np.asarray(act_max, np.float32)
    if (lo >= -1.0 - 1e-6).all() and (hi <= 1.0 + 1e-6).all():
        return -np.ones_like(lo), np.ones_like(hi)
    return lo, hi


@dataclass
class AEPOModels:
    """Everything AEPO trained: eps_theta, E_Theta, the sigma~^2 table, d3rlpy IQL and the normaliser.

    obs_mean, obs_std: (obs,) standardisation of the states the two nets see; low, high: (d,) action box;
    var_a0, u0: Var(a_0) and the mean action (Eq. 24); schedule: the VP schedule; device: where the two
    nets (and IQL) live; :meth:`norm_obs` and :meth:`box` return tensors there.
    """

    eps_net: StateEpsNet
    energy_net: EnergyNet
    table: SigmaTable
    iql: Any
    critic: IQLCritic
    obs_mean: np.ndarray
    obs_std: np.ndarray
    low: np.ndarray
    high: np.ndarray
    var_a0: float
    u0: np.ndarray
    schedule: VPSchedule
    device: torch.device = CPU

    def norm_obs(self, obs: np.ndarray | Tensor) -> Tensor:
        """(B, obs) raw -> standardised float32 tensor on :attr:`device`."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        return ((x - torch.from_numpy(self.obs_mean)) / torch.from_numpy(self.obs_std)).to(self.device)

    def box(self) -> tuple[Tensor, Tensor]:
        """The action box (low (d,), high (d,)) on :attr:`device`."""
        return torch.from_numpy(self.low).to(self.device), torch.from_numpy(self.high).to(self.device)

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, net in (("eps_theta", self.eps_net), ("energy", self.energy_net)):
            torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, d / f"{name}.pt")
        self.iql.save(str(d / "iql.d3"))
        meta = {"obs_mean": self.obs_mean.tolist(), "obs_std": self.obs_std.tolist(),
                "low": self.low.tolist(), "high": self.high.tolist(), "var_a0": self.var_a0,
                "u0": self.u0.tolist(),
                "schedule": {"beta_min": self.schedule.beta_min, "beta_max": self.schedule.beta_max,
                             "T": self.schedule.T, "eps": self.schedule.eps},
                "table": self.table.to_json(), "q_reduction": self.critic.reduction}
        (d / "aepo_models.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path, config: Any, obs_dim: int, act_dim: int,
             device: torch.device = CPU) -> AEPOModels:
        """Read what :meth:`save` wrote, onto ``device``."""
        import d3rlpy

        d = Path(directory)
        if not (d / "aepo_models.json").is_file():
            raise UserInputError(f"{d} holds no AEPO models (aepo_models.json missing)")
        meta = json.loads((d / "aepo_models.json").read_text())
        eps_net, energy_net = build_networks(config, obs_dim, act_dim)
        eps_net.load_state_dict(torch.load(d / "eps_theta.pt", map_location="cpu", weights_only=True))
        energy_net.load_state_dict(torch.load(d / "energy.pt", map_location="cpu", weights_only=True))
        iql = d3rlpy.load_learnable(str(d / "iql.d3"), device=d3rlpy_device(device))
        return cls(eps_net=eps_net.to(device).eval(), energy_net=energy_net.to(device).eval(),
                   table=SigmaTable.from_json(meta["table"]), iql=iql,
                   critic=IQLCritic(iql, meta["q_reduction"]),
                   obs_mean=np.asarray(meta["obs_mean"], np.float32),
                   obs_std=np.asarray(meta["obs_std"], np.float32),
                   low=np.asarray(meta["low"], np.float32), high=np.asarray(meta["high"], np.float32),
                   var_a0=float(meta["var_a0"]), u0=np.asarray(meta["u0"], np.float64),
                   schedule=VPSchedule(**meta["schedule"]), device=device)


def build_networks(config: Any, obs_dim: int, act_dim: int) -> tuple[StateEpsNet, EnergyNet]:
    """eps_theta and E_Theta at the config's widths, initialised on the CPU from ``config.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(int(config.seed), "aepo-init"))
        eps_net = StateEpsNet(obs_dim, act_dim, int(config.eps_width), int(config.eps_blocks))
        energy_net = EnergyNet(obs_dim, act_dim, tuple(config.energy_hidden))
    return eps_net, energy_net


def _ramp(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / max(1, warmup))


def _adam_steps(net: torch.nn.Module, loss_of_batch: Callable[[], Tensor], *, steps: int, lr: float,
                desc: str, progress: bool) -> tuple[float, list[tuple[int, float]]]:
    """The loop both stages share: ``steps`` Adam steps on ``loss_of_batch()`` (a fresh batch each) in train
    mode, lr with a linear warm-up over the first 1% of the steps, gradient norm clipped at 1; the loss
    smoothed at rate 0.01 and recorded every 100 steps and at the last. Leaves ``net`` in eval mode;
    returns (final running loss, history)."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    history, running = fit_steps(net, opt, lambda step: loss_of_batch(), first_step=0, train_steps=steps,
                                 lr_at=lambda step: lr * _ramp(step, steps // 100), grad_clip=1.0, rate=0.01,
                                 every=100, desc=desc, progress=progress)
    net.eval()
    return running, history


def train_eps(net: StateEpsNet, s: Tensor, a0: Tensor, schedule: VPSchedule, *, steps: int, batch: int,
              lr: float, seed: int, progress: bool) -> dict[str, Any]:
    """Stage 1, Eq. 7: minimise ||eps_theta(s, alpha_t a_0 + sigma_t eps, t) - eps||^2 with t ~ U(t_min, 1).

    s: (N, obs) standardised states, a0: (N, d) actions, both on the net's device. Adam at ``lr`` with a
    1% linear warm-up and gradient norm clipped at 1. Returns a record (final running loss, seconds).
    """
    gen = torch.Generator().manual_seed(seed)
    n = a0.shape[0]
    dev = a0.device
    t0 = time.perf_counter()

    def loss_of_batch() -> Tensor:
        idx = torch.randint(0, n, (batch,), generator=gen).to(dev)
        t = schedule.sample_t(batch, generator=gen).to(dev)
        noise = torch.randn(batch, a0.shape[1], generator=gen).to(dev)
        alpha = schedule.alpha(t).float()[:, None]
        sigma = schedule.sigma(t).float()[:, None]
        a_t = alpha * a0[idx] + sigma * noise
        return ((net(s[idx], a_t, t.float()) - noise) ** 2).sum(dim=-1).mean()

    running, history = _adam_steps(net, loss_of_batch, steps=int(steps), lr=lr,
                                   desc="AEPO: eps_theta (Eq. 7)", progress=progress)
    return {"steps": int(steps), "final_loss": running, "seconds": time.perf_counter() - t0,
            "loss_history": history}


def energy_batch_targets(models: AEPOModels, s_raw: Tensor, s_n: Tensor, a0: Tensor, t: Tensor, noise: Tensor,
                         *, beta: float, nu: float, clip_mu: bool, baseline: str) -> tuple[Tensor, Tensor]:
    """(a_t, target) for one batch: a_t = alpha_t a_0 + sigma_t eps, mu~ by Eq. 18 (clipped to the action
    box when ``clip_mu``), sigma~^2(t) from the table, Eq. 25 with Eq. 46 (detached), minus beta V(s) when
    ``baseline == "value"``. Shapes: (B, obs), (B, obs), (B, d), (B,), (B, d) -> (B, d), (B,)."""
    sch = models.schedule
    alpha = sch.alpha(t).float()[:, None]
    sigma = sch.sigma(t).float()[:, None]
    a_t = alpha * a0 + sigma * noise
    with torch.no_grad():
        mu = posterior_mean(a_t, models.eps_net(s_n, a_t, t), alpha, sigma)
        if clip_mu:
            low, high = models.box()
            mu = torch.clamp(mu, low, high)
    var = models.table(t)
    target = energy_target_from_q(models.critic.q, s_raw, a0, mu, var, beta=beta, nu=nu)
    if baseline == "value":
        with torch.no_grad():
            target = target - beta * models.critic.v(s_raw)
    return a_t, target.detach()


def train_energy(models: AEPOModels, s_raw: Tensor, s_n: Tensor, a0: Tensor, *, steps: int, batch: int,
                 lr: float, beta: float, nu: float, clip_mu: bool, baseline: str, seed: int,
                 progress: bool) -> dict[str, Any]:
    """Stage 4, Eq. 26: regress E_Theta(s, a_t, t) on the Eq. 25 target of fresh batches.

    The output map (shift, scale) is fixed first from the mean and std of 4 calibration batches of
    targets; the loss is the MSE of the standardised target. Returns a record (loss, target statistics).
    """
    net = models.energy_net
    gen = torch.Generator().manual_seed(seed)
    n = a0.shape[0]
    sch = models.schedule
    dev = a0.device

    def draw(b: int) -> tuple[Tensor, Tensor, Tensor]:
        idx = torch.randint(0, n, (b,), generator=gen).to(dev)
        t = sch.sample_t(b, generator=gen).float().to(dev)
        noise = torch.randn(b, a0.shape[1], generator=gen).to(dev)
        a_t, target = energy_batch_targets(models, s_raw[idx], s_n[idx], a0[idx], t, noise, beta=beta, nu=nu,
                                           clip_mu=clip_mu, baseline=baseline)
        return torch.cat([s_n[idx], a_t, t[:, None]], dim=-1), target, idx

    calib = torch.cat([draw(batch)[1] for _ in range(4)])
    shift, scale = float(calib.mean()), float(calib.std()) if calib.numel() > 1 else 1.0
    if not math.isfinite(scale) or scale < 1e-6:
        scale = 1.0
    net.set_output_affine(shift, scale)
    obs_dim = s_n.shape[1]
    d = a0.shape[1]
    t0 = time.perf_counter()

    def loss_of_batch() -> Tensor:
        packed, target, _ = draw(batch)
        s_b, a_b, t_b = packed[:, :obs_dim], packed[:, obs_dim:obs_dim + d], packed[:, -1]
        return ((net.raw(s_b, a_b, t_b) - (target - shift) / scale) ** 2).mean()

    running, history = _adam_steps(net, loss_of_batch, steps=int(steps), lr=lr,
                                   desc="AEPO: energy E_Theta (Eq. 26)", progress=progress)
    return {"steps": int(steps), "final_loss_standardised": running, "target_mean": shift,
            "target_std": scale, "seconds": time.perf_counter() - t0, "loss_history": history}


def train_aepo(dataset: OfflineDataset, config: Any, *, progress: bool = True,
               device: torch.device = CPU, checkpoint: Any = None) -> tuple[AEPOModels, dict]:
    """Run the four stages on ``dataset`` on ``device`` (see the module docstring); returns (models,
    record).

    checkpoint (a :class:`augment.planners.checkpoint.TrainingCheckpoint`): the finished stages are
    saved there (eps_theta after stage 1, d3rlpy's IQL file next to it after stage 2) and a later call
    skips what it finds; each stage draws from its own seeded generators, so the models equal an
    uninterrupted run's. ``record["resumed_stages"]`` lists the stages loaded.
    """
    import d3rlpy
    tr = dataset.transitions
    stats = dataset.stats
    schedule = VPSchedule(config.beta_min, config.beta_max, 1.0, config.t_min)
    obs_mean, obs_std = stats.obs_mean.astype(np.float32), stats.obs_std.astype(np.float32)
    low, high = action_box(stats.act_min, stats.act_max)
    var_a0, u0 = action_variance(tr.actions)
    s_raw = torch.from_numpy(np.ascontiguousarray(tr.observations, dtype=np.float32))
    s_n = ((s_raw - torch.from_numpy(obs_mean)) / torch.from_numpy(obs_std)).to(device)
    s_raw = s_raw.to(device)
    a0 = torch.from_numpy(np.ascontiguousarray(tr.actions, dtype=np.float32)).to(device)
    seed = int(config.seed)
    record: dict[str, Any] = {"dataset": dataset.name, "dataset_hash": dataset.content_hash,
                              "transitions": len(tr), "var_a0": var_a0,
                              "action_box": [low.tolist(), high.tolist()]}

    eps_net, energy_net = (net.to(device) for net in build_networks(config, dataset.observation_size,
                                                                     dataset.action_size))
    saved = checkpoint.load() if checkpoint is not None else None
    done = int(saved["step"]) if saved is not None else 0
    record["resumed_stages"] = ["eps_theta", "iql"][:done]
    if done >= 1:
        eps_net.load_state_dict(saved["eps_theta"])
        eps_net.eval()
        record["eps_theta"] = saved["records"]["eps_theta"]
    else:
        record["eps_theta"] = train_eps(eps_net, s_n, a0, schedule, steps=int(config.eps_steps),
                                        batch=int(config.eps_batch), lr=float(config.eps_lr),
                                        seed=derive_seed(seed, "aepo-eps"), progress=progress)
        if checkpoint is not None:
            checkpoint.save({"step": 1, "eps_theta": cpu_state(eps_net),
                             "records": {"eps_theta": record["eps_theta"]}})
    iql_cfg = iql_config(dataset, critic_hidden=config.iql_hidden, actor_hidden=config.iql_actor_hidden,
                         expectile=config.expectile, batch_size=int(config.iql_batch),
                         steps=int(config.iql_steps))
    iql_file = checkpoint.path.with_name(checkpoint.path.stem + "_iql.d3") if checkpoint is not None else None
    if done >= 2 and iql_file is not None and iql_file.is_file():
        iql = d3rlpy.load_learnable(str(iql_file), device=d3rlpy_device(device))
        record["iql"] = dict(saved["records"]["iql"])
    else:
        iql = make_iql(dataset, iql_cfg, seed=derive_seed(seed, "aepo-iql-init"),
                       device=d3rlpy_device(device))
        record["iql"] = train_iql(iql, dataset, int(config.iql_steps), seed=derive_seed(seed, "aepo-iql"),
                                  progress=progress)
        if checkpoint is not None and iql_file is not None:
            tmp = iql_file.with_name("." + iql_file.name)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            iql.save(str(tmp))
            tmp.replace(iql_file)
            checkpoint.save({"step": 2, "eps_theta": cpu_state(eps_net),
                             "records": {"eps_theta": record["eps_theta"], "iql": dict(record["iql"])}})
    record["iql"]["reward_multiplier"] = float(iql_cfg.reward_scaler.multiplier)
    record["iql"]["q_reduction"] = config.q_reduction

    gen = torch.Generator().manual_seed(derive_seed(seed, "aepo-table"))
    grid = np.linspace(config.t_min, 1.0, int(config.table_points))
    t0 = time.perf_counter()
    clip = (torch.from_numpy(low).to(device), torch.from_numpy(high).to(device)) if config.clip_mu else None
    table = estimate_sigma_table(lambda s, a, t: eps_net(s, a, t), s_n, a0, schedule, grid,
                                 posterior=int(config.posterior), samples=int(config.table_samples),
                                 generator=gen, var_a0=var_a0, u0=u0, clip=clip)
    record["table"] = {"seconds": time.perf_counter() - t0, "posterior": table.posterior,
                       "clamped_points": int(np.sum(table.values != table.raw)), "t": table.t.tolist(),
                       "values": table.values.tolist()}

    models = AEPOModels(eps_net=eps_net, energy_net=energy_net, table=table, iql=iql,
                        critic=IQLCritic(iql, config.q_reduction), obs_mean=obs_mean, obs_std=obs_std,
                        low=low, high=high, var_a0=var_a0, u0=u0, schedule=schedule, device=device)
    record["energy"] = train_energy(models, s_raw, s_n, a0, steps=int(config.energy_steps),
                                    batch=int(config.energy_batch), lr=float(config.energy_lr),
                                    beta=float(config.beta), nu=float(config.nu),
                                    clip_mu=bool(config.clip_mu), baseline=config.energy_baseline,
                                    seed=derive_seed(seed, "aepo-energy"), progress=progress)
    record["train_steps"] = int(config.eps_steps)
    return models, record
