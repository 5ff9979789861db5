"""The online agents of the locomotion recipes: d3rlpy's SAC (D4RL's choice, the default) or TD3.

:class:`OnlineAgent` hides the difference between the two for the training loop of
:mod:`stores.recipe_training`:

* ``explore(obs)``: the training action. SAC samples its squashed Gaussian policy (d3rlpy
  ``sample_action``); TD3 adds N(0, exploration_noise^2) to its deterministic action; both clipped to
  [-1, 1].
* ``act(obs)``: the deterministic action (SAC: tanh of the mean; TD3: the actor), used for evaluations.
* ``data_policy(rng)``: the policy whose rollouts become the ``medium`` / ``expert`` data. SAC samples
  its policy as D4RL did; TD3 adds N(0, rollout_noise^2). Inside ``rollout_stream(seed)`` its torch
  random numbers come from a forked generator seeded with ``seed``, so recording rollouts does not move
  the training stream.
* ``update(...)``: one gradient step of d3rlpy (batch of (B, obs), (B, act), (B,) arrays).
* ``state_bytes()`` / ``load_state(...)``: every network and optimizer (d3rlpy's checkpointer) plus the
  gradient-step counter (TD3 updates its actor every second step), for checkpoints.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from stores.errors import UserInputError

AGENTS: tuple[str, ...] = ("sac", "td3")


@dataclass(frozen=True)
class AgentConfig:
    """agent: ``sac`` or ``td3``; hidden: actor/critic MLP widths; batch_size: d3rlpy batch;
    exploration_noise / rollout_noise: TD3's action noise std while training / recording data (SAC
    samples its own policy instead)."""

    agent: str = "sac"
    hidden: tuple[int, ...] = (256, 256)
    batch_size: int = 256
    exploration_noise: float = 0.1
    rollout_noise: float = 0.1


@contextlib.contextmanager
def _torch_stream(seed: int) -> Iterator[None]:
    """Run the block on torch's CPU generator seeded with ``seed``, restoring the outer state after."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class OnlineAgent:
    """A d3rlpy SAC or TD3 learner trained one transition at a time (see the module docstring)."""

    def __init__(self, config: AgentConfig, obs_dim: int, act_dim: int, seed: int) -> None:
        import d3rlpy
        import torch

        if config.agent not in AGENTS:
            raise UserInputError(f"unknown recipe agent '{config.agent}'; use one of {', '.join(AGENTS)}")
        self.config = config
        self.obs_dim, self.act_dim = obs_dim, act_dim
        d3rlpy.seed(seed)
        torch.manual_seed(seed)
        encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(config.hidden))
        if config.agent == "sac":
            algo_config: Any = d3rlpy.algos.SACConfig(
                batch_size=config.batch_size, actor_encoder_factory=encoder, critic_encoder_factory=encoder)
        else:
            algo_config = d3rlpy.algos.TD3Config(
                batch_size=config.batch_size, actor_encoder_factory=encoder, critic_encoder_factory=encoder)
        self.algo = algo_config.create(device="cpu:0")
        self.algo.create_impl((obs_dim,), act_dim)
        self._ones = np.ones((config.batch_size, 1), dtype=np.float32)

    @property
    def name(self) -> str:
        return self.config.agent.upper()

    def act(self, obs: np.ndarray) -> np.ndarray:
        """(B, obs) -> (B, act) deterministic actions in [-1, 1]."""
        return np.asarray(self.algo.predict(np.asarray(obs, dtype=np.float32)), dtype=np.float32)

    def explore(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(obs,) -> (act,) the training action (module docstring)."""
        x = np.asarray(obs, dtype=np.float32)[None]
        if self.config.agent == "sac":
            a = np.asarray(self.algo.sample_action(x), dtype=np.float32)[0]
        else:
            a = self.act(x)[0] + self.config.exploration_noise * rng.standard_normal(self.act_dim)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def data_policy(self, rng: np.random.Generator) -> Any:
        """A batched (K, obs) -> (K, act) policy for recorded rollouts (module docstring); call it inside
        :meth:`rollout_stream` so SAC's samples do not move the training stream."""
        sigma = self.config.rollout_noise

        def act(obs: np.ndarray) -> np.ndarray:
            x = np.asarray(obs, dtype=np.float32)
            if self.config.agent == "sac":
                a = np.asarray(self.algo.sample_action(x), dtype=np.float32)
            else:
                a = self.act(x) + sigma * rng.standard_normal((x.shape[0], self.act_dim)).astype(np.float32)
            return np.clip(a, -1.0, 1.0).astype(np.float32)

        return act

    @staticmethod
    def rollout_stream(seed: int) -> contextlib.AbstractContextManager[None]:
        """Torch random numbers from a generator seeded with ``seed`` for the block (outer state kept)."""
        return _torch_stream(seed)

    def update(self, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
               next_observations: np.ndarray, terminals: np.ndarray) -> None:
        """One gradient step on a batch: (B, obs), (B, act), (B,), (B, obs), (B,) arrays."""
        from d3rlpy.dataset import TransitionMiniBatch

        self.algo.update(TransitionMiniBatch(
            observations=observations, actions=actions, rewards=rewards[:, None].astype(np.float32),
            next_observations=next_observations, next_actions=actions,
            terminals=terminals[:, None].astype(np.float32), intervals=self._ones, transitions=[]))

    def state_bytes(self) -> bytes:
        """Networks, optimizers (d3rlpy's checkpointer) and the gradient-step counter, as bytes."""
        buf = io.BytesIO()
        self.algo.impl.save_model(buf)
        head = json.dumps({"grad_step": int(self.algo.grad_step)}).encode()
        return len(head).to_bytes(4, "little") + head + buf.getvalue()

    def load_state(self, data: bytes) -> None:
        """Inverse of :meth:`state_bytes`."""
        n = int.from_bytes(data[:4], "little")
        head = json.loads(data[4:4 + n].decode())
        self.algo.impl.load_model(io.BytesIO(data[4 + n:]))
        self.algo.set_grad_step(int(head["grad_step"]))
