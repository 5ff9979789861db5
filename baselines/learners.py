"""Offline RL learners: TD3+BC, CQL and IQL as d3rlpy configs with scalers from dataset statistics.

Nothing here re-implements an algorithm; each learner is a d3rlpy config with the standard
hyper-parameters of its paper:

* ``td3bc`` - Fujimoto & Gu (2021): alpha = 2.5, policy noise 0.2 clipped at 0.5, actor updated every 2
  critic updates, states normalised by the dataset mean and std.
* ``cql`` - Kumar et al. (2020) with d3rlpy 2.8.1's defaults (conservative weight 5, 10 action samples),
  states normalised.
* ``iql`` - Kostrikov et al. (2022): expectile tau = 0.7, inverse temperature beta = 3.0, rewards scaled
  by 1000 / (max episode return - min episode return) as the paper does on locomotion, cosine decay of
  the actor's learning rate over the training steps when they are known.

Scalers are built from :attr:`stores.schema.OfflineDataset.stats`, so no ``fit`` on a d3rlpy dataset is
needed; the impl is created at once (``create_impl``).
"""

from __future__ import annotations

from typing import Any

import d3rlpy
import numpy as np
import torch
from d3rlpy.algos import QLearningAlgoBase

from baselines.learner_names import LEARNERS, STOCHASTIC_LEARNERS, check_learner
from stores.schema import DatasetStats, OfflineDataset

__all__ = ["LEARNERS", "STOCHASTIC_LEARNERS", "check_learner", "learner_config", "make_learner",
           "LearnerPolicy", "rollout_policy"]



def observation_scaler(stats: DatasetStats) -> d3rlpy.preprocessing.StandardObservationScaler:
    """(s - mean) / std with the dataset's per-dimension statistics (obs,), no fitting."""
    return d3rlpy.preprocessing.StandardObservationScaler(
        mean=np.asarray(stats.obs_mean, dtype=np.float32), std=np.asarray(stats.obs_std, dtype=np.float32))


def iql_reward_multiplier(stats: DatasetStats) -> float:
    """IQL's locomotion reward scale 1000 / (max return - min return) (Kostrikov et al. 2022, App. B).

    Falls back to 1.0 when all episode returns are equal (a single episode or constant returns).
    """
    spread = float(stats.return_max - stats.return_min)
    return 1000.0 / spread if spread > 1e-6 else 1.0


def learner_config(name: str, stats: DatasetStats, *, batch_size: int = 256,
                   total_steps: int | None = None) -> d3rlpy.base.LearnableConfig:
    """The d3rlpy config of learner ``name`` with scalers from ``stats``.

    ``total_steps`` (updates) sets IQL's cosine schedule of the actor learning rate; None keeps it constant.
    """
    check_learner(name)
    obs_scaler = observation_scaler(stats)
    if name == "td3bc":
        return d3rlpy.algos.TD3PlusBCConfig(
            batch_size=batch_size, actor_learning_rate=3e-4, critic_learning_rate=3e-4,
            target_smoothing_sigma=0.2, target_smoothing_clip=0.5, alpha=2.5, update_actor_interval=2,
            observation_scaler=obs_scaler)
    if name == "cql":
        return d3rlpy.algos.CQLConfig(batch_size=batch_size, observation_scaler=obs_scaler)
    actor_optim: Any = d3rlpy.optimizers.AdamFactory()
    if total_steps is not None and total_steps > 0:
        actor_optim = d3rlpy.optimizers.AdamFactory(
            lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=int(total_steps)))
    return d3rlpy.algos.IQLConfig(
        batch_size=batch_size, actor_learning_rate=3e-4, critic_learning_rate=3e-4,
        expectile=0.7, weight_temp=3.0, max_weight=100.0, actor_optim_factory=actor_optim,
        observation_scaler=obs_scaler,
        reward_scaler=d3rlpy.preprocessing.MultiplyRewardScaler(multiplier=iql_reward_multiplier(stats)))


def make_learner(name: str, dataset: OfflineDataset, *, seed: int = 0, device: str = "cpu:0",
                 batch_size: int = 256, total_steps: int | None = None) -> QLearningAlgoBase:
    """A d3rlpy learner for ``dataset`` with its impl created and networks initialised from ``seed``.

    The networks' initial weights come from torch's global generator, seeded here with ``seed``.
    """
    config = learner_config(name, dataset.stats, batch_size=batch_size, total_steps=total_steps)
    algo = config.create(device=device)
    torch.manual_seed(int(seed))
    algo.create_impl((dataset.observation_size,), dataset.action_size)
    return algo


class LearnerPolicy:
    """A d3rlpy learner as a :class:`baselines.protocols.Policy`.

    ``act(observations (B, obs) float32) -> (B, act) float32``: the deterministic ``predict`` (greedy action),
    or ``sample_action`` (a ~ pi(.|s), drawn with torch's global generator) when ``stochastic``.
    """

    def __init__(self, algo: QLearningAlgoBase, *, stochastic: bool = False) -> None:
        self.algo = algo
        self.stochastic = stochastic

    def act(self, observations: np.ndarray) -> np.ndarray:
        obs = np.ascontiguousarray(observations, dtype=np.float32)
        if obs.ndim == 1:
            obs = obs[None]
        out = self.algo.sample_action(obs) if self.stochastic else self.algo.predict(obs)
        return np.asarray(out, dtype=np.float32)

    def reset(self, n: int) -> None:
        """Nothing to reset: d3rlpy actors are memoryless."""


def rollout_policy(algo: QLearningAlgoBase, name: str) -> LearnerPolicy:
    """The policy a generator should roll out (DyDiff Eq. 8, a ~ pi(.|s)).

    Stochastic for ``cql`` / ``iql`` (Gaussian actors), deterministic for ``td3bc`` (a deterministic actor).
    """
    return LearnerPolicy(algo, stochastic=check_learner(name) in STOCHASTIC_LEARNERS)
