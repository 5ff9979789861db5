"""The MuJoCo side of the diagnostics (dydiff.txt Sec. 4.3, App. D.3 / E.5): put the simulator into an
observed state, replay actions open loop, roll the policy closed loop, check one-step consistency.

Locomotion observations are ``qpos[1:]`` and ``qvel``: the unobserved x position is set to 0 (no dynamics
depend on it). Re-exported by :mod:`augment.diagnose`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from augment.generators.dydiff import policy_actions
from baselines.protocols import Policy
from stores.errors import UserInputError


def qpos_qvel_from_observation(obs: np.ndarray, nq: int, nv: int) -> tuple[np.ndarray, np.ndarray]:
    """Invert the locomotion observation ``[qpos[1:], qvel]`` (obs,) -> qpos (nq,) with x = 0, qvel (nv,).

    A full-state observation ``[qpos, qvel]`` (nq + nv entries: maze2d's x, y, vx, vy) is split as is.
    """
    if obs.shape[-1] == nq + nv:
        return np.asarray(obs[:nq], dtype=np.float64), np.asarray(obs[nq:], dtype=np.float64)
    if obs.shape[-1] != nq - 1 + nv:
        raise UserInputError(
            f"observation of size {obs.shape[-1]} is not [qpos[1:] ({nq - 1}), qvel ({nv})]: the "
            "diagnostics need a MuJoCo locomotion env (Hopper, Walker2d, HalfCheetah)")
    qpos = np.concatenate([[0.0], obs[: nq - 1]]).astype(np.float64)
    qvel = np.asarray(obs[nq - 1: nq - 1 + nv], dtype=np.float64)
    return qpos, qvel


class _Simulator:
    """One unwrapped MuJoCo env that can be put into the state an observation describes."""

    def __init__(self, env_id: str) -> None:
        import gymnasium as gym

        from stores.sources import install_mujoco_warning_handler

        install_mujoco_warning_handler()  # MuJoCo's warnings to the log, not MUJOCO_LOG.TXT in the cwd
        try:
            self.env = gym.make(env_id)
        except gym.error.Error as exc:  # unknown / unavailable env id
            raise UserInputError(f"cannot make env '{env_id}' for the diagnostics: {exc}") from exc
        self.core: Any = self.env.unwrapped
        if not hasattr(self.core, "set_state") or not hasattr(self.core, "model"):
            self.env.close()
            raise UserInputError(f"env '{env_id}' is not a MuJoCo env; the diagnostics need qpos/qvel")
        self.nq, self.nv = int(self.core.model.nq), int(self.core.model.nv)
        self.low, self.high = self.env.action_space.low, self.env.action_space.high
        self.env.reset(seed=0)

    def set_observation(self, obs: np.ndarray) -> np.ndarray:
        qpos, qvel = qpos_qvel_from_observation(np.asarray(obs, dtype=np.float64), self.nq, self.nv)
        self.core.set_state(qpos, qvel)
        return np.asarray(self.core._get_obs(), dtype=np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        obs, _, terminated, _, _ = self.core.step(np.clip(action, self.low, self.high))
        return np.asarray(obs, dtype=np.float32), bool(terminated)

    def close(self) -> None:
        self.env.close()


def replay_actions(env_id: str, s0: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Execute ``actions`` open-loop in MuJoCo from each start state.

    s0: (B, obs); actions: (B, L, act) clipped to the env's action box. Returns sim states (B, L+1, obs)
    float32 (``[:, 0]`` is the observation after setting the state) and ``terminal_step`` (B,) int64, the
    first step t (0-based, state s_{t+1}) where the env's termination rule held, -1 when none. The physics
    keeps running past a termination (the unwrapped env is stepped directly) so every step has a
    reference state.
    """
    sim = _Simulator(env_id)
    b, length = actions.shape[:2]
    out = np.zeros((b, length + 1, s0.shape[-1]), dtype=np.float32)
    terminal_step = np.full(b, -1, dtype=np.int64)
    try:
        for i in range(b):
            out[i, 0] = sim.set_observation(s0[i])
            for t in range(length):
                out[i, t + 1], terminated = sim.step(actions[i, t])
                if terminated and terminal_step[i] < 0:
                    terminal_step[i] = t
    finally:
        sim.close()
    return out, terminal_step


def closed_loop_rollout(env_id: str, s0: np.ndarray, policy: Policy, length: int,
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference of Sec. 4.3: ``policy`` rolled ``length`` steps in MuJoCo from each ``s_0``.

    a_t = pi(s_t) on the simulator's own states (all B rows step together, so the policy sees batches).
    Returns states (B, L+1, obs) float32, actions (B, L, act) float32 and ``terminal_step`` (B,) int64
    (as :func:`replay_actions`; the physics keeps running past a termination).
    """
    b = int(s0.shape[0])
    sims = [_Simulator(env_id) for _ in range(b)]
    try:
        states = np.zeros((b, length + 1, s0.shape[-1]), dtype=np.float32)
        for i in range(b):
            states[:, 0][i] = sims[i].set_observation(s0[i])
        policy.reset(b)
        actions = []
        terminal_step = np.full(b, -1, dtype=np.int64)
        for t in range(length):
            a = policy_actions(policy, states[:, t])
            actions.append(a)
            for i in range(b):
                states[i, t + 1], terminated = sims[i].step(a[i])
                if terminated and terminal_step[i] < 0:
                    terminal_step[i] = t
    finally:
        for sim in sims:
            sim.close()
    return states, np.stack(actions, axis=1), terminal_step


def one_step_errors(env_id: str, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """One-step consistency: ||T_sim(s_t, a_t) - s_{t+1}||^2 for every transition of every row.

    states: (B, L+1, obs), actions: (B, L, act). The simulator is set to s_t (qpos/qvel from the
    observation, x = 0) and stepped once with a_t. Returns (B, L) float64 (t = 0..L-1).
    """
    sim = _Simulator(env_id)
    b, length = actions.shape[:2]
    out = np.zeros((b, length), dtype=np.float64)
    try:
        for i in range(b):
            for t in range(length):
                sim.set_observation(states[i, t])
                nxt, _ = sim.step(actions[i, t])
                out[i, t] = float(((nxt.astype(np.float64) - states[i, t + 1]) ** 2).sum())
    finally:
        sim.close()
    return out


def stored_mask(env_id: str, states: np.ndarray) -> np.ndarray:
    """(B, L) bool: the transitions DyDiff would store, i.e. up to and including the first step whose next
    state the env's termination rule marks terminal (as ``dydiff.truncate_at_terminals`` cuts them)."""
    from augment.generators.dydiff import truncate_at_terminals
    from augment.world.termination import termination_fn

    b, l_plus_1, obs = states.shape
    rule = termination_fn(env_id)
    flags = np.asarray(rule(states[:, 1:].reshape(b * (l_plus_1 - 1), obs)), dtype=bool).reshape(b, -1)
    lengths, _ = truncate_at_terminals(flags)
    return np.arange(l_plus_1 - 1)[None, :] < lengths[:, None]
