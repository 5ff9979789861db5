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

The math lives in pure functions below (:func:`single_step_rollout`, :func:`relabel_actions`,
:func:`refine`, :func:`trajectory_scores`, :func:`truncate_at_terminals`); :class:`DyDiffGenerator` only
wires them to the world model, the diffusion model and the filters.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from augment.profiles import by_profile, resolve_profile
from stores.errors import UserInputError, check_settings
from stores.schema import OfflineDataset, TrajectoryBatch

if TYPE_CHECKING:  # pragma: no cover
    from baselines.protocols import Policy

FILTERS: tuple[str, ...] = ("softmax", "hardmax")
#: How an iteration's diffusion sample becomes the states: ``replace`` (the paper's text, Algorithm 1) or
#: ``average`` ((new + previous) / 2, the official code's ``dynamics_recursive_sampler``).
ITERATION_RULES: tuple[str, ...] = ("replace", "average")
#: How the single-step model is rolled (Eq. 6): ``sample`` (a random elite's Gaussian sample) or ``mean``
#: (the mean over elites of their means, no noise; the official code).
DYNAMICS_MODES: tuple[str, ...] = ("sample", "mean")
#: Rounds of synthetic data the cpu / smoke FIFO holds (the paper's 2M buffer holds ~12 rounds).
POOL_ROUNDS = 12


