"""Diagnostics of DyDiff against the real simulator (dydiff.txt Sec. 4.3, Appendix D.3 / E.5, Eq. 37).

From real start states ``s_0`` the learning policy is rolled ``L`` steps in the single-step model
(Eq. 6); the rollout is refined with the diffusion model and the policy for ``M = 1 .. M_max`` iterations
(Eq. 7-9, with the configured iteration rule). Three views, per M:

* **closed loop (the paper's claim; primary).** One reference for every M: the same policy rolled in
  MuJoCo from the same ``s_0`` (``a_t = pi(s_t)`` on the simulator's own states). Sec. 4.3 bounds the
  distance of ``tau_s,d^(k)`` from exactly this trajectory ``tau``; App. E.5 plots its total MSE against M.
  Per-step ``e_t = ||s^(M)_t - s^ref_t||^2`` (Eq. 37, mean over starts) and the running sum ``E_t``.
* **one-step consistency of what DyDiff would store.** For the transitions ``(s_t, a_t, s_{t+1})`` of
  iteration M (the states after the rule and the actions the policy relabelled them with, Eq. 8) the
  simulator is set to ``s_t``, stepped with ``a_t`` and compared with ``s_{t+1}`` (as the official
  training loop checks); reported per step and over the transitions that survive the cut at the first
  terminal.
* **open-loop replay (secondary).** The actions a sample was conditioned on (``a^(M-1)``; for M = 0 the
  single-step rollout's own) are replayed in MuJoCo from ``s_0``: how well each sample follows its own
  conditions. Each M then has its own reference, so these curves do not compare M with each other.

As an in-distribution reference, the same models also predict windows of the dataset's own
trajectories from their recorded actions (:func:`dataset_window_errors`), next to ``s_t = s_0``.

Observations of the MuJoCo locomotion envs are ``qpos[1:]`` and ``qvel``: the x position is not observed
and is set to 0 (no dynamics depend on it); Hopper-v5 and Walker2d clip the observed velocities to
[-10, 10], so a clipped velocity is set as clipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augment.generators.dydiff import (
    DYNAMICS_MODES,
    ITERATION_RULES,
    policy_actions,
    refine,
    single_step_rollout,
)
from baselines.protocols import Policy
from stores.errors import UserInputError

#: Horizons the summary table shows (those within L).
HORIZONS: tuple[int, ...] = (1, 5, 10, 25, 50, 100)


@dataclass(frozen=True)
class DiagnoseConfig:
    """Settings of ``augment diagnose dydiff``.

    starts: number of real start states (the paper repeats over "multiple initial states").
    max_iterations: largest M (the curves are for M = 0 .. max_iterations; Appendix E.5 uses 0..3+).
    rollout_length: L (None: the diffusion model's horizon). seed: start states and model noise.
    iteration_rule, dynamics, sdedit_sigma: how the rollouts are made (DyDiffConfig's fields of the same
    names). policy_steps: cap on the updates that make the learning policy (CLI only).
    """

    starts: int = 64
    max_iterations: int = 3
    rollout_length: int | None = None
    seed: int = 0
    iteration_rule: str = "replace"
    dynamics: str = "sample"
    sdedit_sigma: float | None = None
    policy_steps: int = 2000

    def __post_init__(self) -> None:
        if self.starts < 1:
            raise UserInputError(f"--starts must be >= 1 (got {self.starts})")
        if self.max_iterations < 0:
            raise UserInputError(f"--max-iterations must be >= 0 (got {self.max_iterations})")
        if self.policy_steps < 0:
            raise UserInputError(f"--policy-steps must be >= 0 (got {self.policy_steps})")
        if self.iteration_rule not in ITERATION_RULES:
            raise UserInputError(f"--iteration-rule must be one of {', '.join(ITERATION_RULES)}")
        if self.dynamics not in DYNAMICS_MODES:
            raise UserInputError(f"--dynamics must be one of {', '.join(DYNAMICS_MODES)}")
        if self.sdedit_sigma is not None and not self.sdedit_sigma > 0:
            raise UserInputError(f"--sdedit-sigma must be > 0 (got {self.sdedit_sigma})")

    @property
    def variant(self) -> str:
        """A short name of the rollout settings, e.g. ``replace/sample`` or ``average/mean/sdedit0.5``."""
        name = f"{self.iteration_rule}/{self.dynamics}"
        return name if self.sdedit_sigma is None else f"{name}/sdedit{self.sdedit_sigma:g}"


@dataclass
class DiagnosisResult:
    """Per-M state errors against the simulator (module docstring for the three views).

    errors[M] / cumulative[M]: (L,) closed-loop e_t and E_t (t = 1..L). errors_alive[M]: the same mean
    over the start states whose reference has not terminated before step t (NaN when none).
    reference_terminated: fraction of closed-loop references that hit the env's termination rule.
    one_step[M]: (L,) mean over starts of ||T_sim(s_t, a_t) - s_{t+1}||^2 for t = 0..L-1 (the stored
    transitions of iteration M); one_step_stored[M]: their mean over the transitions kept by the cut at
    the first (model-state) terminal; stored_fraction[M]: the share of transitions kept.
    open_loop[M]: {"errors", "cumulative": (L,), "terminated": float} of the open-loop replay.
    dataset_windows: per predictor, (L,) errors against the dataset's own windows, or None.
    """

    env_id: str
    dataset: str
    rollout_length: int
    starts: int
    start_index: list[int]
    errors: dict[int, list[float]] = field(default_factory=dict)
    cumulative: dict[int, list[float]] = field(default_factory=dict)
    errors_alive: dict[int, list[float]] = field(default_factory=dict)
    reference_terminated: float = 0.0
    one_step: dict[int, list[float]] = field(default_factory=dict)
    one_step_stored: dict[int, float] = field(default_factory=dict)
    stored_fraction: dict[int, float] = field(default_factory=dict)
    open_loop: dict[int, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    dataset_windows: dict[str, list[float]] | None = None

    def summary_rows(self, horizons: tuple[int, ...] = HORIZONS) -> list[dict[str, Any]]:
        """Rows (one per M): closed-loop e_t / E_t at the horizons within L, E@L, the one-step error of
        the stored transitions and the open-loop E@L."""
        rows = []
        for m in sorted(self.errors):
            row: dict[str, Any] = {"M": m}
            for t in horizons:
                if t <= self.rollout_length:
                    row[f"e@{t}"] = self.errors[m][t - 1]
            row["E@L"] = self.cumulative[m][-1]
            row["1-step"] = self.one_step_stored.get(m, math.nan)
            row["open-loop E@L"] = self.open_loop.get(m, {}).get("cumulative", [math.nan])[-1]
            rows.append(row)
        return rows

    def refined_beats_single_step(self) -> dict[int, bool]:
        """For M >= 1: is the closed-loop E_L below M = 0's (the issue's acceptance test)?"""
        base = self.cumulative[0][-1]
        return {m: bool(self.cumulative[m][-1] < base) for m in sorted(self.cumulative) if m >= 1}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("errors", "cumulative", "errors_alive", "one_step", "one_step_stored", "stored_fraction",
                    "open_loop"):
            data[key] = {str(k): v for k, v in data[key].items()}
        data["summary"] = self.summary_rows()
        data["refined_beats_single_step"] = {str(k): v for k, v in self.refined_beats_single_step().items()}
        return data


# ----------------------------------------------------------------------------------------------------
# pure functions
# ----------------------------------------------------------------------------------------------------

def state_errors(model_states: np.ndarray, sim_states: np.ndarray) -> np.ndarray:
    """Eq. 37 per start state and step: ||s_model,t - s_t||_2^2 for t = 1..L.

    model_states, sim_states: (B, L+1, obs). Returns (B, L) float64.
    """
    diff = model_states[:, 1:].astype(np.float64) - sim_states[:, 1:].astype(np.float64)
    return (diff ** 2).sum(axis=-1)


def mean_errors(per_start: np.ndarray, alive: np.ndarray | None = None) -> np.ndarray:
    """Mean over start states of (B, L) errors -> (L,); with ``alive`` (B, L) bool only alive rows count
    (NaN where none is alive)."""
    if alive is None:
        return per_start.mean(axis=0)
    counts = alive.sum(axis=0)
    sums = np.where(alive, per_start, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


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


def alive_mask(terminal_step: np.ndarray, length: int) -> np.ndarray:
    """(B, L) bool: state s_t (t = 1..L) counts while the simulated trajectory had not terminated before
    it (the terminal state itself counts). terminal_step: (B,) from :func:`replay_actions`."""
    t = np.arange(1, length + 1)[None, :]
    first = np.where(terminal_step < 0, length, terminal_step)[:, None]
    return t <= first + 1


@dataclass
class IterationRollouts:
    """What DyDiff makes from B start states, per M = 0..M_max.

    states[M]: (B, L+1, obs), the trajectory's states after iteration M (M = 0: the single-step rollout);
    conditioning[M]: (B, L, act), the actions iteration M's sample was conditioned on (a^(M-1); for M = 0
    the single-step rollout's a^(0)); stored_actions[M]: (B, L, act), the actions DyDiff would store
    with states[M] (a^(M), Eq. 8 relabels; a^(0) for M = 0).
    """

    states: dict[int, np.ndarray]
    conditioning: dict[int, np.ndarray]
    stored_actions: dict[int, np.ndarray]


def dydiff_iterations(s0: np.ndarray, policy: Policy, world: Any, diffusion: Any, rng: np.random.Generator,
                      *, max_iterations: int, length: int, rule: str = "replace", dynamics: str = "sample",
                      sdedit_sigma: float | None = None) -> IterationRollouts:
    """Eq. 6, then M_max iterations of Eq. 7-9 with ``rule`` (:func:`augment.generators.dydiff.refine`),
    keeping every iteration (:class:`IterationRollouts`)."""
    policy.reset(int(s0.shape[0]))
    states0, actions0 = single_step_rollout(s0, policy, world, length, rng, mean=dynamics == "mean")
    out = IterationRollouts(states={0: states0}, conditioning={0: actions0}, stored_actions={0: actions0})

    def keep(k: int, states: np.ndarray, conditioning: np.ndarray) -> None:
        out.states[k] = states
        out.conditioning[k] = conditioning
        if k >= 2:  # a^(k-1), the relabel of states^(k-1), conditioned this iteration
            out.stored_actions[k - 1] = conditioning

    _, last = refine(s0, actions0, policy, diffusion, max_iterations, rng, states=states0, rule=rule,
                     sdedit_sigma=sdedit_sigma, on_iteration=keep)
    if max_iterations >= 1:
        out.stored_actions[max_iterations] = last
    return out


def diagnose_rollouts(s0: np.ndarray, policy: Policy, world: Any, diffusion: Any, env_id: str,
                      rng: np.random.Generator, *, max_iterations: int = 3, rollout_length: int | None = None,
                      rule: str = "replace", dynamics: str = "sample", sdedit_sigma: float | None = None,
                      reference: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                      open_loop: bool = True) -> dict[str, Any]:
    """Roll, refine and compare with MuJoCo (module docstring) from start states s0 (B, obs).

    reference: a closed-loop rollout (:func:`closed_loop_rollout`) of the same policy from the same s0,
    to share between calls (computed when None). Returns a dict of per-M (B, L) arrays: ``closed_loop``
    (errors vs the reference), ``one_step``, ``stored`` (bool), ``open_loop`` (when asked) and
    ``open_loop_terminal`` (B,), plus ``reference`` (states, actions, terminal_step) and ``rollouts``.
    """
    length = int(rollout_length or diffusion.horizon)
    if int(diffusion.horizon) != length:
        raise UserInputError(f"the diffusion model's horizon is {diffusion.horizon}, not {length}; "
                             "drop --rollout-length or retrain the model")
    if reference is None:
        reference = closed_loop_rollout(env_id, s0, policy, length)
    ref_states = reference[0]
    rollouts = dydiff_iterations(s0, policy, world, diffusion, rng, max_iterations=max_iterations,
                                 length=length, rule=rule, dynamics=dynamics, sdedit_sigma=sdedit_sigma)
    result: dict[str, Any] = {"closed_loop": {}, "one_step": {}, "stored": {}, "open_loop": {},
                              "open_loop_terminal": {}, "reference": reference, "rollouts": rollouts}
    for m, states in sorted(rollouts.states.items()):
        result["closed_loop"][m] = state_errors(states, ref_states)
        result["one_step"][m] = one_step_errors(env_id, states, rollouts.stored_actions[m])
        result["stored"][m] = stored_mask(env_id, states)
        if open_loop:
            sim, terminal = replay_actions(env_id, s0, rollouts.conditioning[m])
            result["open_loop"][m] = state_errors(states, sim)
            result["open_loop_terminal"][m] = terminal
    return result


def dataset_window_errors(dataset: Any, world: Any, diffusion: Any, length: int, count: int,
                          rng: np.random.Generator) -> dict[str, list[float]] | None:
    """In-distribution reference: Eq. 37 errors against the dataset's own trajectories.

    Draws ``count`` windows of L+1 states and L actions from episodes of at least L steps and predicts
    the states from s_0 and the *recorded* actions with the single-step model (autoregressively), the
    diffusion model (one sample), and the constant ``s_t = s_0``. Returns per-step mean errors (L,) by
    predictor, or None when no episode is long enough.
    """
    episodes = [ep for ep in dataset.episodes if len(ep) >= length]
    if not episodes:
        return None
    states, actions = [], []
    for i in rng.integers(0, len(episodes), size=count):
        ep = episodes[int(i)]
        t = int(rng.integers(0, len(ep) - length + 1))
        states.append(ep.observations[t: t + length + 1])
        actions.append(ep.actions[t: t + length])
    real = np.asarray(states, dtype=np.float32)
    acts = np.asarray(actions, dtype=np.float32)
    rolled = [real[:, 0]]
    for t in range(length):
        rolled.append(np.asarray(world.predict_next(rolled[-1], acts[:, t], rng), dtype=np.float32))
    predictions = {"single_step": np.stack(rolled, axis=1),
                   "diffusion": np.asarray(diffusion.sample(real[:, 0], acts, rng), dtype=np.float32),
                   "constant_s0": np.repeat(real[:, :1], length + 1, axis=1)}
    return {name: mean_errors(state_errors(pred, real)).tolist() for name, pred in predictions.items()}


def draw_start_states(dataset: Any, starts: int, seed: int) -> np.ndarray:
    """``starts`` distinct real row indices (seeded), (B,) int64."""
    obs = dataset.transitions.observations
    rng = np.random.default_rng(seed)
    return rng.choice(obs.shape[0], size=min(starts, obs.shape[0]), replace=False).astype(np.int64)


def run_diagnosis(dataset: Any, policy: Policy, world: Any, diffusion: Any, config: DiagnoseConfig, *,
                  reference: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                  windows: bool = True) -> DiagnosisResult:
    """Draw ``config.starts`` real start states and compute :class:`DiagnosisResult`.

    reference: the closed-loop rollout from those start states, when already computed (the same seed
    draws the same starts). windows: also compute the dataset-window reference.
    """
    if dataset.env_id is None:
        raise UserInputError(f"dataset '{dataset.name}' names no env; the diagnostics replay actions in it")
    idx = draw_start_states(dataset, config.starts, config.seed)
    rng = np.random.default_rng([config.seed, 1])
    raw = diagnose_rollouts(dataset.transitions.observations[idx], policy, world, diffusion, dataset.env_id,
                            rng, max_iterations=config.max_iterations, rollout_length=config.rollout_length,
                            rule=config.iteration_rule, dynamics=config.dynamics,
                            sdedit_sigma=config.sdedit_sigma, reference=reference)
    return summarize(raw, dataset, idx, config, windows=windows, world=world, diffusion=diffusion)


def summarize(raw: dict[str, Any], dataset: Any, idx: np.ndarray, config: DiagnoseConfig, *,
              windows: bool, world: Any, diffusion: Any) -> DiagnosisResult:
    """Means over start states of :func:`diagnose_rollouts`' arrays -> :class:`DiagnosisResult`."""
    length = next(iter(raw["closed_loop"].values())).shape[1]
    ref_terminal = raw["reference"][2]
    result = DiagnosisResult(env_id=dataset.env_id, dataset=dataset.name, rollout_length=length,
                             starts=int(idx.size), start_index=idx.tolist(),
                             reference_terminated=float((ref_terminal >= 0).mean()))
    alive = alive_mask(ref_terminal, length)
    for m, per_start in raw["closed_loop"].items():
        mean = mean_errors(per_start)
        result.errors[m] = mean.tolist()
        result.cumulative[m] = np.cumsum(mean).tolist()
        result.errors_alive[m] = mean_errors(per_start, alive).tolist()
        one = raw["one_step"][m]
        stored = raw["stored"][m]
        result.one_step[m] = mean_errors(one).tolist()
        result.one_step_stored[m] = float(one[stored].mean()) if stored.any() else math.nan
        result.stored_fraction[m] = float(stored.mean())
        if m in raw["open_loop"]:
            open_mean = mean_errors(raw["open_loop"][m])
            result.open_loop[m] = {"errors": open_mean.tolist(), "cumulative": np.cumsum(open_mean).tolist(),
                                   "terminated": float((raw["open_loop_terminal"][m] >= 0).mean())}
    result.meta["variant"] = config.variant
    if windows:
        rng = np.random.default_rng([config.seed, 2])
        result.dataset_windows = dataset_window_errors(dataset, world, diffusion, length, int(idx.size), rng)
    return result


