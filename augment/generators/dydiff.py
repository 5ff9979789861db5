"""DyDiff (dydiff.txt, Algorithm 1): policy-consistent long-horizon rollouts by dynamics diffusion.

Every rollout round (every ``rollout_interval`` learner updates, driven by ``baselines.loop.train``):

1. draw ``B_r`` start states ``s_0`` uniformly from the real transitions (their row index is kept);
2. roll the learning policy ``L`` steps in the single-step model (Eq. 6, ``a_i ~ pi(.|s_i)``,
   ``s_{i+1} ~ T_phi(.|s_i, a_i)``);
3. ``M`` times: sample states from the diffusion model given ``s_0`` and the actions (Eq. 7 / 9,
   Algorithm 2 with hard replacement), take them as the new states (``replace``, the paper's text) or
   average them with the previous ones (``average``, the official code), then let the policy relabel
   the actions from ``s_0`` and the new states (Eq. 8);
4. rewards from the reward model ``r_psi(s, a)`` (Eq. 10), trajectory score (Eq. 11), hardmax or softmax
   filter keeping ``floor(eta * B_r)`` trajectories;
5. each kept trajectory is cut at its first terminal state by the env's termination rule.

Two guards that are not in the paper, off by default (``DyDiffConfig.reward_clip`` / ``state_box``): the
predicted rewards clipped to the data's range (step 4), and each rollout cut before its first state
outside the data's box, with Eq. 11 then summed over the steps kept (steps 4-5).

The math lives in pure functions, re-exported here: :mod:`augment.generators.dydiff_rollout` (Eq. 6-9:
:func:`single_step_rollout`, :func:`relabel_actions`, :func:`refine`) and
:mod:`augment.generators.dydiff_scoring` (Eq. 10-11 and the cut: :func:`trajectory_scores`,
:func:`select_trajectories`, :func:`truncate_at_terminals`); the settings in
:mod:`augment.generators.dydiff_config` (:class:`DyDiffConfig`). :class:`DyDiffGenerator` only wires them
to the world model, the diffusion model and the filters.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from augment.generators.dydiff_config import (
    DYNAMICS_MODES,
    FILTERS,
    ITERATION_RULES,
    POOL_ROUNDS,
    REWARD_CLIPS,
    DyDiffConfig,
    dataset_kind,
)
from augment.generators.dydiff_rollout import (
    _Dynamics,
    _Sampler,
    iteration_update,
    policy_actions,
    refine,
    relabel_actions,
    single_step_rollout,
)
from augment.generators.dydiff_scoring import (
    box_lengths,
    clip_rewards,
    finite_rows,
    kept_batch,
    mask_padding,
    masked_scores,
    select_trajectories,
    state_box,
    trajectory_scores,
    truncate_at_terminals,
)
from stores.errors import UserInputError
from stores.schema import OfflineDataset, TrajectoryBatch

if TYPE_CHECKING:  # pragma: no cover
    from baselines.protocols import Policy

__all__ = [
    "DYNAMICS_MODES", "FILTERS", "ITERATION_RULES", "POOL_ROUNDS", "REWARD_CLIPS", "DyDiffConfig",
    "DyDiffGenerator", "RoundStats", "_Dynamics", "_Sampler", "box_lengths", "clip_rewards", "dataset_kind",
    "finite_rows", "iteration_update", "kept_batch", "mask_padding", "masked_scores", "policy_actions",
    "refine", "relabel_actions", "select_trajectories", "single_step_rollout", "state_box",
    "trajectory_scores", "truncate_at_terminals",
]


@dataclass
class RoundStats:
    """What one :meth:`DyDiffGenerator.generate` call did: counts and wall time per stage (seconds).

    left_box: generated rows that leave the data's exact state box (margin 0) within L steps, counted
        whether or not the cut is on; box_empty: rows the cut dropped because their first synthetic state
        is already outside its box (0 with the cut off);
    rewards_clipped: predicted rewards outside the data's range (counted with or without the clip).
    """

    generated: int = 0
    kept: int = 0
    transitions: int = 0
    terminated: int = 0
    nonfinite: int = 0
    left_box: int = 0
    box_empty: int = 0
    rewards_clipped: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


class DyDiffGenerator:
    """The DyDiff generator (Algorithm 1) behind the ``Generator`` protocol.

    ``fit(dataset)`` trains or loads from cache the single-step world model (with its reward model and
    termination rule) and the trajectory diffusion model of horizon ``config.rollout_length``;
    ``generate(n, policy, rng, round=, learner_step=)`` runs one rollout round from ``n`` start states
    and returns the filtered, truncated :class:`TrajectoryBatch` (generator ``dydiff``).
    """

    name = "dydiff"

    def __init__(self, config: DyDiffConfig, *, world_config: Any | None = None,
                 diffusion_config: Any | None = None, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self._world_config = world_config
        self._diffusion_config = diffusion_config
        self.world: Any | None = None
        self.diffusion: Any | None = None
        self.dataset_name: str = ""
        self.env_id: str | None = None
        self._start_states: np.ndarray | None = None
        self.reward_range: tuple[float, float] | None = None
        self.box: tuple[np.ndarray, np.ndarray] | None = None
        self.data_box: tuple[np.ndarray, np.ndarray] | None = None
        self.last_round: RoundStats | None = None

    # -- configs of the models it fits ----------------------------------------------------------------
    def world_config(self) -> Any:
        """The :class:`augment.world.WorldModelConfig` used (profile defaults unless given)."""
        if self._world_config is None:
            from augment.world import WorldModelConfig

            maker = getattr(WorldModelConfig, "for_profile", None)
            self._world_config = maker(self.config.profile) if maker is not None else WorldModelConfig()
        return self._world_config

    def diffusion_config(self) -> Any:
        """The :class:`TrajectoryDiffusionConfig` used, its horizon set to ``config.rollout_length``."""
        if self._diffusion_config is None:
            from augment.diffusion.trajectory import TrajectoryDiffusionConfig

            self._diffusion_config = TrajectoryDiffusionConfig.for_profile(self.config.profile)
        cfg = self._diffusion_config
        if int(cfg.horizon) != self.config.rollout_length:
            cfg = dataclasses.replace(cfg, horizon=self.config.rollout_length)
            self._diffusion_config = cfg
        return cfg

    # -- Generator protocol -----------------------------------------------------------------------------
    def fit(self, dataset: OfflineDataset) -> None:
        """Train (or load from the cache keyed by dataset and config hashes, not the device) both models,
        each on the diffusion config's ``device`` (``auto``: CUDA when present)."""
        from augment.diffusion.trajectory import fit_trajectory_diffusion
        from augment.world import fit_world_model

        self._set_data(dataset)
        device = getattr(self.diffusion_config(), "device", "auto")
        self.world = fit_world_model(dataset, self.world_config(), progress=self.progress, cache=True,
                                     device=device)
        self.diffusion = fit_trajectory_diffusion(dataset, self.diffusion_config(), progress=self.progress,
                                                  cache=True)
        self._check_horizon()

    def attach(self, dataset: OfflineDataset, world: Any, diffusion: Any) -> None:
        """Use already-fitted models (the diagnostics and benchmarks share them) with ``dataset``."""
        self._set_data(dataset)
        self.world = world
        self.diffusion = diffusion
        self._check_horizon()

    def _set_data(self, dataset: OfflineDataset) -> None:
        """The dataset's name, env, start states, reward range and state box (the guards' bounds)."""
        t = dataset.transitions
        self.dataset_name = dataset.name
        self.env_id = dataset.env_id
        self._start_states = t.observations
        self.reward_range = (float(t.rewards.min()), float(t.rewards.max()))
        states = np.concatenate([t.observations, t.next_observations])
        self.data_box = state_box(states, 0.0)
        margin = self.config.state_box
        self.box = None if margin is None else state_box(states, margin)

    def _check_horizon(self) -> None:
        horizon = int(getattr(self.diffusion, "horizon", self.config.rollout_length))
        if horizon != self.config.rollout_length:
            raise UserInputError(
                f"the diffusion model was trained on {horizon}-step windows but the rollout length is "
                f"{self.config.rollout_length}; pass --rollout-length {horizon} or retrain")

    def _require_fitted(self) -> None:
        if self.world is None or self.diffusion is None or self._start_states is None:
            raise UserInputError("DyDiffGenerator.generate() called before fit(dataset); fit it first")

    def network_evaluations(self) -> dict[str, int]:
        """Network evaluations per generated trajectory, by network (policy, dynamics, denoiser, reward)."""
        self._require_fitted()
        length, m = self.config.rollout_length, self.config.iterations
        per_sample = getattr(self.diffusion, "network_evaluations_for", None)
        nfe = int(per_sample(self.config.sdedit_sigma) if per_sample is not None
                  else getattr(self.diffusion, "network_evaluations_per_sample", 0))
        evals = {"policy": length * (m + 1), "dynamics": length, "denoiser": m * nfe, "reward": length}
        evals["total"] = sum(evals.values())
        return evals

    def store_attrs(self) -> dict[str, Any]:
        """JSON-native attributes describing this generator for the run's store (the store's provenance
        keys ``generator_name`` / ``generator_config`` / ``env_id``) and config.json."""
        cfg = self.config
        return {"generator_name": self.name, "env_id": self.env_id, "generator_config": {
            "iterations": cfg.iterations, "filter": cfg.filter, "eta": cfg.eta,
            "temperature": cfg.temperature, "rollout_length": cfg.rollout_length,
            "rollout_batch": cfg.rollout_batch, "rollout_interval": cfg.rollout_interval,
            "real_ratio": cfg.real_ratio, "sample_batch": cfg.sample_batch, "profile": cfg.profile,
            "iteration_rule": cfg.iteration_rule, "dynamics": cfg.dynamics, "sdedit_sigma": cfg.sdedit_sigma,
            "max_synthetic": cfg.max_synthetic, "reward_clip": cfg.reward_clip, "state_box": cfg.state_box,
            "dataset": self.dataset_name}}

    def rollout(self, s0: np.ndarray, policy: Policy, rng: np.random.Generator,
                ) -> tuple[np.ndarray, np.ndarray]:
        """Steps 2-3 of Algorithm 1 for one chunk: Eq. 6, then M rounds of Eq. 7/9 + Eq. 8.

        s0: (b, obs). Returns states (b, L+1, obs) and actions (b, L, act) of tau_DM^(M) (tau_dyn if M=0).
        """
        assert self.world is not None and self.diffusion is not None
        cfg = self.config
        policy.reset(int(s0.shape[0]))
        states, actions = single_step_rollout(s0, policy, self.world, cfg.rollout_length, rng,
                                              mean=cfg.dynamics == "mean")
        refined, actions = refine(s0, actions, policy, self.diffusion, cfg.iterations, rng, states=states,
                                  rule=cfg.iteration_rule, sdedit_sigma=cfg.sdedit_sigma)
        if refined is not None:
            states = refined
        return states, actions

    def generate(self, n: int, policy: Policy | None, rng: np.random.Generator, *, round: int = 0,
                 learner_step: int = 0) -> TrajectoryBatch:
        """One rollout round (Algorithm 1, lines 4-15) from ``n`` (= B_r) start states.

        Returns the floor(eta * n) kept trajectories (fewer only if rollouts went non-finite or, with the
        state box on, left it at their first step), each cut at its first terminal (and, with the box on,
        before its first state outside it); provenance: round, learner_step, filter_score (Eq. 11),
        start_index.
        """
        import time

        self._require_fitted()
        assert self._start_states is not None and self.world is not None
        if policy is None:
            raise UserInputError("DyDiff rolls out the learning policy; pass a policy to generate()")
        if n < 1:
            raise UserInputError(f"rollout batch must be >= 1 (got {n})")
        cfg = self.config
        if (cfg.state_box is not None and self.box is None) or (cfg.reward_clip == "data"
                                                                and self.reward_range is None):
            raise UserInputError("the reward clip / state box need the dataset's ranges: call "
                                 "fit(dataset) or attach(dataset, world, diffusion) before generate()")
        stats = RoundStats(generated=n)
        t0 = time.perf_counter()
        start_index = rng.integers(0, self._start_states.shape[0], size=n).astype(np.int64)
        s0_all = self._start_states[start_index]
        chunks_states, chunks_actions = [], []
        for lo in range(0, n, cfg.sample_batch):
            states, actions = self.rollout(s0_all[lo: lo + cfg.sample_batch], policy, rng)
            chunks_states.append(states)
            chunks_actions.append(actions)
        states = np.concatenate(chunks_states)
        actions = np.concatenate(chunks_actions)
        t1 = time.perf_counter()
        b, length, obs_size = states.shape[0], cfg.rollout_length, states.shape[-1]
        flat_s = states[:, :length].reshape(b * length, obs_size)
        flat_a = actions.reshape(b * length, actions.shape[-1])
        rewards = np.asarray(self.world.predict_reward(flat_s, flat_a), dtype=np.float32).reshape(b, length)
        if self.reward_range is not None:
            low, high = self.reward_range
            stats.rewards_clipped = int(((rewards < low) | (rewards > high)).sum())
            if cfg.reward_clip == "data":
                rewards = clip_rewards(rewards, low, high)
        flags = np.asarray(self.world.is_terminal(states[:, 1:].reshape(b * length, obs_size)),
                           dtype=bool).reshape(b, length)
        finite = finite_rows(states, actions, rewards)
        stats.nonfinite = int((~finite).sum())
        if self.data_box is not None:
            stats.left_box = int((box_lengths(states, *self.data_box) < length).sum())
        in_box: np.ndarray | None = None
        if self.box is not None:
            in_box = box_lengths(states, *self.box)
            stats.box_empty = int((in_box == 0).sum())
            scores = masked_scores(rewards, in_box)
        else:
            scores = trajectory_scores(rewards)
        scores = np.where(finite, scores, -np.inf)
        keep = select_trajectories(scores, cfg.filter, cfg.eta, cfg.temperature, rng)
        batch = kept_batch(states, actions, rewards, flags, keep, generator=self.name, round=round,
                           learner_step=learner_step, filter_score=scores[keep].astype(np.float32),
                           start_index=start_index[keep], max_lengths=in_box)
        stats.kept, stats.transitions = batch.batch_size, batch.num_transitions
        stats.terminated = int(batch.terminals.any(axis=1).sum())
        stats.seconds = {"rollout": t1 - t0, "score_filter": time.perf_counter() - t1}
        self.last_round = stats
        return batch

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write dydiff.json (config + model configs) and the world and diffusion models under it."""
        self._require_fitted()
        assert self.world is not None and self.diffusion is not None
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.world.save(directory / "world")
        self.diffusion.save(directory / "diffusion")
        meta = {"config": self.config.to_json(), "dataset": self.dataset_name, "env_id": self.env_id}
        (directory / "dydiff.json").write_text(json.dumps(meta, indent=2))

    def load(self, directory: Path) -> None:
        """Load what :meth:`save` wrote. The start states come from the dataset: call :meth:`fit` or
        :meth:`attach` with it, or set them with :meth:`set_start_states`."""
        from augment.diffusion.trajectory import TrajectoryDiffusion
        from augment.world import WorldModel

        directory = Path(directory)
        meta_path = directory / "dydiff.json"
        if not meta_path.exists():
            raise UserInputError(f"{directory} holds no dydiff.json; point to a directory written by save()")
        meta = json.loads(meta_path.read_text())
        self.config = DyDiffConfig.from_json(dict(meta["config"]))
        self.dataset_name = meta.get("dataset", "")
        self.env_id = meta.get("env_id")
        self.world = WorldModel.load(directory / "world")
        self.diffusion = TrajectoryDiffusion.load(directory / "diffusion")
        self._check_horizon()

    def set_start_states(self, observations: np.ndarray) -> None:
        """Set the pool of real start states (N, obs) that ``start_index`` refers to."""
        self._start_states = np.asarray(observations, dtype=np.float32)
