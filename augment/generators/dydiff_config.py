"""DyDiff's settings (dydiff.txt Table 4; REFERENCE section 6): :class:`DyDiffConfig` and its choices.

:func:`dataset_kind` maps a dataset name to the D4RL data kind that picks Table 4's eta and M;
:meth:`DyDiffConfig.for_profile` scales B_r, L and the FIFO down for the ``cpu`` / ``smoke`` profiles.
Re-exported by :mod:`augment.generators.dydiff`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augment.profiles import by_profile, resolve_profile
from stores.errors import check_settings

FILTERS: tuple[str, ...] = ("softmax", "hardmax")
#: How an iteration's diffusion sample becomes the states: ``replace`` (the paper's text, Algorithm 1) or
#: ``average`` ((new + previous) / 2, the official code's ``dynamics_recursive_sampler``).
ITERATION_RULES: tuple[str, ...] = ("replace", "average")
#: How the single-step model is rolled (Eq. 6): ``sample`` (a random elite's Gaussian sample) or ``mean``
#: (the mean over elites of their means, no noise; the official code).
DYNAMICS_MODES: tuple[str, ...] = ("sample", "mean")
#: What r_psi's predictions are clipped to: ``none`` (the paper) or ``data`` (the dataset's reward range).
REWARD_CLIPS: tuple[str, ...] = ("none", "data")
#: Rounds of synthetic data the cpu / smoke FIFO holds (the paper's 2M buffer holds ~12 rounds).
POOL_ROUNDS = 12


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
    reward_clip: ``none`` (the paper) or ``data``: clip r_psi's predictions to the dataset's reward range
        [min r, max r] before scoring and storing (not in the paper; a guard for sparse-reward data such as
        maze2d, whose regressed rewards otherwise fall outside the env's {0, 1}).
    state_box: None (the paper) or a margin m >= 0: cut each rollout before its first state outside the
        data's per-dimension box widened by m times its width (MOPO-style truncation at the data's
        support; not in the paper). With it on, Eq. 11 sums only the steps kept, and rows whose first
        synthetic state is already outside are never kept.
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
    reward_clip: str = "none"
    state_box: float | None = None
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
            (self.reward_clip in REWARD_CLIPS,
             f"--reward-clip must be one of {', '.join(REWARD_CLIPS)} (got '{self.reward_clip}')"),
            (self.state_box is None or self.state_box >= 0.0,
             f"--state-box margin must be >= 0 or unset (got {self.state_box})"),
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
        guards = ["rewards clipped to the data's range"] if self.reward_clip == "data" else []
        if self.state_box is not None:
            guards.append(f"rollouts cut at the data's state box (margin {self.state_box:g})")
        head = (f"DyDiff ({self.profile}): M={self.iterations} ({self.iteration_rule}, dynamics "
                f"{self.dynamics}{sdedit}), B_r={self.rollout_batch}, L={self.rollout_length}, "
                f"every {self.rollout_interval} "
                f"updates, FIFO {self.max_synthetic:,} (~{self.pool_rounds:.0f} rounds), "
                f"{self.filter} filter eta={self.eta} (keeps {self.kept_per_round}), "
                f"temperature={self.temperature}, real ratio={self.real_ratio}")
        if guards:
            head += "; not in the paper: " + ", ".join(guards)
        if self.notes:
            head += "\n  the profile scaled the paper's settings down:"
        return [head] + [f"  - {note}" for note in self.notes]
