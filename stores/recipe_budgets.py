"""Budgets of the locomotion recipes per profile (env steps, evaluations, sizes, networks).

Env steps are single environment transitions; one gradient update per env step after the warm-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from augment.profiles import by_profile
from stores.recipe_agents import AgentConfig


@dataclass(frozen=True)
class RecipeBudget:
    """Budget of one locomotion recipe run.

    warmup_steps: uniform-random env steps before updates start. medium_max_steps: cap on training env
    steps while waiting for the medium threshold (reaching the cap means "not reached", said loudly).
    expert_steps: cap on training env steps while waiting for the expert threshold. eval_every /
    eval_episodes: evaluation schedule (deterministic policy, mean return over the episodes decides).
    rollout_transitions: size of the random, medium and expert datasets (transitions). rollout_envs:
    environments stepped together for rollouts. max_episode_steps: time limit per episode. hidden:
    actor/critic MLP widths. batch_size: d3rlpy batch. medium_score / expert_score: normalized scores
    of the thresholds (Eq. (1) of :mod:`stores.scores`). exploration_noise / rollout_noise: TD3's
    Gaussian action noise while training / recording (SAC samples its own policy). agent: ``sac``
    (D4RL's) or ``td3``. checkpoint_every: env steps between checkpoints (taken at the next episode end).
    """

    warmup_steps: int
    medium_max_steps: int
    expert_steps: int
    eval_every: int
    eval_episodes: int
    rollout_transitions: int
    rollout_envs: int
    max_episode_steps: int
    hidden: tuple[int, ...]
    batch_size: int
    checkpoint_every: int
    medium_score: float = 33.0
    expert_score: float = 90.0
    exploration_noise: float = 0.1
    rollout_noise: float = 0.1
    agent: str = "sac"

    @property
    def agent_config(self) -> AgentConfig:
        return AgentConfig(agent=self.agent, hidden=self.hidden, batch_size=self.batch_size,
                           exploration_noise=self.exploration_noise, rollout_noise=self.rollout_noise)

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def budget_for(profile: str) -> RecipeBudget:
    """The recipe budget of a profile: ``smoke`` (seconds), ``cpu`` (~10^5 transitions), ``paper`` (D4RL)."""
    return by_profile(
        profile,
        smoke=RecipeBudget(warmup_steps=300, medium_max_steps=1000, expert_steps=1400, eval_every=500,
                           eval_episodes=2, rollout_transitions=1000, rollout_envs=4, max_episode_steps=200,
                           hidden=(32, 32), batch_size=32, checkpoint_every=200),
        cpu=RecipeBudget(warmup_steps=10_000, medium_max_steps=300_000, expert_steps=600_000,
                         eval_every=5_000, eval_episodes=10, rollout_transitions=100_000, rollout_envs=16,
                         max_episode_steps=1000, hidden=(256, 256), batch_size=256, checkpoint_every=5_000),
        paper=RecipeBudget(warmup_steps=10_000, medium_max_steps=1_000_000, expert_steps=1_000_000,
                           eval_every=5_000, eval_episodes=10, rollout_transitions=1_000_000, rollout_envs=32,
                           max_episode_steps=1000, hidden=(256, 256), batch_size=256,
                           checkpoint_every=10_000),
    )