class _Dynamics(Protocol):
    def predict_next(self, obs: np.ndarray, act: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


class _Sampler(Protocol):
    def sample(self, s0: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


# ----------------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------------

def dataset_kind(dataset_name: str) -> str:
    """The D4RL data kind of a dataset name: ``medium-replay``, ``medium-expert``, ``medium``,
    ``maze2d``, ``random``, ``expert`` or ``other`` (files and unknown names).

    Aliases (``hopper-mr``, ``hopper-me``, ``hopper-md``) are understood.
    """
    name = Path(str(dataset_name)).name.lower()
    if name.startswith("maze2d") or "pointmaze" in name:
        return "maze2d"
    for suffix, kind in (("medium-replay", "medium-replay"), ("-mr", "medium-replay"),
                         ("medium-expert", "medium-expert"), ("-me", "medium-expert"),
                         ("-md", "medium"), ("medium", "medium"), ("random", "random"),
                         ("expert", "expert")):
        if name.endswith(suffix) or f"{suffix}-v" in name or f"{suffix}." in name:
            return kind
    return "other"


@dataclass(frozen=True)
class DyDiffConfig:
    """DyDiff's own hyper-parameters (dydiff.txt Table 4; REFERENCE section 6) and its rollout schedule.

    The learner's budget (updates, evaluation) is not here: it belongs to
    :class:`baselines.loop.TrainConfig` (``augment dydiff --steps`` and the ``compare`` arms set it there).

    iterations: M, refinement iterations of (diffusion Eq. 7/9, policy relabel Eq. 8); 0 means plain
        single-step rollouts (Eq. 6). Paper: 2 (MuJoCo locomotion), 1 (Maze2D).
    rollout_batch: B_r, start states per round (paper 2048).
    rollout_length: L, steps per synthetic trajectory (paper 100); the diffusion model's horizon.
    rollout_interval: learner updates between rounds (paper 500, one "epoch").
    filter: ``softmax`` (paper default) or ``hardmax``. eta: filter proportion, keeps floor(eta * B_r)
        trajectories (0.8 for medium-replay / medium-expert, 0.6 for medium and Maze2D).
    temperature: softmax temperature on z-scored trajectory scores (0.05).
    real_ratio: alpha, the REAL share of a learner batch (0.6; REFERENCE section 1 on the typo).
    max_synthetic: synthetic buffer capacity in transitions (2M, FIFO beyond).
    batch_size: learner batch B (256).
    iteration_rule: ``replace`` (paper text: states^(k) = the k-th diffusion sample) or ``average``
        (official code: states^(k) = (sample + states^(k-1)) / 2, states^(0) the single-step rollout).
    dynamics: ``sample`` (Eq. 6 with a random elite's Gaussian sample) or ``mean`` (elite mean, official
        code). sdedit_sigma: None, or start each iteration's reverse process from the previous states
        noised to this level (normalised units; SDEdit-style, not in the paper, fewer network calls).
    sample_batch: how many trajectories go through the networks at once (bounds memory; part of the
        config because the random draws follow the chunk order).
    diffusion_steps: Heun steps N of Algorithm 2 (None: the diffusion model's own, 34 in the paper).
    profile, dataset: what :meth:`for_profile` was asked for (recorded with the run).
    notes: why a scaled-down profile differs from the paper (printed by the CLI).
    """

    iterations: int = 2
    rollout_batch: int = 2048
    rollout_length: int = 100
    rollout_interval: int = 500
    filter: str = "softmax"
    eta: float = 0.8
    temperature: float = 0.05
    real_ratio: float = 0.6
    max_synthetic: int = 2_000_000
    batch_size: int = 256
    iteration_rule: str = "replace"
    dynamics: str = "sample"
    sdedit_sigma: float | None = None
    sample_batch: int = 2048
    diffusion_steps: int | None = None
    profile: str = "paper"
    dataset: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        checks = (
            (self.iterations >= 0, f"--iterations must be >= 0 (got {self.iterations})"),
            (self.rollout_batch >= 1, f"rollout batch must be >= 1 (got {self.rollout_batch})"),
            (self.rollout_length >= 1, f"--rollout-length must be >= 1 (got {self.rollout_length})"),
            (self.rollout_interval >= 1, f"rollout interval must be >= 1 (got {self.rollout_interval})"),
            (self.filter in FILTERS, f"--filter must be one of {', '.join(FILTERS)} (got '{self.filter}')"),
            (0.0 < self.eta <= 1.0, f"filter proportion eta must lie in (0, 1] (got {self.eta})"),
            (self.temperature > 0.0, f"softmax temperature must be > 0 (got {self.temperature})"),
            (0.0 <= self.real_ratio <= 1.0, f"--real-ratio must lie in [0, 1] (got {self.real_ratio})"),
            (self.sample_batch >= 1, f"sample batch must be >= 1 (got {self.sample_batch})"),
            (self.iteration_rule in ITERATION_RULES,
             f"--iteration-rule must be one of {', '.join(ITERATION_RULES)} (got '{self.iteration_rule}')"),
            (self.dynamics in DYNAMICS_MODES,
             f"--dynamics must be one of {', '.join(DYNAMICS_MODES)} (got '{self.dynamics}')"),
            (self.sdedit_sigma is None or self.sdedit_sigma > 0.0,
             f"--sdedit-sigma must be > 0 or unset (got {self.sdedit_sigma})"),
            (self.max_synthetic >= 1, f"synthetic buffer must be >= 1 (got {self.max_synthetic})"),
        )
        check_settings(checks)

    @property
    def kept_per_round(self) -> int:
        """floor(eta * B_r), at least 1: how many trajectories the filter keeps each round."""
        return max(1, int(np.floor(self.eta * self.rollout_batch + 1e-9)))

    @property
    def transitions_per_round(self) -> int:
        """At most floor(eta * B_r) * L synthetic transitions a round adds (fewer when rows are cut)."""
        return self.kept_per_round * self.rollout_length

    @property
    def nominal_inflow_per_update(self) -> float:
        """Synthetic transitions added per learner update if no row were cut: floor(eta B_r) L / interval
        (paper: 1638 * 100 / 500 = 328)."""
        return self.transitions_per_round / self.rollout_interval

    @property
    def pool_rounds(self) -> float:
        """How many rounds of uncut rows the FIFO holds: max_synthetic / (floor(eta B_r) L) (paper ~12)."""
        return self.max_synthetic / max(1, self.transitions_per_round)

    def to_json(self) -> dict[str, Any]:
        """JSON-native dict of every field."""
        data = dataclasses.asdict(self)
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DyDiffConfig:
        """Inverse of :meth:`to_json`; keys this version no longer has (``steps`` of older runs) are
        ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["notes"] = tuple(kwargs.get("notes", ()))
        return cls(**kwargs)

    @classmethod
    def for_profile(cls, profile: str | None, dataset_name: str = "") -> DyDiffConfig:
        """Table 4 defaults for ``dataset_name`` at the budget of ``profile``.

        eta: 0.8 for medium-replay / medium-expert, 0.6 for medium and Maze2D (the paper is silent on
        random / expert / unknown data: 0.8). M: 2 for locomotion, 1 for Maze2D. The ``cpu`` and ``smoke``
        profiles shrink B_r and L and keep the paper's rollout interval (500 updates) and pool age: the
        FIFO holds the last :data:`POOL_ROUNDS` rounds, as the paper's 2M buffer does; ``notes`` says how
        and why. The iteration rule and dynamics noise follow the paper's text (``replace``, ``sample``) at
        ``paper`` and ``smoke``; at ``cpu`` they follow the measured winner of the fixed diagnose on the cpu
        hopper-medium-replay recipe (benchmarks/RESULTS.md, "DyDiff dose-response"): the official code's
        ``average`` rule with ``mean`` dynamics and SDEdit starts from sigma 0.5, the only variant whose
        refined rollouts beat the single-step model's at the end of the horizon for every M at the cpu
        denoiser's 3,000 steps (E_32 166/160/162 for M = 1/2/3 vs 180 for M = 0), at 23 instead of 67
        denoiser calls per sample.
        """
        profile = resolve_profile(profile)
        kind = dataset_kind(dataset_name)
        eta = 0.8 if kind not in ("medium", "maze2d") else 0.6
        iterations = 1 if kind == "maze2d" else 2
        rollout_batch = by_profile(profile, smoke=16, cpu=64, paper=2048)
        rollout_length = by_profile(profile, smoke=8, cpu=32, paper=100)
        interval = by_profile(profile, smoke=50, cpu=500, paper=500)
        sample_batch = by_profile(profile, smoke=16, cpu=64, paper=2048)
        kept = max(1, int(np.floor(eta * rollout_batch + 1e-9)))
        max_synthetic = by_profile(profile, smoke=POOL_ROUNDS * kept * rollout_length,
                                   cpu=POOL_ROUNDS * kept * rollout_length, paper=2_000_000)
        notes: tuple[str, ...] = ()
        if profile != "paper":
            inflow = kept * rollout_length / interval
            notes = (
                f"rollout batch B_r {rollout_batch} (paper 2048): on 2 CPU cores one diffusion sample of "
                "256 windows at N=34 Heun steps takes ~20 s, so a round must stay small",
                f"rollout length L {rollout_length} (paper 100): the CPU denoiser is trained on "
                f"{rollout_length}-step windows; shorter windows make it trainable in minutes",
                f"a round every {interval} updates as in the paper, so generating costs about as much as "
                f"updating; inflow <= {inflow:.1f} synthetic transitions per update (paper ~330)",
                f"synthetic FIFO {max_synthetic:,} transitions = the last {POOL_ROUNDS} rounds, so synthetic "
                f"rows are at most ~{POOL_ROUNDS * interval:,} updates old, as in the paper's 2M buffer",
                "unchanged from the paper: M, eta, softmax temperature 0.05, real ratio 0.6, batch 256",
            )
        cpu_rule = profile == "cpu"
        if cpu_rule:
            notes = (*notes, "iterations average with the previous states, the single-step model takes the "
                             "elite mean, and each iteration starts from the previous states noised to sigma "
                             "0.5 (SDEdit) - the official code's rule plus SDEdit, the winner of the cpu "
                             "diagnose (docs/dydiff.md); --iteration-rule replace --dynamics sample "
                             "--sdedit-sigma 0 gives the paper's text")
        return cls(iterations=iterations, rollout_batch=rollout_batch, rollout_length=rollout_length,
                   rollout_interval=interval, eta=eta, sample_batch=sample_batch,
                   max_synthetic=max_synthetic, profile=profile, dataset=str(dataset_name), notes=notes,
                   iteration_rule="average" if cpu_rule else "replace",
                   dynamics="mean" if cpu_rule else "sample", sdedit_sigma=0.5 if cpu_rule else None)

    def explain(self) -> list[str]:
        """Lines for the user: the profile and, when scaled down, what changed from the paper and why."""
        sdedit = "" if self.sdedit_sigma is None else f", SDEdit from sigma {self.sdedit_sigma}"
        head = (f"DyDiff ({self.profile}): M={self.iterations} ({self.iteration_rule}, dynamics "
                f"{self.dynamics}{sdedit}), B_r={self.rollout_batch}, L={self.rollout_length}, "
                f"every {self.rollout_interval} "
                f"updates, FIFO {self.max_synthetic:,} (~{self.pool_rounds:.0f} rounds), "
                f"{self.filter} filter eta={self.eta} (keeps {self.kept_per_round}), "
                f"temperature={self.temperature}, real ratio={self.real_ratio}")
        if self.notes:
            head += "\n  the profile scaled the paper's settings down:"
        return [head] + [f"  - {note}" for note in self.notes]


# ----------------------------------------------------------------------------------------------------
# pure functions (the paper's equations)
# ----------------------------------------------------------------------------------------------------

def policy_actions(policy: Policy, observations: np.ndarray) -> np.ndarray:
    """a ~ pi(.|s) for a batch: (B, obs) -> (B, act) float32, checked finite."""
    actions = np.asarray(policy.act(np.ascontiguousarray(observations, dtype=np.float32)), dtype=np.float32)
    if actions.ndim != 2 or actions.shape[0] != observations.shape[0]:
        raise UserInputError(f"the policy returned actions of shape {actions.shape} for "
                             f"{observations.shape[0]} observations; expected (B, act)")
    return actions


def single_step_rollout(s0: np.ndarray, policy: Policy, dynamics: _Dynamics, length: int,
                        rng: np.random.Generator, *, mean: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 6: tau_dyn = (s_0, a_0, s_1, ..., a_{L-1}, s_L) with a_i ~ pi(.|s_i), s_{i+1} ~ T(.|s_i, a_i).

    s0: (B, obs) float32. ``mean``: s_{i+1} = the elite mean (``predict_next(..., deterministic=True)``,
    the official code) instead of a sample. Returns states (B, L+1, obs) with ``states[:, 0] == s0`` and
    actions (B, L, act).
    """
    s0 = np.asarray(s0, dtype=np.float32)
    states = [s0]
    actions = []
    for _ in range(length):
        a = policy_actions(policy, states[-1])
        actions.append(a)
        nxt = (dynamics.predict_next(states[-1], a, rng, deterministic=True) if mean  # type: ignore[call-arg]
               else dynamics.predict_next(states[-1], a, rng))
        states.append(np.asarray(nxt, dtype=np.float32))
    return np.stack(states, axis=1), np.stack(actions, axis=1)


def relabel_actions(policy: Policy, states: np.ndarray) -> np.ndarray:
    """Eq. 8: a_0 ~ pi(.|s_0), a_i ~ pi(.|s_i^DM) for 1 <= i <= L-1.

    states: (B, L+1, obs); the last state s_L gets no action. Returns (B, L, act) float32. All L states of
    a row go to the policy, including those after a (later cut) terminal state.
    """
    b, l_plus_1, obs = states.shape
    flat = states[:, : l_plus_1 - 1].reshape(b * (l_plus_1 - 1), obs)
    acts = policy_actions(policy, flat)
    return acts.reshape(b, l_plus_1 - 1, acts.shape[-1])


def iteration_update(new: np.ndarray, previous: np.ndarray, rule: str) -> np.ndarray:
    """The states of iteration k from its diffusion sample ``new`` and the states of iteration k-1.

    ``replace`` (the paper's text): states^(k) = new. ``average`` (the official code,
    ``dynamics_recursive_sampler``): states^(k) = (new + states^(k-1)) / 2. Both (B, L+1, obs); s_0 is
    shared, so it stays exact.
    """
    if rule == "replace":
        return np.asarray(new, dtype=np.float32)
    if rule == "average":
        return (0.5 * (np.asarray(new, dtype=np.float64) + previous)).astype(np.float32)
    raise UserInputError(f"unknown iteration rule '{rule}'; use one of {', '.join(ITERATION_RULES)}")


def refine(s0: np.ndarray, actions: np.ndarray, policy: Policy, diffusion: _Sampler, iterations: int,
           rng: np.random.Generator, *, states: np.ndarray | None = None, rule: str = "replace",
           sdedit_sigma: float | None = None,
           on_iteration: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
           ) -> tuple[np.ndarray | None, np.ndarray]:
    """Eq. 7-9 iterated M times: a sample ~ p_theta(.|s_0, a^(k-1)), the iteration rule, then Eq. 8.

    s0: (B, obs); actions: (B, L, act) = a^(0), the single-step rollout's actions; states: (B, L+1, obs)
    = states^(0), the single-step rollout's states (needed by ``rule="average"`` and by an SDEdit start).
    rule: :func:`iteration_update`. sdedit_sigma: start each reverse process from states^(k-1) noised to
    that level (``diffusion.sample(..., init_states=, start_sigma=)``) instead of pure noise.
    ``on_iteration(k, states^(k), a^(k-1))`` sees each iteration's states (after the rule) with the
    actions their sample was conditioned on.
    Returns (states^(M) (B, L+1, obs) or None when M = 0, a^(M) (B, L, act)).
    """
    if (rule == "average" or sdedit_sigma is not None) and iterations > 0 and states is None:
        raise UserInputError("refine() needs the single-step states for the 'average' rule or an SDEdit "
                             "start; pass states=")
    current: np.ndarray | None = states
    refined: np.ndarray | None = None
    for k in range(1, iterations + 1):
        if sdedit_sigma is not None:
            new = diffusion.sample(s0, actions, rng, init_states=current,  # type: ignore[call-arg]
                                   start_sigma=sdedit_sigma)
        else:
            new = diffusion.sample(s0, actions, rng)
        new = np.asarray(new, dtype=np.float32)
        refined = new if rule == "replace" or current is None else iteration_update(new, current, rule)
        current = refined
        if on_iteration is not None:
            on_iteration(k, refined, actions)
        actions = relabel_actions(policy, refined)
    return refined, actions


def trajectory_scores(rewards: np.ndarray) -> np.ndarray:
    """Eq. 11: r_psi(tau) = r_psi(s_0, a_0) + sum_{i=1}^{L-1} r_psi(s_i, a_i). rewards: (B, L) -> (B,).

    Summed over the whole generated window, as the paper writes it (before the cut at terminals).
    Rows holding NaN/inf get -inf so no filter keeps them.
    """
    scores = rewards.astype(np.float64).sum(axis=1)
    return np.where(np.isfinite(scores), scores, -np.inf)


def truncate_at_terminals(terminal_flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut each row at its first terminal state.

    terminal_flags: (B, L) bool, True where the env's termination rule holds for s_{i+1}.
    Returns lengths (B,) int64 = first terminal step + 1 (L when none) and terminals (B, L) bool, True
    only on that first terminal step (later steps are dropped as padding).
    """
    flags = np.asarray(terminal_flags, dtype=bool)
    b, length = flags.shape
    any_terminal = flags.any(axis=1)
    first = np.where(any_terminal, flags.argmax(axis=1), length - 1)
    lengths = (first + 1).astype(np.int64)
    terminals = np.zeros((b, length), dtype=bool)
    rows = np.flatnonzero(any_terminal)
    terminals[rows, first[rows]] = True
    return lengths, terminals


def mask_padding(observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                 lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero every step past each row's length (observations past ``s_length``) so padding is inert.

    observations (B, L+1, obs), actions (B, L, act), rewards (B, L), lengths (B,); returns copies.
    """
    length = actions.shape[1]
    step_valid = np.arange(length)[None, :] < lengths[:, None]
    obs_valid = np.arange(length + 1)[None, :] <= lengths[:, None]
    return (np.where(obs_valid[..., None], observations, 0.0).astype(np.float32),
            np.where(step_valid[..., None], actions, 0.0).astype(np.float32),
            np.where(step_valid, rewards, 0.0).astype(np.float32))


def finite_rows(states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """(B,) bool: rows whose states (B, L+1, obs), actions (B, L, act) and rewards (B, L) are all finite."""
    return (np.isfinite(states).all(axis=(1, 2)) & np.isfinite(actions).all(axis=(1, 2))
            & np.isfinite(rewards).all(axis=1))


def kept_batch(states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, flags: np.ndarray,
               keep: np.ndarray, *, generator: str, round: int, learner_step: int,
               filter_score: np.ndarray | Callable[[np.ndarray], np.ndarray],
               start_index: np.ndarray) -> TrajectoryBatch:
    """The rows ``keep`` (K,) of a round as a validated :class:`TrajectoryBatch`: each cut at its first
    terminal (:func:`truncate_at_terminals` on flags (B, L)) with the padding zeroed (:func:`mask_padding`).

    states (B, L+1, obs), actions (B, L, act), rewards (B, L): the whole round; filter_score: (K,) float32,
    or a function of the kept rows' lengths (K,) that returns it; start_index: (K,) of the kept rows.
    """
    lengths, terminals = truncate_at_terminals(flags[keep])
    obs_k, act_k, rew_k = mask_padding(states[keep], actions[keep], rewards[keep], lengths)
    k = keep.shape[0]
    score = filter_score(lengths) if callable(filter_score) else filter_score
    batch = TrajectoryBatch(
        observations=obs_k, actions=act_k, rewards=rew_k, terminals=terminals, lengths=lengths,
        generator=generator, round=np.full(k, round, dtype=np.int64),
        learner_step=np.full(k, learner_step, dtype=np.int64), filter_score=score, start_index=start_index)
    if k:
        batch.validate()
    return batch


def select_trajectories(scores: np.ndarray, kind: str, eta: float, temperature: float,
                        rng: np.random.Generator) -> np.ndarray:
    """Indices (K,) int64 kept by the ``hardmax`` / ``softmax`` filter (section 4.2), K = floor(eta*B).

    Delegates to :mod:`augment.generators.filters`; rows with a score of -inf (non-finite rollouts) are
    never kept. The result is sorted so the store keeps the rollout order.
    """
    from augment.generators import filters

    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0:
        return np.zeros(0, dtype=np.int64)
    keep = max(1, int(np.floor(eta * scores.shape[0] + 1e-9)))
    keep = min(keep, finite.size)
    eta_eff = keep / finite.size
    sub = scores[finite]
    if kind == "hardmax":
        picked = filters.hardmax_filter(sub, eta_eff)
    elif kind == "softmax":
        picked = filters.softmax_filter(sub, eta_eff, temperature=temperature, rng=rng)
    else:
        raise UserInputError(f"unknown filter '{kind}'; use one of {', '.join(FILTERS)}")
    return np.sort(finite[np.asarray(picked, dtype=np.int64)])


# ----------------------------------------------------------------------------------------------------
# the generator
# ----------------------------------------------------------------------------------------------------

@dataclass
class RoundStats:
    """What one :meth:`DyDiffGenerator.generate` call did: counts and wall time per stage (seconds)."""

    generated: int = 0
    kept: int = 0
    transitions: int = 0
    terminated: int = 0
    nonfinite: int = 0
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
        """Train (or load from the cache keyed by dataset and config hashes) both models."""
        from augment.diffusion.trajectory import fit_trajectory_diffusion
        from augment.world import fit_world_model

        self.dataset_name = dataset.name
        self.env_id = dataset.env_id
        self._start_states = dataset.transitions.observations
        self.world = fit_world_model(dataset, self.world_config(), progress=self.progress, cache=True)
        self.diffusion = fit_trajectory_diffusion(dataset, self.diffusion_config(), progress=self.progress,
                                                  cache=True)
        self._check_horizon()

    def attach(self, dataset: OfflineDataset, world: Any, diffusion: Any) -> None:
        """Use already-fitted models (the diagnostics and benchmarks share them) with ``dataset``."""
        self.dataset_name = dataset.name
        self.env_id = dataset.env_id
        self._start_states = dataset.transitions.observations
        self.world = world
        self.diffusion = diffusion
        self._check_horizon()

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
            "max_synthetic": cfg.max_synthetic,
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

        Returns the floor(eta * n) kept trajectories (fewer only if rollouts went non-finite), each cut
        at its first terminal; provenance: round, learner_step, filter_score (Eq. 11), start_index.
        """
        import time

        self._require_fitted()
        assert self._start_states is not None and self.world is not None
        if policy is None:
            raise UserInputError("DyDiff rolls out the learning policy; pass a policy to generate()")
        if n < 1:
            raise UserInputError(f"rollout batch must be >= 1 (got {n})")
        cfg = self.config
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
        flags = np.asarray(self.world.is_terminal(states[:, 1:].reshape(b * length, obs_size)),
                           dtype=bool).reshape(b, length)
        scores = trajectory_scores(rewards)
        finite = finite_rows(states, actions, rewards)
        scores = np.where(finite, scores, -np.inf)
        stats.nonfinite = int((~finite).sum())
        keep = select_trajectories(scores, cfg.filter, cfg.eta, cfg.temperature, rng)
        batch = kept_batch(states, actions, rewards, flags, keep, generator=self.name, round=round,
                           learner_step=learner_step, filter_score=scores[keep].astype(np.float32),
                           start_index=start_index[keep])
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
