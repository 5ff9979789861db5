"""DMEMM (dmemm.txt): diffusion modulation via environment mechanism modeling, as Policy and Generator.

* Training (Algorithm 2, :mod:`augment.planners.dmemm_train`): the reward-weighted diffusion loss
  (Eq. 11) plus the transition and reward modulation losses (Eq. 9-10) on Prop. 1's tau-hat^0 (Eq. 8),
  with T-hat and R-hat the project's world models (:func:`augment.world.fit_world_model`, the same
  cache as DyDiff's), frozen.
* Planning (Algorithm 1): per env step, tau^K ~ N(0, I), K guided reverse steps
  tau^{k-1} ~ N(mu + alpha sigma_k^2 g, sigma_k^2 I) (Eq. 13 dual guidance), s_0 clamped after every
  step, execute a_0, replan at the next step. Batched over the envs of the evaluation harness.
* Generator: plans from real start states, rewards from R-hat, cut at the first terminal
  (:meth:`Planner.generate`).

Table 3's ablations are config switches: ``weighting`` (Eq. 11 weight), ``lambda_tr`` (L_tr),
``lambda_rd`` (L_rd), ``transition_guidance``; the variant ``diffuser`` turns all four off (plain
Diffuser-style training with reward guidance). Every choice the paper leaves open is a field here and is
listed in docs/planners.md.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from augment.diffusion import ddpm
from augment.planners.base import Plan, Planner, PlannerConfig
from augment.planners.dmemm_math import (
    READINGS,
    algorithm1_sample,
    dual_guidance_gradient,
    eq11_weights,
    minmax_weights,
    window_reward_sums,
)
from augment.profiles import by_profile, resolve_profile
from stores.errors import UserInputError, check_settings
from stores.schema import OfflineDataset

Tensor = torch.Tensor
PROP1_MODES: tuple[str, ...] = ("exact", "mc", "tweedie")
WEIGHT_NORMALIZERS: tuple[str, ...] = ("window", "episode", "minmax")
ABLATIONS: dict[str, dict[str, Any]] = {
    "no-weighting": {"weighting": False},
    "no-tr-loss": {"lambda_tr": 0.0},
    "no-rd-loss": {"lambda_rd": 0.0},
    "no-tr-guide": {"transition_guidance": False},
}


@dataclass(frozen=True)
class DMEMMConfig(PlannerConfig):
    """DMEMM's settings (paper profile = Sec. 5 where given, Diffuser's locomotion defaults otherwise).

    Model: horizon T (plans have T+1 columns (s_t, a_t)); diffusion_steps K; schedule ``cosine`` or
    ``linear``; U-Net widths / kernel / activation.
    Training (Alg. 2): train_steps, batch_size, lr (linear warm-up over warmup_steps), grad_clip (max
    gradient norm, None: off), ema_decay (EMA of the weights, the planner uses it).
    Eq. 11: weighting (on/off), weight_normalizer ``window`` (T_max = T+1 columns, r_max = the dataset's
    largest per-step reward), ``episode`` (T_max = the longest episode) or ``minmax`` (window returns
    min-max normalised over the dataset); weight_min: weights are clipped to [weight_min, 1].
    Eq. 9-10 via Eq. 8: lambda_tr, lambda_rd (0 turns a loss off); prop1_mode ``exact`` / ``mc`` /
    ``tweedie``; mc_terms m; modulation_clip: tau-hat^0 clipped to [-c, c] (normalised units) before
    T-hat and R-hat (None: no clip).
    Planning (PLAN_FIELDS, not in the cache key): alpha (guide scale), reward_guidance,
    transition_guidance, guidance_lambda (lambda of Eq. 13), guidance_reading ``full`` / ``literal``,
    guidance_logvar_floor (floor of T-hat's normalised log-variance in log T-hat, None: the ensemble's
    own), guidance_clip (each entry of the shift alpha sigma_k^2 g is clipped to +-guidance_clip sigma_k,
    the step's own noise scale; None: no clip), variance (``posterior`` beta-tilde or ``beta``), x0_clip
    (each reverse step's x0-hat clipped to +-x0_clip in normalised units, the official Diffuser code's
    ``clip_denoised``; None: Eq. 4 as printed; see docs/planners.md on why it matters at k = K),
    plan_batch (plans per network call when generating).
    device: ``auto`` (CUDA when present) / ``cpu`` / ``cuda``, where the U-Net, T-hat and R-hat train and
    plan (not in the cache key; :mod:`augment.planners.devices`).
    """

    horizon: int = 100
    diffusion_steps: int = 100
    schedule: str = "cosine"
    widths: tuple[int, ...] = (32, 64, 128, 256)
    kernel: int = 5
    activation: str = "mish"
    train_steps: int = 1_000_000
    batch_size: int = 32
    lr: float = 2e-4
    warmup_steps: int = 0
    grad_clip: float | None = None
    ema_decay: float = 0.995
    weighting: bool = True
    weight_normalizer: str = "window"
    weight_min: float = 0.05
    lambda_tr: float = 0.1
    lambda_rd: float = 0.05
    prop1_mode: str = "exact"
    mc_terms: int = 4
    modulation_clip: float | None = None
    alpha: float = 0.001
    reward_guidance: bool = True
    transition_guidance: bool = True
    guidance_lambda: float = 1.0
    guidance_reading: str = "full"
    guidance_logvar_floor: float | None = None
    guidance_clip: float | None = None
    variance: str = "posterior"
    x0_clip: float | None = None
    plan_batch: int = 256
    seed: int = 0
    profile: str = "paper"
    device: str = "auto"

    TRAIN_BUDGET_FIELDS: ClassVar[tuple[str, ...] | None] = ("train_steps",)
    PLAN_FIELDS: ClassVar[tuple[str, ...]] = (
        "alpha", "reward_guidance", "transition_guidance", "guidance_lambda", "guidance_reading",
        "guidance_logvar_floor", "guidance_clip", "variance", "x0_clip", "plan_batch")
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {
        **ABLATIONS,
        "diffuser": {k: v for d in ABLATIONS.values() for k, v in d.items()},
    }

    def training_json(self) -> dict[str, Any]:
        """Training fields; without L_tr and L_rd the Prop. 1 settings do not matter and are left out."""
        data = super().training_json()
        if self.lambda_tr == 0 and self.lambda_rd == 0:
            for key in ("prop1_mode", "mc_terms", "modulation_clip"):
                data.pop(key, None)
        if not self.weighting:
            data.pop("weight_normalizer", None)
            data.pop("weight_min", None)
        return data

    def validate(self) -> None:
        """Raise :class:`UserInputError` for settings that cannot work."""
        checks = (
            (self.horizon >= 1, f"horizon must be >= 1, got {self.horizon}"),
            (self.diffusion_steps >= 1, f"diffusion_steps must be >= 1, got {self.diffusion_steps}"),
            (self.schedule in ("cosine", "linear"),
             f"schedule must be cosine or linear, got {self.schedule}"),
            (bool(self.widths) and min(self.widths) >= 1, f"widths must be positive, got {self.widths}"),
            (self.train_steps >= 0 and self.batch_size >= 1, "train_steps must be >= 0, batch_size >= 1"),
            (self.weight_normalizer in WEIGHT_NORMALIZERS,
             f"weight_normalizer must be one of {', '.join(WEIGHT_NORMALIZERS)}"),
            (0.0 < self.weight_min <= 1.0, f"weight_min must lie in (0, 1], got {self.weight_min}"),
            (self.lambda_tr >= 0 and self.lambda_rd >= 0, "lambda_tr and lambda_rd must be >= 0"),
            (self.prop1_mode in PROP1_MODES, f"prop1_mode must be one of {', '.join(PROP1_MODES)}, "
                                             f"got '{self.prop1_mode}'"),
            (self.mc_terms >= 0, f"mc_terms must be >= 0, got {self.mc_terms}"),
            (self.guidance_reading in READINGS, f"guidance_reading must be one of {', '.join(READINGS)}"),
            (self.variance in ddpm.VARIANCES, f"variance must be one of {', '.join(ddpm.VARIANCES)}"),
            (self.alpha >= 0, f"alpha must be >= 0, got {self.alpha}"),
            (self.plan_batch >= 1, f"plan_batch must be >= 1, got {self.plan_batch}"),
            (self.x0_clip is None or self.x0_clip > 0, f"x0_clip must be > 0 or none, got {self.x0_clip}"),
        )
        check_settings(checks, prefix="dmemm: ")

    @classmethod
    def for_profile(cls, profile: str) -> DMEMMConfig:
        """``paper``: T = 100, K = 100, alpha 1e-3, lambda_rd 0.05, lambda_tr 0.1 (Sec. 5), exact Eq. 8,
        Diffuser's U-Net dim 32 x (1,2,4,8), batch 32, lr 2e-4, 1M steps, EMA 0.995.
        ``cpu`` (PLANNERS §1.7): T = 31 (32 columns, Diffuser's locomotion horizon), K = 20, U-Net
        (32, 64, 128) ~1.1M, batch 64, 10k steps, Monte-Carlo Eq. 8 with m = 1 (unbiased; m = 4, the
        first cpu setting, costs 2.4x per step: 1.15 against 0.475 s on the 2-core box, 3.2 h per model),
        tau-hat^0 clipped to +-5, the guidance shift clipped to one noise std per step. ``smoke``:
        seconds, for tests."""
        profile = resolve_profile(profile)
        base = cls(profile=profile)
        return by_profile(
            profile,
            smoke=dataclasses.replace(base, horizon=7, diffusion_steps=5, widths=(8, 16), batch_size=8,
                                      lr=1e-3, train_steps=20, prop1_mode="mc", mc_terms=1,
                                      modulation_clip=5.0, guidance_clip=1.0, plan_batch=64),
            cpu=dataclasses.replace(base, horizon=31, diffusion_steps=20, widths=(32, 64, 128),
                                    batch_size=64, lr=5e-4, warmup_steps=200, train_steps=10_000,
                                    prop1_mode="mc", mc_terms=1, modulation_clip=5.0, guidance_clip=1.0),
            paper=base,
        )


class DMEMMPlanner(Planner):
    """DMEMM behind the Planner interface (Policy + Generator; see the module docstring).

    world_config: the :class:`augment.world.WorldModelConfig` of T-hat and R-hat (default: the profile's,
    the same cache entry DyDiff uses). After ``fit``: network (EMA U-Net, on ``device``), normalizer,
    sched, world (WorldModel, on the CPU), world_grad (its differentiable view, on ``device``).
    """

    name: ClassVar[str] = "dmemm"
    config_class: ClassVar[type] = DMEMMConfig

    def __init__(self, config: DMEMMConfig, *, progress: bool = True,
                 world_config: Any | None = None) -> None:
        super().__init__(config, progress=progress)
        config.validate()
        if world_config is not None:
            self._world_config = world_config
        self.network: Any = None
        self.normalizer: Any = None
        self.world_grad: Any = None
        self.sched = ddpm.DDPMSchedule.named(config.schedule, config.diffusion_steps)
        self.act_low: np.ndarray | None = None
        self.act_high: np.ndarray | None = None
        self.guidance_shift = [0.0, 0]  # running sum of the per-plan shift norm, and the count
        self.nonfinite_actions = 0
        self._unit_stats: tuple[Any, tuple[Tensor, Tensor, Tensor, Tensor]] | None = None

    @classmethod
    def default_config(cls, profile: str, dataset_name: str = "") -> DMEMMConfig:
        del dataset_name  # the paper uses one setting for every locomotion task
        return DMEMMConfig.for_profile(profile)

    # -- fit ------------------------------------------------------------------------------------------
    def prepare(self, dataset: OfflineDataset) -> None:
        """Fit (or load) T-hat and R-hat, and set the normaliser and the action bounds from the data."""
        from augment.diffusion.trajectory import Normalizer
        from augment.planners.world_grad import DifferentiableWorld

        self.world = self.fit_world(dataset)
        self.world_grad = DifferentiableWorld(self.world, logvar_floor=self.config.guidance_logvar_floor,
                                              device=self.device)
        self.normalizer = Normalizer.from_dataset(dataset, 1.0)
        self.act_low = dataset.stats.act_min.astype(np.float32)
        self.act_high = dataset.stats.act_max.astype(np.float32)

    def dependency_hashes(self) -> dict[str, str]:
        return {"world": self.world_config().config_hash()}

    def _build_network(self) -> Any:
        """The U-Net, initialised on the CPU from ``config.seed`` (the same weights on every device), then
        moved to :attr:`device`."""
        from augment.nn.unet import TemporalUNet

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config.seed))
            net = TemporalUNet(self.obs_dim + self.act_dim, self.config.widths, kernel=self.config.kernel,
                               act=self.config.activation)
        return net.to(self.device)

    def window_weights(self, dataset: OfflineDataset, windows: Any) -> np.ndarray:
        """Eq. 11 weight of every training window (W,), per ``weight_normalizer``."""
        cfg = self.config
        columns = cfg.horizon + 1
        rewards = [ep.rewards for ep in dataset.episodes]
        sums = window_reward_sums(rewards, windows.window_episode, windows.window_start, columns)
        if cfg.weight_normalizer == "minmax":
            return minmax_weights(sums, cfg.weight_min)
        r_max = float(max(float(r.max()) for r in rewards))
        t_max = columns if cfg.weight_normalizer == "window" else max(len(r) for r in rewards)
        return eq11_weights(sums, float(t_max), r_max, cfg.weight_min)

    def train_models(self, dataset: OfflineDataset) -> dict[str, Any]:
        from augment.diffusion.windows import build_windows
        from augment.planners.dmemm_train import train_dmemm

        norm = self.normalizer
        windows = build_windows([norm.norm_obs(ep.observations) for ep in dataset.episodes],
                                [norm.norm_act(ep.actions) for ep in dataset.episodes],
                                self.config.horizon + 1)
        weights = self.window_weights(dataset, windows)
        network, record = train_dmemm(self._build_network(), windows, weights, self.config, self.sched,
                                      to_raw=self.to_raw, to_norm_obs=self.to_norm_obs, world=self.world_grad,
                                      progress=self.progress, checkpoint=self.training_checkpoint("dmemm"))
        self.network = network
        record.update(dataset=dataset.name, dataset_hash=dataset.content_hash,
                      weights={"mean": float(weights.mean()), "min": float(weights.min()),
                               "max": float(weights.max()),
                               "clipped_share": float((weights <= self.config.weight_min).mean())})
        return record

    def save_models(self, directory: Path) -> None:
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        torch.save(state, directory / "dmemm.pt")
        (directory / "normalizer.json").write_text(json.dumps(self.normalizer.to_json()))

    def load_models(self, directory: Path) -> None:
        from augment.diffusion.trajectory import Normalizer

        net = self._build_network()
        net.load_state_dict(torch.load(directory / "dmemm.pt", map_location="cpu", weights_only=True))
        self.network = net.eval().requires_grad_(False)
        self.normalizer = Normalizer.from_json(json.loads((directory / "normalizer.json").read_text()))

    def reset_stats(self) -> None:
        super().reset_stats()
        self.guidance_shift = [0.0, 0]
        self.nonfinite_actions = 0

    def acting_stats(self) -> dict[str, Any]:
        """The base statistics plus the mean norm of one plan's guidance shift per reverse step
        (normalised units) and the number of actions replaced because a plan went non-finite."""
        stats = super().acting_stats()
        total, count = self.guidance_shift
        stats["guidance_shift_norm_mean"] = total / count if count else float("nan")
        stats["nonfinite_actions"] = self.nonfinite_actions
        return stats

    # -- units ----------------------------------------------------------------------------------------
    def _stats(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The normaliser's (obs mean, obs std, act mean, act std) as tensors on :attr:`device` (cached
        per normaliser object)."""
        n = self.normalizer
        if self._unit_stats is None or self._unit_stats[0] is not n:
            om, os_, am, as_ = (torch.as_tensor(v).to(self.device)
                                for v in (n.obs_mean, n.obs_std, n.act_mean, n.act_std))
            self._unit_stats = (n, (om, os_, am, as_))
        return self._unit_stats[1]

    def to_raw(self, s_n: Tensor, a_n: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised (s, a) -> raw, differentiably."""
        om, os_, am, as_ = self._stats()
        return s_n * os_ + om, a_n * as_ + am

    def to_raw_obs(self, s_n: Tensor) -> Tensor:
        om, os_, _, _ = self._stats()
        return s_n * os_ + om

    def to_norm_obs(self, s: Tensor) -> Tensor:
        om, os_, _, _ = self._stats()
        return (s - om) / os_

    # -- Algorithm 1 ----------------------------------------------------------------------------------
    def guidance(self) -> Any:
        """The mean-shift hook of Eq. 13 for ``ddpm.ancestral_step`` (None when guidance is off)."""
        cfg = self.config
        use_r = cfg.reward_guidance
        use_t = cfg.transition_guidance and cfg.guidance_lambda != 0
        if cfg.alpha == 0 or not (use_r or use_t) or self.world_grad is None:
            return None
        world, obs = self.world_grad, self.obs_dim

        def reward_fn(s_n: Tensor, a_n: Tensor) -> Tensor:
            return world.reward(*self.to_raw(s_n, a_n))

        def log_t(sn_next: Tensor, s_n: Tensor, a_n: Tensor) -> Tensor:
            s, a = self.to_raw(s_n, a_n)
            return world.log_likelihood(self.to_raw_obs(sn_next), s, a)

        def guide(x_k: Tensor, k: int, mean: Tensor, var: Tensor) -> Tensor:
            self.count_calls("guidance")
            g = dual_guidance_gradient(x_k.transpose(1, 2), obs, reward_fn=reward_fn if use_r else None,
                                       log_transition_fn=log_t if use_t else None, lam=cfg.guidance_lambda,
                                       reading=cfg.guidance_reading).transpose(1, 2)
            shift = cfg.alpha * var * g
            if cfg.guidance_clip is not None:
                bound = cfg.guidance_clip * float(var) ** 0.5
                shift = shift.clamp(-bound, bound)
            self.guidance_shift[0] += float(shift.norm(dim=(1, 2)).sum())
            self.guidance_shift[1] += int(shift.shape[0])
            return shift

        return guide

    def sample_plans(self, s0: np.ndarray, generator: torch.Generator, *, on_step: Any = None) -> Tensor:
        """Algorithm 1 from raw start states s0 (B, obs): normalised tau^0 (B, C, T+1), channels first."""
        if self.network is None:
            raise UserInputError("dmemm: call fit(dataset) before planning")
        s0_n = torch.as_tensor(self.normalizer.norm_obs(np.asarray(s0, dtype=np.float32))).to(self.device)
        shape = (s0_n.shape[0], self.obs_dim + self.act_dim, self.config.horizon + 1)
        net, sched = self.network, self.sched

        def eps_fn(x: Tensor, k: Tensor) -> Tensor:
            self.count_calls("denoiser")
            return net(x, ddpm.noise_input(sched, k))

        with torch.no_grad():
            return algorithm1_sample(eps_fn, sched, s0_n, shape, generator=generator, guide=self.guidance(),
                                     variance=self.config.variance, clip_x0=self.config.x0_clip,
                                     on_step=on_step)

    def _raw_actions(self, a_n: np.ndarray) -> np.ndarray:
        n = self.normalizer
        a = a_n * n.act_std + n.act_mean
        bad = ~np.isfinite(a)
        if bad.any():  # a diverged plan must not reach the simulator; counted in acting_stats
            self.nonfinite_actions += int(bad.any(axis=-1).sum())
            a = np.where(bad, 0.0, a)
        if self.act_low is not None and self.act_high is not None:
            a = np.clip(a, self.act_low, self.act_high)
        return a.astype(np.float32)

    def plan_actions(self, observations: np.ndarray) -> np.ndarray:
        """Algorithm 1, one plan per env: replan from scratch and return a_0 (raw, clipped)."""
        tau = self.sample_plans(observations, self.torch_generator)
        return self._raw_actions(tau[:, self.obs_dim:, 0].cpu().numpy())

    def plan_trajectories(self, s0: np.ndarray, rng: np.random.Generator) -> Plan:
        """Plans from raw s0 (B, obs): states s_0..s_T (B, T+1, obs), actions a_0..a_{T-1} (B, T, act)."""
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 62)))
        states, actions = [], []
        obs = self.obs_dim
        for lo in range(0, s0.shape[0], self.config.plan_batch):
            chunk = np.asarray(s0[lo: lo + self.config.plan_batch], dtype=np.float32)
            tau = self.sample_plans(chunk, gen).transpose(1, 2).cpu().numpy()  # (b, T+1, C)
            st = self.normalizer.denorm_obs(tau[..., :obs])
            st[:, 0] = chunk
            states.append(st)
            actions.append(self._raw_actions(tau[:, :-1, obs:]))
        cfg = self.config
        return Plan(states=np.concatenate(states), actions=np.concatenate(actions),
                    info={"alpha": cfg.alpha, "guidance_lambda": cfg.guidance_lambda,
                          "prop1_mode": cfg.prop1_mode})

    def store_attrs(self) -> dict[str, Any]:
        attrs = super().store_attrs()
        cfg = self.config
        attrs["generator_config"].update(
            guidance={"alpha": cfg.alpha, "reward": cfg.reward_guidance,
                      "transition": cfg.transition_guidance, "lambda": cfg.guidance_lambda,
                      "reading": cfg.guidance_reading},
            rewards="R-hat (augment.world reward model)", cut="first terminal (augment.world.termination)",
            world_config_hash=self.world_config().config_hash())
        return attrs


__all__ = ["ABLATIONS", "DMEMMConfig", "DMEMMPlanner", "PROP1_MODES", "WEIGHT_NORMALIZERS"]
