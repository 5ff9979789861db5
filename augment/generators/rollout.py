"""Single-step model rollouts (MBPO, Janner et al. 2019; MOPO, Yu et al. 2020) as a generator.

From ``n`` start states drawn uniformly from the real transitions, the policy is rolled ``h`` steps in
the world model DyDiff uses (:mod:`augment.world`: Gaussian ensemble, a uniformly drawn elite per row
and step, reward model r_psi, termination rule):

    a_t = pi(s_t),  s_{t+1} ~ T_phi(. | s_t, a_t),  r_t = r_psi(s_t, a_t) - lambda u(s_t, a_t),

    u(s, a) = max_k || Sigma_k(s, a) ||_F   (MOPO Eq. 6 / Algorithm 2: the largest Frobenius norm of
                                              the elites' predicted standard deviations, raw units)

and each row is cut at its first terminal state. ``lambda = 0`` (the default) is MBPO; ``lambda > 0`` is
MOPO's uncertainty-penalised reward. MBPO uses h in 1..5 on these tasks; MOPO h = 5, lambda = 1 on
hopper. This is *not* DyDiff with M = 0: there is no fixed horizon L shared with a diffusion model and no
reward filter; every finite rollout is kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from augment.generators.dydiff import DyDiffConfig, finite_rows, kept_batch, policy_actions
from augment.profiles import resolve_profile
from stores.errors import UserInputError, check_settings
from stores.schema import OfflineDataset, TrajectoryBatch

if TYPE_CHECKING:  # pragma: no cover
    from baselines.protocols import Policy


@dataclass(frozen=True)
class RolloutConfig:
    """Settings of single-step rollouts.

    horizon: h, steps per rollout (MBPO 1-5). penalty: MOPO's lambda (0 = MBPO, no penalty).
    deterministic: use the elites' mean next state instead of sampling (MBPO and MOPO sample).
    rollout_batch: start states per round; rollout_interval: learner updates between rounds (when the
    training loop drives it); real_ratio, max_synthetic: the training mix and the synthetic FIFO's
    capacity of an augmented run (the learner's budget belongs to ``baselines.loop.TrainConfig``).
    profile / dataset: what :meth:`for_profile` was asked for.
    notes: how a profile's settings were chosen.
    """

    horizon: int = 5
    penalty: float = 0.0
    deterministic: bool = False
    rollout_batch: int = 2048
    rollout_interval: int = 500
    real_ratio: float = 0.6
    max_synthetic: int = 2_000_000
    profile: str = "paper"
    dataset: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        checks = (
            (self.horizon >= 1, f"rollout horizon h must be >= 1 (got {self.horizon})"),
            (self.penalty >= 0.0 and math.isfinite(self.penalty),
             f"MOPO penalty lambda must be >= 0 (got {self.penalty})"),
            (self.rollout_batch >= 1, f"rollout batch must be >= 1 (got {self.rollout_batch})"),
            (self.rollout_interval >= 1, f"rollout interval must be >= 1 (got {self.rollout_interval})"),
            (0.0 <= self.real_ratio <= 1.0, f"real ratio must lie in [0, 1] (got {self.real_ratio})"),
        )
        check_settings(checks)

    @classmethod
    def for_profile(cls, profile: str | None, dataset_name: str = "", **overrides: Any) -> RolloutConfig:
        """Defaults that give the same synthetic volume per round as DyDiff at this profile and dataset.

        DyDiff keeps floor(eta B_r) trajectories of L steps per round; rollouts of h steps get
        ceil(floor(eta B_r) L / h) start states, with DyDiff's interval, real ratio, buffer and learner
        ``overrides`` replace fields (``horizon`` first, so the batch follows it).
        """
        name = resolve_profile(profile)
        dy = DyDiffConfig.for_profile(name, dataset_name)
        horizon = int(overrides.pop("horizon", 5))
        batch = int(math.ceil(dy.kept_per_round * dy.rollout_length / horizon))
        notes = (f"rollout batch {batch} start states of h={horizon}: the synthetic transitions per round of "
                 f"DyDiff at this profile ({dy.kept_per_round} kept x L={dy.rollout_length})",
                 f"every {dy.rollout_interval} updates, real ratio {dy.real_ratio}, buffer "
                 f"{dy.max_synthetic:,}, as DyDiff (MBPO itself trains at real ratio 0.05)")
        cfg = cls(horizon=horizon, rollout_batch=batch, rollout_interval=dy.rollout_interval,
                  real_ratio=dy.real_ratio, max_synthetic=dy.max_synthetic, profile=name,
                  dataset=str(dataset_name), notes=notes)
        return dataclasses.replace(cfg, **overrides) if overrides else cfg

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["notes"] = list(self.notes)
        return data

    def explain(self) -> list[str]:
        kind = f"MOPO lambda={self.penalty}" if self.penalty > 0 else "MBPO (no penalty)"
        head = (f"single-step rollouts ({self.profile}): h={self.horizon}, {kind}, {self.rollout_batch} "
                f"start states every {self.rollout_interval} updates, real ratio {self.real_ratio}")
        return [head] + [f"  - {note}" for note in self.notes]


# ----------------------------------------------------------------------------------------------------
# pure functions
# ----------------------------------------------------------------------------------------------------

def mopo_uncertainty(stds: np.ndarray) -> np.ndarray:
    """u(s, a) = max_k ||Sigma_k||_F for diagonal Gaussians: stds (K, B, obs) -> (B,) float32
    (max over members of sqrt(sum_j std_j^2))."""
    s = np.asarray(stds, dtype=np.float64)
    return np.sqrt((s ** 2).sum(axis=-1)).max(axis=0).astype(np.float32)


def penalized_rewards(rewards: np.ndarray, uncertainty: np.ndarray, penalty: float) -> np.ndarray:
    """MOPO Eq. 6: r~ = r - lambda u (any matching shapes), float32."""
    r = np.asarray(rewards, np.float64) - penalty * np.asarray(uncertainty, np.float64)
    return r.astype(np.float32)


def model_rollout(s0: np.ndarray, policy: Policy, world: Any, horizon: int, rng: np.random.Generator, *,
                  penalty: float = 0.0, deterministic: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Roll ``policy`` ``horizon`` steps in ``world`` from s0 (B, obs).

    Returns states (B, h+1, obs), actions (B, h, act), rewards (B, h) (penalised when penalty > 0),
    uncertainty (B, h) (u(s_t, a_t); zeros when not needed) and terminal flags (B, h) (rule on s_{t+1}).
    Steps after a row's first terminal are still computed (and later cut as padding).
    """
    states = [np.asarray(s0, dtype=np.float32)]
    actions, rewards, uncert, flags = [], [], [], []
    for _ in range(horizon):
        s = states[-1]
        a = policy_actions(policy, s)
        if penalty > 0.0:
            _, stds = world.predict_next_distribution(s, a)
            u = mopo_uncertainty(stds)
        else:
            u = np.zeros(s.shape[0], np.float32)
        nxt = np.asarray(world.predict_next(s, a, rng, deterministic=deterministic), dtype=np.float32)
        r = np.asarray(world.predict_reward(s, a), dtype=np.float32)
        actions.append(a)
        rewards.append(penalized_rewards(r, u, penalty))
        uncert.append(u)
        flags.append(np.asarray(world.is_terminal(nxt), dtype=bool))
        states.append(nxt)
    return (np.stack(states, axis=1), np.stack(actions, axis=1), np.stack(rewards, axis=1),
            np.stack(uncert, axis=1), np.stack(flags, axis=1))


# ----------------------------------------------------------------------------------------------------
# the generator
# ----------------------------------------------------------------------------------------------------

class RolloutGenerator:
    """MBPO / MOPO rollouts behind the ``Generator`` protocol (generator name ``rollout``).

    ``fit(dataset)`` trains or loads the cached world model (the same cache entry DyDiff uses at the same
    profile) and picks the termination rule (env rule, learned from the data's terminals, or none);
    ``generate(n, policy, rng)`` rolls out from n real start states; provenance per trajectory: round,
    learner_step, start_index; filter_score holds the mean MOPO uncertainty of the row's steps (NaN
    without a penalty).
    """

    name = "rollout"

    def __init__(self, config: RolloutConfig | None = None, *, world_config: Any | None = None,
                 progress: bool = True) -> None:
        self.config = config or RolloutConfig.for_profile(None)
        self._world_config = world_config
        self.progress = progress
        self.world: Any | None = None
        self.dataset_name = ""
        self.env_id: str | None = None
        self.termination: dict[str, Any] = {}
        self._start_states: np.ndarray | None = None
        self.last_round: dict[str, Any] = {}

    def world_config(self) -> Any:
        """The :class:`augment.world.WorldModelConfig` (the profile's unless given)."""
        if self._world_config is None:
            from augment.world import WorldModelConfig

            self._world_config = WorldModelConfig.for_profile(self.config.profile)
        return self._world_config

    def fit(self, dataset: OfflineDataset) -> None:
        """World model from the cache (or trained), start states and termination for ``dataset``."""
        from augment.generators.data_termination import apply_data_termination, quiet_fallback_warning
        from augment.world import fit_world_model

        self.dataset_name, self.env_id = dataset.name, dataset.env_id
        self._start_states = dataset.transitions.observations
        with quiet_fallback_warning(dataset):
            self.world = fit_world_model(dataset, self.world_config(), progress=self.progress, cache=True)
        self.termination = apply_data_termination(self.world, dataset)

    def attach(self, dataset: OfflineDataset, world: Any) -> None:
        """Use an already-fitted world model with ``dataset`` (benchmarks and tests share one)."""
        from augment.generators.data_termination import apply_data_termination

        self.dataset_name, self.env_id = dataset.name, dataset.env_id
        self._start_states = dataset.transitions.observations
        self.world = world
        self.termination = apply_data_termination(world, dataset)

    def set_start_states(self, observations: np.ndarray) -> None:
        """The pool (N, obs) of real start states that ``start_index`` refers to."""
        self._start_states = np.asarray(observations, dtype=np.float32)

    def network_evaluations(self) -> dict[str, int]:
        """Network evaluations per trajectory (policy, dynamics, reward), h of each."""
        h = self.config.horizon
        evals = {"policy": h, "dynamics": h * (2 if self.config.penalty > 0 else 1), "reward": h}
        evals["total"] = sum(evals.values())
        return evals

    def generate(self, n: int, policy: Policy | None, rng: np.random.Generator, *, round: int = 0,
                 learner_step: int = 0) -> TrajectoryBatch:
        """h-step rollouts of ``policy`` from n uniformly drawn real start states, cut at terminals."""
        if self.world is None or self._start_states is None:
            raise UserInputError("RolloutGenerator.generate() called before fit(dataset); fit it first")
        if policy is None:
            raise UserInputError("single-step rollouts roll out a policy; pass one (e.g. --policy behavior)")
        if n < 1:
            raise UserInputError(f"rollout batch must be >= 1 (got {n})")
        cfg = self.config
        t0 = time.perf_counter()
        start_index = rng.integers(0, self._start_states.shape[0], size=n).astype(np.int64)
        policy.reset(n)
        states, actions, rewards, uncert, flags = model_rollout(
            self._start_states[start_index], policy, self.world, cfg.horizon, rng, penalty=cfg.penalty,
            deterministic=cfg.deterministic)
        keep = np.flatnonzero(finite_rows(states, actions, rewards))

        def mean_uncertainty(lengths: np.ndarray) -> np.ndarray:  # over each kept row's real steps
            valid = np.arange(cfg.horizon)[None, :] < lengths[:, None]
            score = (np.where(valid, uncert[keep], 0.0).sum(axis=1) / lengths).astype(np.float32)
            return score if cfg.penalty > 0.0 else np.full(keep.size, np.nan, np.float32)

        batch = kept_batch(states, actions, rewards, flags, keep, generator=self.name, round=round,
                           learner_step=learner_step, filter_score=mean_uncertainty,
                           start_index=start_index[keep])
        k = keep.size
        self.last_round = {"generated": int(n), "kept": int(k), "nonfinite": int(n - k),
                           "transitions": batch.num_transitions,
                           "terminated": int(batch.terminals.any(axis=1).sum()),
                           "mean_uncertainty": float(uncert.mean()) if cfg.penalty > 0 else None,
                           "seconds": time.perf_counter() - t0}
        return batch

    def store_attrs(self) -> dict[str, Any]:
        """Provenance for the store: generator name/config, env id, termination choice."""
        cfg = self.config
        return {"generator_name": self.name, "env_id": self.env_id, "termination": self.termination,
                "generator_config": {"horizon": cfg.horizon, "penalty": cfg.penalty,
                                     "deterministic": cfg.deterministic, "rollout_batch": cfg.rollout_batch,
                                     "rollout_interval": cfg.rollout_interval, "real_ratio": cfg.real_ratio,
                                     "profile": cfg.profile, "dataset": self.dataset_name}}

    def diagnostics(self) -> dict[str, Any]:
        """Offline diagnostics of the world model (holdout errors in raw units)."""
        if self.world is None:
            return {}
        rep = getattr(self.world, "report", {}) or {}
        return {k: rep.get(k) for k in ("holdout_next_state_mse_raw", "holdout_reward_mse_raw",
                                         "elite_holdout_mse") if k in rep}

    def save(self, directory: Path) -> None:
        """rollout.json (config, dataset, termination) and the world model under ``directory``."""
        if self.world is None:
            raise UserInputError("RolloutGenerator.save() called before fit(dataset)")
        directory = Path(directory)
        self.world.save(directory / "world")
        meta = {"config": self.config.to_json(), "dataset": self.dataset_name, "env_id": self.env_id,
                "termination": self.termination}
        (directory / "rollout.json").write_text(json.dumps(meta, indent=2))

    def load(self, directory: Path) -> None:
        """Read what :meth:`save` wrote. Start states (and a learned termination rule) come from the
        dataset: call :meth:`attach` or :meth:`set_start_states` before generating."""
        from augment.world import WorldModel

        directory = Path(directory)
        if not (directory / "rollout.json").is_file():
            raise UserInputError(f"{directory} holds no rollout.json; point to a directory written by save()")
        meta = json.loads((directory / "rollout.json").read_text())
        cfg = dict(meta["config"])
        cfg["notes"] = tuple(cfg.get("notes", ()))
        self.config = RolloutConfig(**cfg)
        self.dataset_name, self.env_id = meta.get("dataset", ""), meta.get("env_id")
        self.termination = meta.get("termination", {})
        self.world = WorldModel.load(directory / "world")
