"""AEPO (aepo.txt): a state-conditioned action diffusion of the behaviour policy, sampled with
DPM-Solver under the guidance of an intermediate energy E_Theta regressed on the analytic target of
Eq. 25 (posterior 1 by default), with IQL critics from d3rlpy. A Policy and a Generator.

* Math: :mod:`augment.diffusion.dpm_solver` (VP schedule, DPM-Solver-1/2/3, guidance and Eq. 45's
  rescale) and :mod:`augment.planners.aepo_math` (Eq. 18, 22, 24, 25, 46, the sigma~^2 table).
* Networks: :mod:`augment.planners.aepo_nets`; critics: :mod:`augment.planners.aepo_critic`; staged
  training and the trained bundle: :mod:`augment.planners.aepo_train`.
* This module: :class:`AEPOConfig` (profiles smoke / cpu / paper, PLANNERS.md Sec. 3.7),
  :func:`sample_actions` (one batched guided solve) and :class:`AEPOPlanner`.

Acting: for observations (B, obs), a_T ~ N(0, I) (B, d); the model function is
eps_hat = eps_theta - omega sigma_t grad E_Theta (score_mu + omega grad E in eps form, Eq. 13 and Sec.
3.4), rescaled to ||eps_theta|| per row when ``rescale`` (Eq. 45); DPM-Solver integrates t = 1 -> t_min
in ``solver_nfe`` model calls; the result is clipped to the action box. One call = one batched solve.

Generating (PLANNERS.md Sec. 3.9, not in the paper): from real start states, ``rollout_length`` steps of
a ~ pi(.|s) and s' from the shared world model (``rollout_length = 1``: single (s, a, s', r)
transitions); rewards from its reward model, cut at the env's terminal rule; the store's attributes
record beta, omega, rescale and the solver settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from augment.diffusion import dpm_solver
from augment.planners.base import Plan, Planner, PlannerConfig
from augment.profiles import by_profile, resolve_profile
from stores.errors import UserInputError, check_settings
from stores.schema import OfflineDataset

ACTORS: tuple[str, ...] = ("diffusion", "iql")
BASELINES: tuple[str, ...] = ("value", "none")


@dataclass(frozen=True)
class AEPOConfig(PlannerConfig):
    """AEPO's settings. Training fields enter the cache key; PLAN_FIELDS only change acting.

    eps_theta (Eq. 7, 14): eps_width x eps_blocks residual blocks (Table 4: 7 x 256/512/1024),
    eps_steps Adam steps of batch eps_batch at eps_lr.
    Schedule [S, QGPO]: VP linear beta_min..beta_max, t in [t_min, 1].
    Critics (Eq. 27): d3rlpy IQL, iql_steps updates, Q and V of iql_hidden (Table 4: 3 x 256), actor of
    iql_actor_hidden, expectile tau, batch iql_batch; q_reduction: ``min`` or ``mean`` over the 2 critics
    for Q and Q'.
    Energy (Eq. 25-26): beta (inverse temperature, in Q's reward-scaled units), posterior 1 (Eq. 22) or 2
    (Eq. 24), nu (Eq. 46), clip_mu (clip mu~ to the action box), energy_baseline (``value``: regress
    E_t - beta V(s); ``none``), table_points x table_samples for the sigma~^2 table, E_Theta of
    energy_hidden trained energy_steps steps of energy_batch at energy_lr.
    Acting: omega (guidance degree), rescale (Eq. 45), solver_nfe model calls of DPM-Solver
    solver_order split as DPM-Solver-fast does, solver_skip (time grid), solver_spacing (``nfe``: one grid
    point per model call as Lu et al.'s singlestep solver; ``step``: one per step), predict_x0
    (data-prediction form, as QGPO), actor (``diffusion`` = AEPO; ``iql`` = d3rlpy IQL's own actor on the
    same critics).
    Generating: rollout_length steps per trajectory in the world model.
    device: ``auto`` (CUDA when present) / ``cpu`` / ``cuda``, where eps_theta, E_Theta, d3rlpy's IQL
    (``cuda:N`` / ``cpu:0``) and the world model train and act (not in the cache key;
    :mod:`augment.planners.devices`).
    """

    eps_width: int = 256
    eps_blocks: int = 7
    eps_steps: int = 1_000_000
    eps_batch: int = 256
    eps_lr: float = 3e-4
    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    iql_steps: int = 1_000_000
    iql_hidden: tuple[int, ...] = (256, 256, 256)
    iql_actor_hidden: tuple[int, ...] = (256, 256)
    expectile: float = 0.7
    iql_batch: int = 256
    q_reduction: str = "min"
    beta: float = 3.0
    posterior: int = 1
    nu: float = 1e-3
    clip_mu: bool = True
    energy_baseline: str = "value"
    table_points: int = 64
    table_samples: int = 8192
    energy_hidden: tuple[int, ...] = (256, 256, 256)
    energy_steps: int = 500_000
    energy_batch: int = 256
    energy_lr: float = 3e-4
    seed: int = 0
    profile: str = "paper"
    omega: float = 1.0
    rescale: bool = True
    solver_nfe: int = 15
    solver_order: int = 2
    solver_skip: str = "time_uniform"
    solver_spacing: str = "nfe"
    predict_x0: bool = True
    actor: str = "diffusion"
    rollout_length: int = 1
    device: str = "auto"

    PLAN_FIELDS: ClassVar[tuple[str, ...]] = ("omega", "rescale", "solver_nfe", "solver_order", "solver_skip",
                                              "solver_spacing", "predict_x0", "actor", "rollout_length")
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {
        "unguided": {"omega": 0.0},
        "no-rescale": {"rescale": False},
        "iql-actor": {"actor": "iql"},
        "posterior2": {"posterior": 2},
    }

    @classmethod
    def for_profile(cls, profile: str | None, dataset_name: str = "") -> AEPOConfig:
        """smoke (tests: seconds), cpu (PLANNERS.md Sec. 3.7, tens of minutes on 2 cores) or paper
        (Table 4 where it speaks; QGPO's defaults and our [S] choices where it does not)."""
        name = resolve_profile(profile)
        base = cls(profile=name)
        return by_profile(
            name,
            smoke=dataclasses.replace(
                base, eps_width=32, eps_blocks=2, eps_steps=20, eps_batch=64, iql_steps=20,
                iql_hidden=(32, 32), iql_actor_hidden=(32, 32), iql_batch=64, table_points=8,
                table_samples=256, energy_hidden=(32, 32), energy_steps=20, energy_batch=64, solver_nfe=3,
                solver_order=1),
            cpu=dataclasses.replace(base, eps_blocks=4, eps_steps=20_000, iql_steps=50_000,
                                    energy_steps=20_000, table_samples=4096),
            paper=base,
        )

    def validate(self) -> None:
        """Raise :class:`UserInputError` for settings that cannot run."""
        checks = (
            (self.posterior in (1, 2), f"posterior must be 1 or 2, got {self.posterior}"),
            (self.solver_order in (1, 2, 3), f"solver_order must be 1, 2 or 3, got {self.solver_order}"),
            (self.solver_nfe >= 1, f"solver_nfe must be >= 1, got {self.solver_nfe}"),
            (self.solver_skip in dpm_solver.SKIP_TYPES,
             f"solver_skip must be one of {', '.join(dpm_solver.SKIP_TYPES)}, got '{self.solver_skip}'"),
            (self.solver_spacing in dpm_solver.SPACINGS,
             f"solver_spacing must be one of {', '.join(dpm_solver.SPACINGS)}, got '{self.solver_spacing}'"),
            (self.q_reduction in ("min", "mean"),
             f"q_reduction must be min or mean, got '{self.q_reduction}'"),
            (self.energy_baseline in BASELINES,
             f"energy_baseline must be one of {', '.join(BASELINES)}, got '{self.energy_baseline}'"),
            (self.actor in ACTORS, f"actor must be one of {', '.join(ACTORS)}, got '{self.actor}'"),
            (self.omega >= 0.0, f"omega must be >= 0, got {self.omega}"),
            (self.beta > 0.0, f"beta must be > 0, got {self.beta}"),
            (self.nu >= 0.0, f"nu must be >= 0, got {self.nu}"),
            (0.0 < self.expectile < 1.0, f"expectile must lie in (0, 1), got {self.expectile}"),
            (0.0 < self.t_min < 1.0, f"t_min must lie in (0, 1), got {self.t_min}"),
            (self.rollout_length >= 1, f"rollout_length must be >= 1, got {self.rollout_length}"),
            (self.table_points >= 2 and self.table_samples >= 1,
             "table_points must be >= 2 and table_samples >= 1"),
            (min(self.eps_steps, self.iql_steps, self.energy_steps) >= 0, "training steps must be >= 0"),
            (min(self.eps_batch, self.iql_batch, self.energy_batch, self.eps_width, self.eps_blocks) >= 1,
             "batch sizes and widths must be >= 1"),
        )
        check_settings(checks, prefix="aepo: ")

    def provenance(self) -> dict[str, Any]:
        """What a store of AEPO data records: beta, omega, rescale, solver steps and the rest of acting."""
        return {"beta": self.beta, "omega": self.omega, "rescale": self.rescale,
                "solver_nfe": self.solver_nfe,
                "solver_order": self.solver_order, "solver_skip": self.solver_skip,
                "solver_spacing": self.solver_spacing,
                "predict_x0": self.predict_x0, "posterior": self.posterior, "q_reduction": self.q_reduction,
                "actor": self.actor, "rollout_length": self.rollout_length}


def sample_actions(models: Any, observations: np.ndarray, config: AEPOConfig, generator: torch.Generator,
                   ) -> np.ndarray:
    """One batched guided DPM-Solver solve: observations (B, obs) raw -> actions (B, d) in the box.

    a_T ~ N(0, I) from ``generator``; model function eps_hat (Eq. 13 / Sec. 3.4 / Eq. 45, see
    :func:`augment.diffusion.dpm_solver.guided_eps`); ``config.solver_nfe`` calls split into orders by
    :func:`augment.diffusion.dpm_solver.fast_orders`. Solves on ``models.device``; a_T is drawn on the
    generator's device (the CPU for the planner's) and moved there.
    """
    s_n = models.norm_obs(observations)
    b, d = s_n.shape[0], models.low.shape[0]
    x = torch.randn(b, d, generator=generator, device=generator.device).to(models.device)

    def eps_fn(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return models.eps_net(s_n, a, t)

    def grad_fn(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return models.energy_net.grad_action(s_n, a, t)

    fn = dpm_solver.guided_eps(eps_fn, grad_fn, models.schedule, float(config.omega),
                               rescale=bool(config.rescale))
    orders = dpm_solver.fast_orders(int(config.solver_nfe), int(config.solver_order))
    with torch.no_grad():
        x0 = dpm_solver.sample(fn, x, models.schedule, orders, t_end=models.schedule.eps,
                               skip=config.solver_skip, predict_x0=bool(config.predict_x0),
                               spacing=config.solver_spacing)
    low, high = models.box()
    return torch.clamp(x0, low, high).cpu().numpy().astype(np.float32)


class AEPOPlanner(Planner):
    """AEPO behind the Planner base: ``fit`` (staged training, cached), ``act`` (one guided solve per
    call), ``generate`` (world-model rollouts with a ~ pi), ``iql_policy()`` (IQL's own actor)."""

    name: ClassVar[str] = "aepo"
    config_class: ClassVar[type] = AEPOConfig

    def __init__(self, config: AEPOConfig, *, progress: bool = True) -> None:
        super().__init__(config, progress=progress)
        self.models: Any = None
        self._dataset: OfflineDataset | None = None

    @classmethod
    def default_config(cls, profile: str, dataset_name: str = "") -> AEPOConfig:
        return AEPOConfig.for_profile(profile, dataset_name)

    # -- training and persistence ----------------------------------------------------------------------
    def prepare(self, dataset: OfflineDataset) -> None:
        self._dataset = dataset

    def train_models(self, dataset: OfflineDataset) -> dict[str, Any]:
        from augment.planners.aepo_train import train_aepo

        self.config.validate()
        self.models, record = train_aepo(dataset, self.config, progress=self.progress, device=self.device,
                                         checkpoint=self.training_checkpoint("aepo"))
        return record

    def save_models(self, directory: Path) -> None:
        self._require_models()
        self.models.save(directory)

    def load_models(self, directory: Path) -> None:
        from augment.planners.aepo_train import AEPOModels

        self.models = AEPOModels.load(directory, self.config, self.obs_dim, self.act_dim, device=self.device)

    def _require_models(self) -> None:
        if self.models is None:
            raise UserInputError("aepo: call fit(dataset) (or load a saved planner) before acting")

    # -- Policy ----------------------------------------------------------------------------------------
    def plan_actions(self, observations: np.ndarray) -> np.ndarray:
        return self._actions(observations, self.torch_generator, count=True)

    def _actions(self, observations: np.ndarray, generator: torch.Generator, *, count: bool) -> np.ndarray:
        self._require_models()
        cfg = self.config
        if cfg.actor == "iql":
            if count:
                self.count_calls("iql_actor")
            return np.asarray(self.models.iql.predict(np.asarray(observations, np.float32)), dtype=np.float32)
        if count:
            self.count_calls("denoiser", int(cfg.solver_nfe))
            if cfg.omega != 0.0:
                self.count_calls("energy_grad", int(cfg.solver_nfe))
        return sample_actions(self.models, observations, cfg, generator)

    def iql_policy(self) -> Any:
        """d3rlpy IQL's own (deterministic) actor, trained with the same critics, as a Policy."""
        from baselines.learners import LearnerPolicy

        self._require_models()
        return LearnerPolicy(self.models.iql)

    # -- Generator -------------------------------------------------------------------------------------
    def _ensure_world(self) -> None:
        if self.world is not None:
            return
        if self._dataset is None:
            raise UserInputError("aepo: generating needs the world model of the dataset; call fit(dataset)")
        self.world = self.fit_world(self._dataset)

    def plan_trajectories(self, s0: np.ndarray, rng: np.random.Generator) -> Plan:
        """``rollout_length`` steps from s0 (B, obs): a_i ~ pi(.|s_i) (AEPO), s_{i+1} ~ T-hat(.|s_i, a_i)."""
        self._ensure_world()
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 62)))
        states = [np.asarray(s0, dtype=np.float32)]
        actions = []
        for _ in range(int(self.config.rollout_length)):
            a = self._actions(states[-1], gen, count=False)
            actions.append(a)
            states.append(np.asarray(self.world.predict_next(states[-1], a, rng), dtype=np.float32))
        return Plan(states=np.stack(states, axis=1), actions=np.stack(actions, axis=1),
                    info=self.config.provenance())

    def store_attrs(self) -> dict[str, Any]:
        attrs = super().store_attrs()
        attrs["generator_config"] = {**attrs["generator_config"], "provenance": self.config.provenance()}
        return attrs
