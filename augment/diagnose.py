"""Diagnostics of DyDiff against the real simulator (dydiff.txt Appendix D.3 / E.5, Eq. 37).

From real start states ``s_0`` the learning policy is rolled ``L`` steps in the single-step model
(Eq. 6); the rollout is refined with the diffusion model and the policy for ``M = 1 .. M_max`` iterations
(Eq. 7-9). For every ``M`` the actions that produced that iteration's states are replayed in MuJoCo
from the same start state (qpos/qvel set from the observation), and the per-step squared state error
``e_t = ||s_model,t - s_t||^2`` (Eq. 37, averaged over start states) and its running sum
``E_t = sum_{i<=t} e_i`` are reported.

Which actions go with which states (the paper is silent; docs/dydiff.md):

* ``M = 0``: the single-step rollout ``tau_dyn``: states from ``T_phi`` with the actions ``a^(0)`` that
  drove them;
* ``M = k >= 1``: the states ``s^(k) ~ p_theta(.|s_0, a^(k-1))`` with the actions ``a^(k-1)`` they were
  conditioned on (the relabelled ``a^(k)`` only condition the next iteration).

As an in-distribution reference, the same models also predict windows of the dataset's own
trajectories from their recorded actions (:func:`dataset_window_errors`), next to the trivial
prediction ``s_t = s_0``: this separates the models' error floor from the policy's distribution shift.

Observations of the MuJoCo locomotion envs are ``qpos[1:]`` and ``qvel``: the x position is not observed
and is set to 0 (every reward-free quantity in the observation is invariant to it); Hopper-v5 and
Walker2d clip the observed velocities to [-10, 10], so a clipped velocity is set as clipped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augment.generators.dydiff import refine, single_step_rollout
from baselines.protocols import Policy
from stores.errors import UserInputError


@dataclass(frozen=True)
class DiagnoseConfig:
    """Settings of ``augment diagnose dydiff``.

    starts: number of real start states (the paper repeats over "multiple initial states").
    max_iterations: largest M (the curves are for M = 0 .. max_iterations; Appendix E.5 uses 0..3+).
    rollout_length: L (None: the diffusion model's horizon). seed: start states and model noise.
    policy_steps: TD3+BC updates on the real data that make the learning policy (CLI only).
    """

    starts: int = 64
    max_iterations: int = 3
    rollout_length: int | None = None
    seed: int = 0
    policy_steps: int = 2000

    def __post_init__(self) -> None:
        if self.starts < 1:
            raise UserInputError(f"--starts must be >= 1 (got {self.starts})")
        if self.max_iterations < 0:
            raise UserInputError(f"--max-iterations must be >= 0 (got {self.max_iterations})")
        if self.policy_steps < 0:
            raise UserInputError(f"--policy-steps must be >= 0 (got {self.policy_steps})")


@dataclass
class DiagnosisResult:
    """Per-M state errors against the simulator.

    errors[M]: (L,) mean over start states of e_t = ||s_model,t - s_sim,t||^2, t = 1..L (Eq. 37).
    cumulative[M]: (L,) running sum E_t. errors_alive[M]: (L,) the same mean over the start states whose
    simulated trajectory has not terminated before step t (NaN when none). terminated[M]: fraction of
    simulated trajectories that hit the env's termination rule within L steps.
    dataset_windows: the in-distribution reference of :func:`dataset_window_errors` (per predictor,
    (L,) errors against the dataset's own trajectories under their recorded actions), or None.
    """

    env_id: str
    dataset: str
    rollout_length: int
    starts: int
    start_index: list[int]
    errors: dict[int, list[float]] = field(default_factory=dict)
    cumulative: dict[int, list[float]] = field(default_factory=dict)
    errors_alive: dict[int, list[float]] = field(default_factory=dict)
    terminated: dict[int, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    dataset_windows: dict[str, list[float]] | None = None

    def summary_rows(self, horizons: tuple[int, ...] = (1, 5, 10, 25, 50, 100)) -> list[dict[str, Any]]:
        """Rows (one per M): e_t and E_t at the given horizons t that lie within L."""
        rows = []
        for m in sorted(self.errors):
            row: dict[str, Any] = {"M": m}
            for t in horizons:
                if t <= self.rollout_length:
                    row[f"e@{t}"] = self.errors[m][t - 1]
                    row[f"E@{t}"] = self.cumulative[m][t - 1]
            row["E@L"] = self.cumulative[m][-1]
            rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("errors", "cumulative", "errors_alive", "terminated"):
            data[key] = {str(k): v for k, v in data[key].items()}
        data["summary"] = self.summary_rows()
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
    """Invert the locomotion observation ``[qpos[1:], qvel]`` (obs,) -> qpos (nq,) with x = 0, qvel (nv,)."""
    if obs.shape[-1] != nq - 1 + nv:
        raise UserInputError(
            f"observation of size {obs.shape[-1]} is not [qpos[1:] ({nq - 1}), qvel ({nv})]: the "
            "diagnostics need a MuJoCo locomotion env (Hopper, Walker2d, HalfCheetah)")
    qpos = np.concatenate([[0.0], obs[: nq - 1]]).astype(np.float64)
    qvel = np.asarray(obs[nq - 1: nq - 1 + nv], dtype=np.float64)
    return qpos, qvel


def replay_actions(env_id: str, s0: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Execute ``actions`` in MuJoCo from each start state.

    s0: (B, obs); actions: (B, L, act) clipped to the env's action box. Returns sim states (B, L+1, obs)
    float32 (``[:, 0]`` is the observation after setting the state) and ``terminal_step`` (B,) int64, the
    first step t (0-based, state s_{t+1}) where the env's termination rule held, -1 when none. The physics
    keeps running past a termination (the unwrapped env is stepped directly) so every step has a
    reference state.
    """
    import gymnasium as gym

    try:
        env = gym.make(env_id)
    except gym.error.Error as exc:  # unknown / unavailable env id
        raise UserInputError(f"cannot make env '{env_id}' for the diagnostics: {exc}") from exc
    core: Any = env.unwrapped
    if not hasattr(core, "set_state") or not hasattr(core, "model"):
        env.close()
        raise UserInputError(f"env '{env_id}' is not a MuJoCo env; the diagnostics need qpos/qvel")
    nq, nv = int(core.model.nq), int(core.model.nv)
    low, high = env.action_space.low, env.action_space.high
    b, length = actions.shape[:2]
    out = np.zeros((b, length + 1, s0.shape[-1]), dtype=np.float32)
    terminal_step = np.full(b, -1, dtype=np.int64)
    env.reset(seed=0)
    for i in range(b):
        qpos, qvel = qpos_qvel_from_observation(np.asarray(s0[i], dtype=np.float64), nq, nv)
        core.set_state(qpos, qvel)
        out[i, 0] = core._get_obs()
        for t in range(length):
            obs, _, terminated, _, _ = core.step(np.clip(actions[i, t], low, high))
            out[i, t + 1] = obs
            if terminated and terminal_step[i] < 0:
                terminal_step[i] = t
    env.close()
    return out, terminal_step


def alive_mask(terminal_step: np.ndarray, length: int) -> np.ndarray:
    """(B, L) bool: state s_t (t = 1..L) counts while the simulated trajectory had not terminated before
    it (the terminal state itself counts). terminal_step: (B,) from :func:`replay_actions`."""
    t = np.arange(1, length + 1)[None, :]
    first = np.where(terminal_step < 0, length, terminal_step)[:, None]
    return t <= first + 1


def diagnose_rollouts(s0: np.ndarray, policy: Policy, world: Any, diffusion: Any, env_id: str,
                      rng: np.random.Generator, *, max_iterations: int = 3, rollout_length: int | None = None,
                      ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Roll, refine and replay (module docstring). Returns per-M (B, L) errors, the simulator's first
    terminal steps (B,) (-1: none) and sim states (B, L+1, obs)."""
    length = int(rollout_length or diffusion.horizon)
    if int(diffusion.horizon) != length:
        raise UserInputError(f"the diffusion model's horizon is {diffusion.horizon}, not {length}; "
                             "drop --rollout-length or retrain the model")
    policy.reset(int(s0.shape[0]))
    states0, actions0 = single_step_rollout(s0, policy, world, length, rng)
    pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {0: (states0, actions0)}

    def keep(k: int, states: np.ndarray, conditioning: np.ndarray) -> None:
        pairs[k] = (states, conditioning)

    refine(s0, actions0, policy, diffusion, max_iterations, rng, on_iteration=keep)
    errors, terminal_steps, sims = {}, {}, {}
    for m, (states, actions) in sorted(pairs.items()):
        sim, terminal_step = replay_actions(env_id, s0, actions)
        errors[m] = state_errors(states, sim)
        terminal_steps[m] = terminal_step
        sims[m] = sim
    return errors, terminal_steps, sims


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


def run_diagnosis(dataset: Any, policy: Policy, world: Any, diffusion: Any, config: DiagnoseConfig,
                  ) -> DiagnosisResult:
    """Draw ``config.starts`` real start states and compute :class:`DiagnosisResult`."""
    if dataset.env_id is None:
        raise UserInputError(f"dataset '{dataset.name}' names no env; the diagnostics replay actions in it")
    rng = np.random.default_rng(config.seed)
    obs = dataset.transitions.observations
    idx = rng.choice(obs.shape[0], size=min(config.starts, obs.shape[0]), replace=False).astype(np.int64)
    errors, terminal_steps, _ = diagnose_rollouts(obs[idx], policy, world, diffusion, dataset.env_id, rng,
                                         max_iterations=config.max_iterations,
                                         rollout_length=config.rollout_length)
    length = next(iter(errors.values())).shape[1]
    result = DiagnosisResult(env_id=dataset.env_id, dataset=dataset.name, rollout_length=length,
                             starts=int(idx.size), start_index=idx.tolist())
    for m, per_start in errors.items():
        mean = mean_errors(per_start)
        result.errors[m] = mean.tolist()
        result.cumulative[m] = np.cumsum(mean).tolist()
        result.errors_alive[m] = mean_errors(per_start, alive_mask(terminal_steps[m], length)).tolist()
        result.terminated[m] = float((terminal_steps[m] >= 0).mean())
    result.dataset_windows = dataset_window_errors(dataset, world, diffusion, length, int(idx.size), rng)
    return result


def plot_diagnosis(result: DiagnosisResult, path: Path) -> Path:
    """Two panels: per-step error e_t and its running sum E_t, one line per M (log scale). Writes PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.arange(1, result.rollout_length + 1)
    for m in sorted(result.errors):
        label = "M=0 (single-step model)" if m == 0 else f"M={m}"
        axes[0].plot(steps, result.errors[m], label=label)
        axes[1].plot(steps, result.cumulative[m], label=label)
    if result.dataset_windows is not None:
        for name, errs in result.dataset_windows.items():
            if name == "constant_s0":
                continue
            axes[0].plot(steps, errs, linestyle="--", alpha=0.7,
                         label=f"{name.replace('_', '-')} on data windows (recorded actions)")
    axes[0].set_title("per-step state error e_t = ||s_model,t - s_sim,t||^2")
    axes[1].set_title("running sum E_t")
    for ax in axes:
        ax.set_xlabel("rollout step t")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{result.dataset} ({result.env_id}): {result.starts} real start states")
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