def plot_diagnosis(result: DiagnosisResult, path: Path) -> Path:
    """Four panels (log scale), one line per M: closed-loop e_t, closed-loop E_t, one-step consistency per
    step, and the open-loop replay's E_t with the data-window reference. Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    steps = np.arange(1, result.rollout_length + 1)
    for m in sorted(result.errors):
        label = "M=0 (single-step model)" if m == 0 else f"M={m}"
        axes[0, 0].plot(steps, result.errors[m], label=label)
        axes[0, 1].plot(steps, result.cumulative[m], label=label)
        axes[1, 0].plot(np.arange(result.rollout_length), result.one_step[m], label=label)
        if m in result.open_loop:
            axes[1, 1].plot(steps, result.open_loop[m]["cumulative"], label=f"{label}, open-loop replay")
    if result.dataset_windows is not None:
        for name, errs in result.dataset_windows.items():
            if name != "constant_s0":
                axes[1, 1].plot(steps, np.cumsum(errs), linestyle="--", alpha=0.7,
                                label=f"{name.replace('_', '-')} on data windows (recorded actions)")
    axes[0, 0].set_title("closed loop: e_t = ||s_t - s_t^ref||^2 (one reference: pi in MuJoCo)")
    axes[0, 1].set_title("closed loop: running sum E_t")
    axes[1, 0].set_title("one-step consistency ||T_sim(s_t, a_t) - s_{t+1}||^2")
    axes[1, 1].set_title("secondary: open-loop replay E_t (own reference per M)")
    for ax in axes.ravel():
        ax.set_xlabel("rollout step t")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    variant = result.meta.get("variant", "")
    fig.suptitle(f"{result.dataset} ({result.env_id}): {result.starts} real start states, {variant}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_diagnosis(result: DiagnosisResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``diagnose.json`` and ``diagnose.png`` under ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "diagnose.json"
    json_path.write_text(json.dumps(result.to_json(), indent=2, allow_nan=True))
    return json_path, plot_diagnosis(result, out_dir / "diagnose.png")


# ----------------------------------------------------------------------------------------------------
# the learning policy
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyTarget:
    """How the diagnostics make their learning policy when none is given: train ``learner`` on the real
    data, evaluating every ``eval_every`` updates with ``episodes`` episodes, until the mean normalized
    score reaches ``score`` or ``max_steps`` updates have run (then it says so loudly)."""

    score: float
    max_steps: int
    eval_every: int
    episodes: int

    @classmethod
    def for_profile(cls, profile: str) -> PolicyTarget:
        """smoke: 5 within 50 updates (not reached: tests only); cpu: 12 within 50k updates (TD3+BC on
        the cpu hopper-medium-replay recipe passes 12 between 17k and 30k updates, benchmarks/RESULTS.md);
        paper: 50 within 300k updates (App. D.3's "expert" TD3+BC)."""
        from augment.profiles import by_profile

        return by_profile(profile, smoke=cls(5.0, 50, 25, 2), cpu=cls(12.0, 50_000, 2_500, 5),
                          paper=cls(50.0, 300_000, 10_000, 10))


def learner_name_of(algo: Any) -> str:
    """``td3bc`` / ``cql`` / ``iql`` from a d3rlpy learner's class."""
    name = type(algo).__name__.lower()
    for key, learner in (("td3", "td3bc"), ("cql", "cql"), ("iql", "iql")):
        if key in name:
            return learner
    raise UserInputError(f"the saved learner is a {type(algo).__name__}; the diagnostics know td3bc, "
                         "cql and iql")


def load_policy(path: Path) -> tuple[Any, str]:
    """A saved learner (``model.d3`` of a run, or a run directory holding one) -> (d3rlpy algo, name)."""
    import d3rlpy

    path = Path(path)
    if path.is_dir():
        path = path / "model.d3"
    if not path.is_file():
        raise UserInputError(f"no saved learner at {path}; pass a run's model.d3 (augment train writes one)")
    algo = d3rlpy.load_learnable(str(path))
    return algo, learner_name_of(algo)


def train_policy_to_score(dataset: Any, learner: str, target: PolicyTarget, *, seed: int = 0,
                          progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Train ``learner`` on the real transitions until ``target.score`` or ``target.max_steps``.

    Returns (d3rlpy algo, record) with record = {steps, score, target, reached, evaluations: [(step,
    score)]}; the score is the mean normalized score of ``target.episodes`` evaluation episodes.
    """
    from tqdm import tqdm

    from baselines.evaluate import evaluate
    from baselines.learners import LearnerPolicy, make_learner
    from baselines.loop import score_name_for
    from baselines.sampler import MixedSampler
    from baselines.seeding import derive_seed, seed_everything

    if dataset.env_id is None:
        raise UserInputError(f"dataset '{dataset.name}' names no env to evaluate the policy in")
    seed_everything(seed)
    algo = make_learner(learner, dataset, seed=seed, total_steps=target.max_steps)
    sampler = MixedSampler(dataset.transitions, batch_size=256, real_ratio=1.0,
                           seed=derive_seed(seed, "diagnose-sampler"))
    score_name = score_name_for(dataset, dataset.env_id)
    evaluations: list[tuple[int, float]] = []
    score, step = math.nan, 0
    bar = tqdm(total=target.max_steps, desc=f"{learner} policy to score {target.score:g}",
               disable=not progress, leave=False)
    while step < target.max_steps:
        chunk = min(target.eval_every, target.max_steps - step)
        for _ in range(chunk):
            algo.update(sampler.sample())
        step += chunk
        bar.update(chunk)
        result = evaluate(LearnerPolicy(algo), dataset.env_id, episodes=target.episodes,
                          seed=derive_seed(seed, "diagnose-eval"), score_name=score_name,
                          num_envs=target.episodes)
        score = float(result.normalized_mean)
        evaluations.append((step, score))
        bar.set_postfix(score=f"{score:.1f}")
        if score >= target.score:
            break
    bar.close()
    record = {"steps": step, "score": score, "target": target.score, "reached": bool(score >= target.score),
              "max_steps": target.max_steps, "evaluations": evaluations, "learner": learner}
    return algo, record
