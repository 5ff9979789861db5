"""Trajectory Diffuser (trajectory_diffuser.txt) as pure functions: returns-to-go, condition dropout,
the autoregressive plan (Eq. 5, Alg. A.3 lines 8-12), partial refinement (Algorithm 1, Eq. 9-11), the
RTG decrement, Table A6, and the per-env queues of Algorithm A.3.

Two meanings of K are kept apart: ``n_train_steps`` = K = 100 diffusion steps the model is trained with
(A.4), ``n_refine_steps`` = k = 5 (2 for pen) steps the planner refines with (Algorithm 1's "improve steps
K"). Shapes: plans are channels first, (B, S, H) normalised states, H = planning horizon in states.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from augment.diffusion import ddpm
from augment.planners.devices import normal_like
from stores.errors import UserInputError

Tensor = torch.Tensor
NextFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


# ------------------------------------------------------------------------------------------ Table A6

@dataclass(frozen=True)
class TaskSettings:
    """One row of Table A6: learning rate, horizon H (states), refinement steps k, guidance omega and the
    target return-to-go R-hat (raw env reward units)."""

    lr: float
    horizon: int
    n_refine_steps: int
    omega: float
    target_rtg: float


#: Table A6 [P] keyed by (family, kind). The official code's tables differ in places (PLANNERS.md §2.2.8).
TABLE_A6: dict[tuple[str, str], TaskSettings] = {
    **{("halfcheetah", k): TaskSettings(2e-4, 8, 5, 1.1, r)
       for k, r in (("medium-expert", 11000.0), ("medium", 5300.0), ("medium-replay", 5300.0))},
    **{("hopper", k): TaskSettings(2e-4, 16, 5, 1.2, r)
       for k, r in (("medium-expert", 3700.0), ("medium", 3100.0), ("medium-replay", 3100.0))},
    **{("walker2d", k): TaskSettings(2e-4, 32, 5, 1.2, r)
       for k, r in (("medium-expert", 5100.0), ("medium", 4200.0), ("medium-replay", 4200.0))},
    **{("pen", k): TaskSettings(1e-4, 16, 2, 1.3, 6000.0) for k in ("human", "expert", "cloned")},
    ("kitchen", "partial"): TaskSettings(1e-4, 32, 5, 1.2, 500.0),
    ("kitchen", "mixed"): TaskSettings(1e-4, 32, 5, 1.2, 400.0),
}
#: Used for data Table A6 does not list (hopper's row without a target: the target then comes from the
#: data, see :func:`default_target_rtg`).
FALLBACK_SETTINGS = TaskSettings(2e-4, 16, 5, 1.2, math.nan)


def table_a6(dataset_name: str) -> TaskSettings | None:
    """Table A6's row for a dataset name (``hopper-medium-replay``, ``hopper-mr``, ``pen-human-v1``,
    ``kitchen-partial-v0``); None when the table does not list it."""
    from stores.names import parse_name

    key = str(dataset_name or "").strip().lower().replace("_", "-")
    if not key:
        return None
    try:
        parsed = parse_name(key)
        return TABLE_A6.get((parsed.family, parsed.kind))
    except UserInputError:
        pass
    for (family, kind), row in TABLE_A6.items():
        if family in ("pen", "kitchen") and key.startswith(f"{family}-{kind}"):
            return row
    return None


def default_target_rtg(episode_returns: Sequence[float]) -> float:
    """[S] Target RTG for data Table A6 does not list: the best episode return in the data."""
    returns = [float(r) for r in episode_returns]
    if not returns:
        raise UserInputError("the dataset has no episodes to take a target return-to-go from")
    return max(returns)


# ------------------------------------------------------------------------------------------ RTG labels

def returns_to_go(rewards: np.ndarray, discount: float = 1.0) -> np.ndarray:
    """R-hat_t = sum_{t' >= t} discount^(t'-t) r_t' for every state of an episode (Sec. 4.1, A.4: discount 1).

    rewards: (T,) -> (T+1,) float64, with R-hat_T = 0 at the state reached after the last action.
    """
    r = np.asarray(rewards, dtype=np.float64)
    out = np.zeros(r.shape[0] + 1, dtype=np.float64)
    for t in range(r.shape[0] - 1, -1, -1):
        out[t] = r[t] + discount * out[t + 1]
    return out


def window_condition(rtg: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """y(tau) of Eq. 6: the RTG at each window's first state. rtg: (N,) per state; starts: (W,) rows."""
    return np.asarray(rtg)[np.asarray(starts, dtype=np.int64)]


