"""Trajectory Diffuser (trajectory_diffuser.txt): a causal GPT proposes, the last k diffusion steps refine,
an inverse dynamics model acts. A Policy and a Generator on the planner base.

* Math: :mod:`augment.planners.td_math` (returns-to-go, condition dropout, Eq. 11 as an ``eps_fn``, the
  autoregressive plan, Algorithm 1's refinement on :mod:`augment.diffusion.ddpm`, Table A6, the per-env
  queues of Algorithm A.3); networks: :class:`augment.nn.gpt.StateRTGTransformer`,
  :class:`augment.nn.unet.TemporalUNet` (``cond_dim = 1``), :class:`augment.nn.mlp.MLP`; training:
  :mod:`augment.planners.td_train`.
* Acting (Algorithm A.3): per env, the observed state enters the queue h with the env's current RTG
  (planned states never do); the GPT grows [h, r] by H - 1 states autoregressively from the last H - 1
  tokens; the window [s_t, s_{t+1}-hat, ..., s_{t+H-1}-hat] is forward-diffused to level k (AddNoise) and
  refined by k classifier-free guided reverse steps with s_t clamped (Algorithm 1); a_t = f_phi(s_t, x_0[1])
  unnormalised and clamped to the data's action range. After each env step the harness's ``observe`` hook
  decrements every env's RTG by its real reward. One batched plan serves every env.
* Generating ([S], not in the paper): from real start states with the target RTG, the same plan and
  refinement; actions from f_phi on consecutive refined states, rewards from the shared reward model
  (:mod:`augment.world`), the terminal cut and provenance of :meth:`Planner.generate`; ``chain_plans``
  plans are chained (the last refined state starts the next plan, with the planned history).

The official code (RenMing-Huang/TrajectoryDiffuser @ 214039d) differs from the paper; its choices are
named variants, labelled "official code" in docs/planners.md: ``no-add-noise``, ``posterior-variance``,
``critic`` (32 candidates, one drawn by softmax over an RTG critic Q(s, a)), ``rtg-floor`` (decrement
floored at target / 3), and ``official`` (all four).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from augment.diffusion import ddpm
from augment.planners.base import Plan, Planner, PlannerConfig
from augment.planners.td_math import (
    FALLBACK_SETTINGS,
    ReturnToGoHistory,
    autoregressive_plan,
    cfg_eps_fn,
    default_target_rtg,
    refine,
    softmax_pick,
    table_a6,
)
from augment.profiles import by_profile, resolve_profile
from stores.errors import UserInputError, check_settings
from stores.schema import OfflineDataset

Tensor = torch.Tensor

#: The official code's differences from the paper, as named variants (PLANNERS.md §2.2).
OFFICIAL_CODE: dict[str, dict[str, Any]] = {
    "no-add-noise": {"add_noise": False},
    "posterior-variance": {"variance": "posterior", "last_step_noise": False},
    "critic": {"n_candidates": 32},
    "rtg-floor": {"rtg_floor": 1.0 / 3.0},
}


@dataclass(frozen=True)
class TDConfig(PlannerConfig):
    """Trajectory Diffuser's settings. Training fields enter the cache key; PLAN_FIELDS only change acting.

    Model: horizon H (states per plan; the GPT context is H - 1 tokens and it is called H - 1 times);
    n_train_steps K (diffusion steps of training, A.4: 100) with a ``linear`` (official code: beta 1e-3 ->
    2e-2) or ``cosine`` schedule; GPT gpt_embed per modality (width 2 x gpt_embed), gpt_layers, gpt_heads,
    gpt_ff (None: the width), gpt_dropout; U-Net unet_widths, unet_emb_dim (None: 4 x widths[0]),
    unet_kernel; inverse_hidden (f_phi, A.4: 2 x 256); critic_hidden (official-code critic, 2 x 128).
    Training: p_drop (Eq. 7, 0.5), rtg_scale (RTGs / rtg_scale enter the networks; the paper gives none,
    the official code 1000), discount (1.0), train_steps, batch_size, lr, ema_decay (U-Net EMA; None: off).
    Acting (PLAN_FIELDS): target_rtg (raw return; None: the best episode return of the data),
    rtg_fraction (Table A4: 1, 0.75, ... 0 x target), rtg_floor (the decrement floor as a fraction of the
    target, official code 1/3; None: none), fixed_rtg (keep the RTG at the target; no reward hook
    needed; not the paper), omega (Eq. 11), n_refine_steps k, refine (False: TD(-), the GPT plan only),
    add_noise (Algorithm 1's AddNoise), variance ``beta`` (Eq. 9) or ``posterior``, last_step_noise,
    noise_scale (alpha of Alg. A.3 line 20), n_candidates and critic_temperature (official code),
    chain_plans and plan_batch (generating).
    device: ``auto`` (CUDA when present) / ``cpu`` / ``cuda``, where the four networks (and the reward
    model, when generating fits it) train and act (not in the cache key; :mod:`augment.planners.devices`).
    """

    horizon: int = 16
    n_train_steps: int = 100
    schedule: str = "linear"
    beta_start: float = 1e-3
    beta_end: float = 2e-2
    gpt_embed: int = 256
    gpt_layers: int = 4
    gpt_heads: int = 4
    gpt_ff: int | None = None
    gpt_dropout: float = 0.1
    unet_widths: tuple[int, ...] = (64, 128, 256, 512)
    unet_emb_dim: int | None = 128
    unet_kernel: int = 5
    inverse_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (128, 128)
    p_drop: float = 0.5
    rtg_scale: float = 1000.0
    discount: float = 1.0
    train_steps: int = 2_000_000
    batch_size: int = 32
    lr: float = 2e-4
    ema_decay: float | None = 0.995
    seed: int = 0
    profile: str = "paper"
    target_rtg: float | None = None
    rtg_fraction: float = 1.0
    rtg_floor: float | None = None
    fixed_rtg: bool = False
    omega: float = 1.2
    n_refine_steps: int = 5
    refine: bool = True
    add_noise: bool = True
    variance: str = "beta"
    last_step_noise: bool = True
    noise_scale: float = 1.0
    n_candidates: int = 1
    critic_temperature: float = 1.0
    chain_plans: int = 1
    plan_batch: int = 256
    device: str = "auto"

    TRAIN_BUDGET_FIELDS: ClassVar[tuple[str, ...] | None] = ("train_steps",)
    PLAN_FIELDS: ClassVar[tuple[str, ...]] = (
        "target_rtg", "rtg_fraction", "rtg_floor", "fixed_rtg", "omega", "n_refine_steps", "refine",
        "add_noise", "variance", "last_step_noise", "noise_scale", "n_candidates", "critic_temperature",
        "chain_plans", "plan_batch")
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {
        "no-refine": {"refine": False},
        **OFFICIAL_CODE,
        "official": {k: v for d in OFFICIAL_CODE.values() for k, v in d.items()},
    }

    @classmethod
    def for_profile(cls, profile: str | None, dataset_name: str = "") -> TDConfig:
        """``paper``: Table A6 for the dataset (H, k, omega, lr, target RTG; hopper's row without a target
        for unlisted data), A.4 (GPT 4 layers / 4 heads / 256, K = 100, p = 0.5, batch 32, 2e6 steps),
        the official code's U-Net dim 64 x (1, 2, 4, 8) and linear schedule. ``cpu`` (PLANNERS.md §2.7):
        the same H, k, omega and target, GPT 4L / 4H / 64 per modality (~0.4M), U-Net (32, 64, 128)
        (~1.1M), batch 64, 20k steps. ``smoke``: H 8, K 10, k 2, tiny networks, 20 steps (tests)."""
        name = resolve_profile(profile)
        row = table_a6(dataset_name) or FALLBACK_SETTINGS
        target = None if math.isnan(row.target_rtg) else float(row.target_rtg)
        base = cls(horizon=row.horizon, n_refine_steps=row.n_refine_steps, omega=row.omega, lr=row.lr,
                   target_rtg=target, profile=name)
        return by_profile(
            name,
            smoke=dataclasses.replace(base, horizon=8, n_train_steps=10, n_refine_steps=2, gpt_embed=8,
                                      gpt_layers=1, gpt_heads=2, unet_widths=(8, 16), unet_emb_dim=None,
                                      inverse_hidden=(32, 32), critic_hidden=(16, 16), train_steps=20,
                                      batch_size=8, lr=1e-3, plan_batch=64),
            cpu=dataclasses.replace(base, gpt_embed=64, unet_widths=(32, 64, 128), unet_emb_dim=None,
                                    train_steps=20_000, batch_size=64),
            paper=base,
        )

    def validate(self) -> None:
        """Raise :class:`UserInputError` for settings that cannot run."""
        target_ok = self.target_rtg is None or (isinstance(self.target_rtg, (int, float))
                                                and not isinstance(self.target_rtg, bool)
                                                and math.isfinite(self.target_rtg))
        checks = (
            (target_ok, f"target_rtg must be a number (a return in env reward units, e.g. 3100) or none, "
                        f"got '{self.target_rtg}'"),
            (math.isfinite(self.rtg_fraction),
             f"rtg_fraction must be a finite number, got {self.rtg_fraction}"),
            (self.horizon >= 2, f"horizon must be >= 2 states, got {self.horizon}"),
            (self.n_train_steps >= 1, f"n_train_steps must be >= 1, got {self.n_train_steps}"),
            (0 <= self.n_refine_steps <= self.n_train_steps,
             f"n_refine_steps must lie in [0, n_train_steps={self.n_train_steps}], "
             f"got {self.n_refine_steps}"),
            (self.schedule in ("linear", "cosine"),
             f"schedule must be linear or cosine, got '{self.schedule}'"),
            (self.variance in ddpm.VARIANCES, f"variance must be one of {', '.join(ddpm.VARIANCES)}, "
                                              f"got '{self.variance}'"),
            ((2 * self.gpt_embed) % self.gpt_heads == 0 and self.gpt_layers >= 1,
             f"the GPT width 2 x gpt_embed = {2 * self.gpt_embed} must be divisible by gpt_heads = "
             f"{self.gpt_heads}"),
            (bool(self.unet_widths) and min(self.unet_widths) >= 1, "unet_widths must be positive"),
            (0.0 <= self.p_drop <= 1.0, f"p_drop must lie in [0, 1], got {self.p_drop}"),
            (self.rtg_scale > 0, f"rtg_scale must be > 0, got {self.rtg_scale}"),
            (self.train_steps >= 0 and self.batch_size >= 1, "train_steps must be >= 0 and batch_size >= 1"),
            (self.rtg_floor is None or self.rtg_floor >= 0,
             f"rtg_floor must be >= 0 or none, got {self.rtg_floor}"),
            (self.omega >= 0, f"omega must be >= 0, got {self.omega}"),
            (self.noise_scale >= 0, f"noise_scale must be >= 0, got {self.noise_scale}"),
            (self.n_candidates >= 1, f"n_candidates must be >= 1, got {self.n_candidates}"),
            (self.critic_temperature > 0, f"critic_temperature must be > 0, got {self.critic_temperature}"),
            (self.chain_plans >= 1 and self.plan_batch >= 1, "chain_plans and plan_batch must be >= 1"),
        )
        check_settings(checks, prefix="td: ")

    def provenance(self) -> dict[str, Any]:
        """The acting settings a store of TD data records."""
        return {k: getattr(self, k) for k in self.PLAN_FIELDS}


class TrajectoryDiffuserPlanner(Planner):
    """Trajectory Diffuser behind the Planner base (see the module docstring).

    After ``fit``: gpt, unet (EMA), inverse_dynamics, critic (eval mode, on ``device``), normalizer,
    sched, act_low / act_high (the data's action range), data_target_rtg (best episode return).
    ``history`` holds the per-env queues of Algorithm A.3 while acting; ``last_plan`` the last refined
    windows (B, S, H), on the CPU.
    """

    name: ClassVar[str] = "td"
    config_class: ClassVar[type] = TDConfig

    def __init__(self, config: TDConfig, *, progress: bool = True) -> None:
        super().__init__(config, progress=progress)
        config.validate()
        self.gpt: Any = None
        self.unet: Any = None
        self.inverse_dynamics: Any = None
        self.critic: Any = None
        self.normalizer: Any = None
        self.act_low: np.ndarray | None = None
        self.act_high: np.ndarray | None = None
        self.data_target_rtg: float | None = None
        self.history: ReturnToGoHistory | None = None
        self.last_plan: Tensor | None = None
        self._dataset: OfflineDataset | None = None
        self.sched = self._schedule(config)

    @staticmethod
    def _schedule(cfg: TDConfig) -> ddpm.DDPMSchedule:
        if cfg.schedule == "linear":
            return ddpm.DDPMSchedule.linear(cfg.n_train_steps, cfg.beta_start, cfg.beta_end)
        return ddpm.DDPMSchedule.cosine(cfg.n_train_steps)

    @classmethod
    def default_config(cls, profile: str, dataset_name: str = "") -> TDConfig:
        return TDConfig.for_profile(profile, dataset_name)

    # -- fit ------------------------------------------------------------------------------------------
    def prepare(self, dataset: OfflineDataset) -> None:
        """Normaliser, action range and the data's best return (the target RTG when none is given)."""
        from augment.diffusion.trajectory import Normalizer

        self._dataset = dataset
        self.normalizer = Normalizer.from_dataset(dataset, 1.0)
        self.act_low = dataset.stats.act_min.astype(np.float32)
        self.act_high = dataset.stats.act_max.astype(np.float32)
        self.data_target_rtg = default_target_rtg([ep.episode_return for ep in dataset.episodes])

    def build_networks(self) -> dict[str, torch.nn.Module]:
        """Fresh networks for the current sizes, initialised on the CPU from ``config.seed`` (the same
        weights on every device), then moved to :attr:`device`."""
        from augment.nn.gpt import StateRTGTransformer
        from augment.nn.mlp import MLP
        from augment.nn.unet import TemporalUNet

        cfg, s, a = self.config, self.obs_dim, self.act_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.seed))
            nets: dict[str, torch.nn.Module] = {
                "gpt": StateRTGTransformer(s, cfg.gpt_embed, layers=cfg.gpt_layers, heads=cfg.gpt_heads,
                                           ff_dim=cfg.gpt_ff, dropout=cfg.gpt_dropout, max_len=cfg.horizon),
                "unet": TemporalUNet(s, cfg.unet_widths, emb_dim=cfg.unet_emb_dim, kernel=cfg.unet_kernel,
                                     cond_dim=1),
                "inverse_dynamics": MLP(2 * s, a, cfg.inverse_hidden, activation="relu"),
                "critic": MLP(s + a, 1, cfg.critic_hidden, activation="mish"),
            }
        return {k: net.to(self.device) for k, net in nets.items()}

    def _set_networks(self, nets: dict[str, torch.nn.Module]) -> None:
        for key, net in nets.items():
            setattr(self, key, net.eval().requires_grad_(False))

    def train_models(self, dataset: OfflineDataset) -> dict[str, Any]:
        from augment.planners.td_train import TDData, train_td

        cfg = self.config
        data = TDData.build(dataset, self.normalizer, cfg.horizon, cfg.rtg_scale, cfg.discount)
        nets, record = train_td(self.build_networks(), data, cfg, self.sched, progress=self.progress,
                                checkpoint=self.training_checkpoint("td"))
        self._set_networks(nets)
        record.update(dataset=dataset.name, dataset_hash=dataset.content_hash)
        return record

    def save_models(self, directory: Path) -> None:
        for key in ("gpt", "unet", "inverse_dynamics", "critic"):
            net = getattr(self, key)
            torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, directory / f"{key}.pt")
        (directory / "normalizer.json").write_text(json.dumps(self.normalizer.to_json()))
        extra = {"act_low": self.act_low.tolist(), "act_high": self.act_high.tolist(),
                 "data_target_rtg": self.data_target_rtg}
        (directory / "td.json").write_text(json.dumps(extra))

    def load_models(self, directory: Path) -> None:
        from augment.diffusion.trajectory import Normalizer

        nets = self.build_networks()
        for key, net in nets.items():
            net.load_state_dict(torch.load(directory / f"{key}.pt", map_location="cpu", weights_only=True))
        self._set_networks(nets)
        self.normalizer = Normalizer.from_json(json.loads((directory / "normalizer.json").read_text()))
        extra = json.loads((directory / "td.json").read_text())
        self.act_low = np.asarray(extra["act_low"], dtype=np.float32)
        self.act_high = np.asarray(extra["act_high"], dtype=np.float32)
        self.data_target_rtg = extra.get("data_target_rtg")

    def _require_networks(self) -> None:
        if self.gpt is None:
            raise UserInputError("td: call fit(dataset) (or load a saved planner) before acting")

    # -- acting settings ------------------------------------------------------------------------------
    def set_acting(self, **fields: Any) -> None:
        """Change acting-only fields (PLAN_FIELDS) of a fitted planner, e.g. ``refine=False`` or
        ``rtg_fraction=0.5``; the queues are emptied (call ``reset(n)`` before the next episodes)."""
        bad = sorted(set(fields) - set(self.config.PLAN_FIELDS))
        if bad:
            raise UserInputError(f"td: {bad} are not acting settings; acting settings are "
                                 f"{', '.join(self.config.PLAN_FIELDS)}")
        config = dataclasses.replace(self.config, **fields)
        config.validate()
        self.config = config
        self.history = None

    def target_rtg(self) -> float:
        """The target return-to-go in raw units: (target_rtg, or the data's best return) x rtg_fraction."""
        cfg = self.config
        base = cfg.target_rtg if cfg.target_rtg is not None else self.data_target_rtg
        if base is None:
            raise UserInputError("td: no target RTG; pass --set target_rtg=... or fit on a dataset")
        return float(base) * float(cfg.rtg_fraction)

    def _new_history(self, n: int) -> ReturnToGoHistory:
        cfg = self.config
        target = self.target_rtg()
        floor = None if cfg.rtg_floor is None else cfg.rtg_floor * target / cfg.rtg_scale
        hist = ReturnToGoHistory(cfg.horizon - 1, target / cfg.rtg_scale, cfg.rtg_scale, floor, cfg.fixed_rtg)
        hist.reset(n)
        return hist

    # -- Policy ---------------------------------------------------------------------------------------
    def reset(self, n: int) -> None:
        """Empty the queues of ``n`` envs; each RTG starts at the target."""
        self.history = self._new_history(int(n))

    def observe(self, rewards: np.ndarray, observations: np.ndarray, dones: np.ndarray) -> None:
        """The harness's hook after every env step: each env's real reward decrements its RTG."""
        del observations, dones  # the next act() brings the observations; finished rows get reward 0
        if self.history is None:
            raise UserInputError("td: observe() before any act(); call reset(n) and act(observations) first")
        self.history.observe(rewards)

    def plan_actions(self, observations: np.ndarray) -> np.ndarray:
        """Algorithm A.3 for every env: insert s_t, plan, refine, a_t = f_phi(s_t, s_{t+1}-hat)."""
        self._require_networks()
        b = observations.shape[0]
        if self.history is None:
            self.reset(b)
        assert self.history is not None
        self.history.insert(self.normalizer.norm_obs(observations))
        actions = np.zeros((b, self.act_dim), dtype=np.float32)
        plans = torch.zeros(b, self.obs_dim, self.config.horizon)
        for rows, ctx_s, ctx_r in self.history.contexts():
            a, x0 = self._act_rows(*(torch.as_tensor(c).to(self.device) for c in (ctx_s, ctx_r)))
            actions[rows] = a
            plans[torch.as_tensor(rows)] = x0.cpu()
        self.last_plan = plans
        return actions

    def _act_rows(self, ctx_s: Tensor, ctx_r: Tensor) -> tuple[np.ndarray, Tensor]:
        """Contexts (G, n, S), (G, n) of equal length -> raw actions (G, A) and the chosen x_0 (G, S, H)."""
        cfg = self.config
        with torch.no_grad():
            window, window_rtg = self.propose(ctx_s, ctx_r, count=True)
            s_t, y = window[:, :, 0], window_rtg[:, :1]
            n_c = int(cfg.n_candidates)
            if n_c > 1:
                window, s_t, y = (t.repeat_interleave(n_c, dim=0) for t in (window, s_t, y))
            x0 = self.improve(window, s_t, y, self.torch_generator, count=True)
            self.count_calls("inverse_dynamics")
            a_n = self._inverse(s_t, x0[:, :, 1])
            if n_c > 1:
                self.count_calls("critic")
                q = self.critic(torch.cat([s_t, a_n], dim=-1))[:, 0].reshape(-1, n_c).cpu().numpy()
                pick = softmax_pick(q, cfg.critic_temperature, self.rng)
                rows = (torch.arange(q.shape[0]) * n_c + torch.as_tensor(pick)).to(self.device)
                a_n, x0 = a_n[rows], x0[rows]
        return self._raw_actions(a_n.cpu().numpy()), x0

    # -- the three stages -----------------------------------------------------------------------------
    def propose(self, ctx_s: Tensor, ctx_r: Tensor, *, count: bool = False) -> tuple[Tensor, Tensor]:
        """GPT stage (Eq. 5): contexts (B, n, S), (B, n) -> the window from the current (last) state,
        states (B, S, H) channels first and RTGs (B, H), with H - 1 autoregressive GPT calls."""
        self._require_networks()
        h = self.config.horizon
        gpt = self.gpt

        def next_fn(s: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
            if count:
                self.count_calls("gpt")
            return gpt(s, r)

        states, rtgs = autoregressive_plan(next_fn, ctx_s, ctx_r, h - 1, h - 1)
        return states[:, -h:].transpose(1, 2).contiguous(), rtgs[:, -h:]

    def improve(self, window: Tensor, s_t: Tensor, y: Tensor, generator: torch.Generator, *,
                count: bool = False, on_step: Any = None) -> Tensor:
        """Diffusion stage (Algorithm 1): refine windows (B, S, H) with condition y (B, 1), s_t (B, S)
        clamped; with ``refine`` off (TD(-)) or k = 0 the GPT window is returned with s_t clamped."""
        cfg = self.config
        k = int(cfg.n_refine_steps) if cfg.refine else 0
        eps_fn = cfg_eps_fn(self.unet, y, float(cfg.omega), self.sched,
                            on_call=(lambda: self.count_calls("denoiser")) if count else None)
        return refine(window, s_t, eps_fn, self.sched, k, add_noise_first=cfg.add_noise,
                      variance=cfg.variance, last_step_noise=cfg.last_step_noise,
                      noise_scale=cfg.noise_scale, generator=generator, on_step=on_step)

    def _inverse(self, s_t: Tensor, s_next: Tensor) -> Tensor:
        from augment.planners.td_train import inverse_dynamics_input

        return self.inverse_dynamics(inverse_dynamics_input(s_t, s_next))

    def _raw_actions(self, a_n: np.ndarray) -> np.ndarray:
        """Normalised f_phi outputs -> raw actions clamped to the data's action range (non-finite -> 0)."""
        n = self.normalizer
        a = np.where(np.isfinite(a_n), a_n * n.act_std + n.act_mean, 0.0)
        if self.act_low is not None and self.act_high is not None:
            a = np.clip(a, self.act_low, self.act_high)
        return a.astype(np.float32)

    # -- Generator ------------------------------------------------------------------------------------
    def _ensure_world(self) -> None:
        if self.world is not None:
            return
        if self._dataset is None:
            raise UserInputError("td: generating labels rewards with the dataset's reward model; "
                                 "call fit(dataset) first")
        self.world = self.fit_world(self._dataset)

    def plan_trajectories(self, s0: np.ndarray, rng: np.random.Generator) -> Plan:
        """``chain_plans`` chained plans from raw s0 (B, S): states (B, C(H-1)+1, S) raw with states[:, 0]
        = s0, actions (B, C(H-1), A) from f_phi on consecutive refined states (clamped)."""
        self._require_networks()
        self._ensure_world()
        cfg = self.config
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 62)))
        y0 = self.target_rtg() / cfg.rtg_scale
        states, actions = [], []
        for lo in range(0, s0.shape[0], cfg.plan_batch):
            chunk = np.asarray(s0[lo:lo + cfg.plan_batch], dtype=np.float32)
            s0_n = torch.as_tensor(self.normalizer.norm_obs(chunk)).to(self.device)
            st, at = self._chained(s0_n, y0, gen)
            raw = self.normalizer.denorm_obs(st.cpu().numpy())
            raw[:, 0] = chunk
            states.append(raw)
            actions.append(self._raw_actions(at.cpu().numpy()))
        return Plan(states=np.concatenate(states), actions=np.concatenate(actions), info=cfg.provenance())

    def _chained(self, s0_n: Tensor, y0: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Normalised s0 (b, S) -> states (b, C(H-1)+1, S) and normalised actions (b, C(H-1), A)."""
        cfg = self.config
        context = cfg.horizon - 1
        ctx_s, ctx_r = s0_n[:, None], torch.full((s0_n.shape[0], 1), float(y0), device=s0_n.device)
        states, actions = [s0_n[:, None]], []
        with torch.no_grad():
            for _ in range(int(cfg.chain_plans)):
                window, window_rtg = self.propose(ctx_s, ctx_r)
                x0 = self.improve(window, window[:, :, 0], window_rtg[:, :1], gen)
                x0 = x0.transpose(1, 2)  # (b, H, S)
                actions.append(self._inverse(x0[:, :-1], x0[:, 1:]))
                states.append(x0[:, 1:])
                ctx_s = torch.cat([ctx_s, x0[:, 1:]], dim=1)[:, -context:]
                ctx_r = torch.cat([ctx_r, window_rtg[:, 1:]], dim=1)[:, -context:]
        return torch.cat(states, dim=1), torch.cat(actions, dim=1)

    def store_attrs(self) -> dict[str, Any]:
        attrs = super().store_attrs()
        attrs["generator_config"].update(
            acting=self.config.provenance(), target_rtg_used=self.target_rtg(),
            rewards="R-hat (augment.world reward model)", cut="first terminal (augment.world.termination)",
            chaining="the last refined state starts the next plan; the GPT's own RTGs carry over",
            world_config_hash=self.world_config().config_hash())
        return attrs


__all__ = ["OFFICIAL_CODE", "TDConfig", "TrajectoryDiffuserPlanner"]
