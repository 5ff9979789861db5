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

The pieces live in small modules, re-exported here: :mod:`augment.diagnose_errors` (Eq. 37 errors),
:mod:`augment.diagnose_sim` (the MuJoCo references), :mod:`augment.diagnose_result` (the result, its
JSON and plot) and :mod:`augment.diagnose_policy` (the learning policy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from augment.diagnose_errors import alive_mask, mean_errors, state_errors
from augment.diagnose_policy import PolicyTarget, learner_name_of, load_policy, train_policy_to_score
from augment.diagnose_result import HORIZONS, DiagnosisResult, plot_diagnosis, write_diagnosis
from augment.diagnose_sim import (
    _Simulator,
    closed_loop_rollout,
    one_step_errors,
    qpos_qvel_from_observation,
    replay_actions,
    stored_mask,
)
from augment.generators.dydiff import (
    DYNAMICS_MODES,
    ITERATION_RULES,
    refine,
    single_step_rollout,
)
from baselines.protocols import Policy
from stores.errors import UserInputError

__all__ = [
    "HORIZONS", "DiagnoseConfig", "DiagnosisResult", "IterationRollouts", "PolicyTarget", "_Simulator",
    "alive_mask", "closed_loop_rollout", "dataset_window_errors", "diagnose_rollouts", "draw_start_states",
    "dydiff_iterations", "learner_name_of", "load_policy", "mean_errors", "one_step_errors",
    "plot_diagnosis", "qpos_qvel_from_observation", "replay_actions", "run_diagnosis", "state_errors",
    "stored_mask", "summarize", "train_policy_to_score", "write_diagnosis",
]


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