def decrement_rtg(rtg: np.ndarray, rewards: np.ndarray, scale: float, floor: float | None) -> np.ndarray:
    """The next RTG after real rewards (PLANNERS.md §2.2.6): rtg - r / scale, clipped below at ``floor``
    (already scaled; the official code's floor is target / (3 scale); None: no floor). (B,) -> (B,)."""
    out = np.asarray(rtg, dtype=np.float64) - np.asarray(rewards, dtype=np.float64) / float(scale)
    return out if floor is None else np.maximum(out, float(floor))


# ------------------------------------------------------------------------------------------ CFG pieces

def condition_dropout(batch: int, p: float, generator: torch.Generator | None = None,
                      device: torch.device | None = None) -> Tensor:
    """eta ~ Bern(p) per sample (Eq. 6-7): (B,) bool, True where the condition is replaced by the null.
    Drawn on the generator's device (the CPU when None), returned on ``device`` (None: where drawn)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"drop probability must lie in [0, 1], got {p}")
    where = generator.device if generator is not None else torch.device("cpu")
    drop = torch.rand(batch, generator=generator, device=where) < p
    return drop if device is None else drop.to(device)


def cfg_eps_fn(denoiser: Callable[..., Tensor], cond: Tensor, omega: float, sched: ddpm.DDPMSchedule, *,
               on_call: Callable[[], None] | None = None) -> ddpm.EpsFn:
    """eps-hat of Eq. 11 as an ``eps_fn(x, k)`` for :func:`augment.diffusion.ddpm.reverse_loop`.

    denoiser(x (N, S, H), noise (N,), cond (N, D), drop (N,) bool) -> eps (N, S, H), e.g. a conditioned
    :class:`augment.nn.unet.TemporalUNet`; cond: (B, D). eps_null and eps_cond are one forward of 2B rows
    (omega = 1 needs only the conditional half, omega = 0 only the null half). on_call() is called once
    per forward (network call counting).
    """
    def eps_fn(x: Tensor, k: Tensor) -> Tensor:
        if on_call is not None:
            on_call()
        noise = ddpm.noise_input(sched, k).to(x.dtype)
        b = x.shape[0]
        if omega == 1.0 or omega == 0.0:
            drop = torch.full((b,), omega == 0.0, dtype=torch.bool, device=x.device)
            return denoiser(x, noise, cond, drop)
        drop = torch.cat([torch.zeros(b, dtype=torch.bool, device=x.device),
                          torch.ones(b, dtype=torch.bool, device=x.device)])
        both = denoiser(torch.cat([x, x]), torch.cat([noise, noise]), torch.cat([cond, cond]), drop)
        return ddpm.classifier_free_guidance(both[b:], both[:b], omega)

    return eps_fn


# ------------------------------------------------------------------------------------------ planning

def autoregressive_plan(next_fn: NextFn, states: Tensor, rtgs: Tensor, calls: int, context: int
                        ) -> tuple[Tensor, Tensor]:
    """Eq. 5 / Alg. A.3 lines 8-12: ``calls`` times, (s', R') = next_fn(states[:, -context:],
    rtgs[:, -context:]) at the last position, appended.

    next_fn(states (B, n, S), rtgs (B, n)) -> (next states (B, n, S), next rtgs (B, n)) per position (a
    :class:`augment.nn.gpt.StateRTGTransformer`); states (B, n0, S), rtgs (B, n0). Returns the grown
    sequences (B, n0 + calls, S) and (B, n0 + calls).
    """
    if context < 1:
        raise ValueError(f"context must be >= 1, got {context}")
    for _ in range(int(calls)):
        ns, nr = next_fn(states[:, -context:], rtgs[:, -context:])
        states = torch.cat([states, ns[:, -1:]], dim=1)
        rtgs = torch.cat([rtgs, nr[:, -1:]], dim=1)
    return states, rtgs


def add_noise(plan: Tensor, k: int, sched: ddpm.DDPMSchedule, generator: torch.Generator | None = None
              ) -> Tensor:
    """Algorithm 1's AddNoise: x_k = sqrt(abar_k) tau + sqrt(1 - abar_k) eps (Eq. 2 at level k); eps is
    drawn on the generator's device and moved to the plan's (:func:`augment.planners.devices.normal_like`).
    """
    return ddpm.q_sample(plan, k, normal_like(plan, generator), sched)


def clamp_first_state(s_t: Tensor) -> Callable[[Tensor], Tensor]:
    """Inpainting hook x[:, :, 0] <- s_t (Algorithm 1 line 17). s_t: (B, S); x: (B, S, H)."""
    def fn(x: Tensor) -> Tensor:
        out = x.clone()
        out[:, :, 0] = s_t.to(x.dtype)
        return out

    return fn


def refine(plan: Tensor, s_t: Tensor, eps_fn: ddpm.EpsFn, sched: ddpm.DDPMSchedule, n_refine_steps: int, *,
           add_noise_first: bool = True, variance: str = "beta", last_step_noise: bool = True,
           noise_scale: float = 1.0, generator: torch.Generator | None = None,
           on_step: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """Algorithm 1 (Sec. 4.3): refine a plan with the last ``n_refine_steps`` = k reverse steps.

    plan: (B, S, H) normalised states (the GPT proposal); s_t: (B, S) the current state, clamped into
    x[:, :, 0] before and after every step (and so at the end). add_noise_first: the paper's AddNoise to
    level k (False: the official code, which feeds the clean plan in as x_k). variance: ``beta`` (Eq. 9,
    Sigma = beta_k I) or ``posterior`` (beta-tilde_k, the official code); last_step_noise: draw noise at
    k = 1 too (Eq. 9 as written; beta-tilde_1 = 0 makes it moot for ``posterior``); noise_scale: alpha of
    Alg. A.3 line 20, x_{k-1} ~ N(mu, alpha Sigma). k = 0 returns the clamped plan. Returns x_0 (B, S, H).
    """
    k = int(n_refine_steps)
    if not 0 <= k <= sched.num_steps:
        raise ValueError(f"n_refine_steps must lie in [0, {sched.num_steps}] (the training steps), got {k}")
    inpaint = clamp_first_state(s_t)
    if k == 0:
        return inpaint(plan)
    x = add_noise(plan, k, sched, generator) if add_noise_first else plan
    std = math.sqrt(float(noise_scale))

    def randn_like(t: Tensor) -> Tensor:
        return std * normal_like(t, generator)

    return ddpm.reverse_loop(x, k, eps_fn, sched, randn_like=randn_like if noise_scale > 0 else None,
                             variance=variance, inpaint_fn=inpaint, last_step_noise=last_step_noise,
                             on_step=on_step)


def softmax_pick(scores: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """The official code's candidate choice: one index per row drawn with p ~ softmax(scores / T).
    scores: (B, N) -> (B,) int64."""
    z = np.asarray(scores, dtype=np.float64) / max(float(temperature), 1e-12)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random((p.shape[0], 1))
    return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1).astype(np.int64)


# ------------------------------------------------------------------------------------------ Alg. A.3 queues

class ReturnToGoHistory:
    """Per-env queues h (observed states) and r (their RTGs) of Algorithm A.3, in network units.

    context: L, the queue length (H - 1); target: the scaled target RTG every episode starts from;
    scale: RTG units per network unit (R-hat / scale is what the networks see); floor: the scaled floor of
    the decrement (None: none); fixed: keep the RTG at the target (no reward hook needed).

    Protocol: ``reset(n)``; then per env step ``insert(states)`` (from ``act``: each env's observed state
    enters h with the env's current RTG; planned states never do) and ``observe(rewards)`` (the real rewards
    of that step decrement each env's RTG). An ``insert`` without an ``observe`` since the previous one
    raises :class:`UserInputError` unless ``fixed``: the RTG would silently stay constant.
    """

    def __init__(self, context: int, target: float, scale: float, floor: float | None = None,
                 fixed: bool = False) -> None:
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        self.context = int(context)
        self.target = float(target)
        self.scale = float(scale)
        self.floor = floor
        self.fixed = bool(fixed)
        self.reset(0)

    def reset(self, n: int) -> None:
        """Empty the queues of ``n`` envs and set each RTG to the target."""
        self.states: list[deque[np.ndarray]] = [deque(maxlen=self.context) for _ in range(int(n))]
        self.rtgs: list[deque[float]] = [deque(maxlen=self.context) for _ in range(int(n))]
        self.current = np.full(int(n), self.target, dtype=np.float64)
        self.awaiting_reward = np.zeros(int(n), dtype=bool)

    @property
    def n_envs(self) -> int:
        return len(self.states)

    def insert(self, states: np.ndarray) -> None:
        """Alg. A.3 lines 3-4 for every env: h.insert(s_t), r.insert(rtg). states: (B, S) normalised."""
        states = np.asarray(states, dtype=np.float32)
        if states.shape[0] != self.n_envs:
            raise UserInputError(
                f"trajectory diffuser: act() got {states.shape[0]} observations but reset({self.n_envs}) "
                f"was called; call reset(n) with the number of envs before each batch of episodes")
        if self.awaiting_reward.any() and not self.fixed:
            raise UserInputError(
                "trajectory diffuser: act() was called again without observe(rewards, observations, dones) "
                "after the previous env step; its return-to-go is decremented by each real reward, so a "
                "custom harness must call planner.observe(...) after every step (baselines.evaluate.evaluate "
                "does), or run with --set fixed_rtg=true to keep the RTG at the target (not the paper)")
        for i in range(self.n_envs):
            self.states[i].append(states[i].copy())
            self.rtgs[i].append(float(self.current[i]))
        self.awaiting_reward[:] = True

    def observe(self, rewards: np.ndarray) -> None:
        """Decrement each env's RTG by its real reward (raw units): rtg - r / scale, floored."""
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if rewards.shape[0] != self.n_envs:
            raise UserInputError(f"trajectory diffuser: observe() got {rewards.shape[0]} rewards for "
                                 f"{self.n_envs} envs")
        if not self.fixed:
            self.current = decrement_rtg(self.current, rewards, self.scale, self.floor)
        self.awaiting_reward[:] = False

    def contexts(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Groups of envs with equal queue length: (rows (G,), states (G, n, S), rtgs (G, n))."""
        groups: dict[int, list[int]] = {}
        for i, q in enumerate(self.states):
            groups.setdefault(len(q), []).append(i)
        out = []
        for n, rows in sorted(groups.items()):
            if n == 0:
                raise UserInputError("trajectory diffuser: no observed state yet; call act(observations)")
            out.append((np.asarray(rows, dtype=np.int64), np.stack([np.stack(self.states[i]) for i in rows]),
                        np.asarray([list(self.rtgs[i]) for i in rows], dtype=np.float32)))
        return out


__all__ = [
    "FALLBACK_SETTINGS", "TABLE_A6", "ReturnToGoHistory", "TaskSettings", "add_noise", "autoregressive_plan",
    "cfg_eps_fn", "clamp_first_state", "condition_dropout", "decrement_rtg", "default_target_rtg", "refine",
    "returns_to_go", "softmax_pick", "table_a6", "window_condition",
]
