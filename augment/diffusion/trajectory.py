"""DyDiff's trajectory diffusion model (Section 4.1): an EDM denoiser over windows of L+1 states and
L actions, trained on the windows of Eq. 2 with the loss of Eq. 4, sampled with Algorithm 2.

Public API (the ``[diffusion]`` contract)::

    config = TrajectoryDiffusionConfig.for_profile("cpu")
    model = fit_trajectory_diffusion(dataset, config)          # cached by (dataset hash, config hash)
    states = model.sample(s0 (B, obs), actions (B, L, act), rng)   # (B, L+1, obs), raw units
    model.horizon, model.network_evaluations_per_sample, model.save(dir), TrajectoryDiffusion.load(dir)

Choices the paper leaves open are listed in ``docs/diffusion.md`` and in the docstrings below.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from augment.cache import load_or_train
from augment.diffusion import edm
from augment.diffusion.model_dir import load_weights, read_config, read_meta, write_model_dir
from augment.diffusion.training import cpu_state, fit_edm, resolve_device
from augment.diffusion.windows import WindowIndex, build_windows, condition_mask, pack, to_relative
from augment.nn.unet import TemporalUNet, count_parameters
from augment.profiles import by_profile, resolve_profile
from stores.errors import UserInputError
from stores.paths import augment_home
from stores.schema import OfflineDataset

Tensor = torch.Tensor

#: Config fields that do not change the trained model and stay out of the cache key.
_UNHASHED = ("device", "profile", "condition_after_churn")


@dataclass(frozen=True)
class TrajectoryDiffusionConfig:
    """Settings of the trajectory diffusion model.

    horizon: L, steps per generated trajectory (L+1 states, L actions; paper: 100).
    widths: channels per U-Net level (the number of levels is ``len(widths)``); kernel, activation:
    of the residual blocks. edm: DyDiff Table 3 (EDM hyper-parameters, N = ``edm.num_steps``).
    train_steps, batch_size, lr, warmup_steps, grad_clip: Adam training of Eq. 4 (lr ramps up linearly
    over ``warmup_steps`` then stays constant; gradient norm clipped at ``grad_clip``).
    ema_decay: the sampler uses an exponential moving average of the weights, with decay
    min(ema_decay, (1+k)/(10+k)) at step k (so short runs are not dominated by the initial weights).
    mask_padding: Eq. 4's loss covers states after the first; when True only real (non-padded) states.
    relative_states: the denoiser models s_t - s_0 (normalised units) for t >= 1 instead of s_t, with
    s_0 itself kept absolute as the condition (:func:`augment.diffusion.windows.to_relative`); not in
    the paper (docs/diffusion.md).
    condition_after_churn: sampling only; also hard-replace s_0 and the actions right after the churn
    noise of Algorithm 2, so the denoiser reads clean conditions at every call as it did in training
    (False: Algorithm 2 as printed; see docs/diffusion.md for the measured difference).
    seed: initial weights, window draws and noise. device: ``auto`` (CUDA when present), ``cpu``, ``cuda``.
    profile: the profile it came from (informational; not part of the cache key).
    """

    horizon: int = 100
    widths: tuple[int, ...] = (128, 256, 512, 1024)
    kernel: int = 5
    activation: str = "mish"
    edm: edm.EDMParams = field(default_factory=edm.EDMParams)
    train_steps: int = 400_000
    batch_size: int = 256
    lr: float = 2e-4
    warmup_steps: int = 1000
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    mask_padding: bool = True
    relative_states: bool = False
    condition_after_churn: bool = True
    seed: int = 0
    device: str = "auto"
    profile: str = "paper"

    @classmethod
    def for_profile(cls, profile: str) -> TrajectoryDiffusionConfig:
        """The settings for ``smoke`` (tests: seconds), ``cpu`` (scaled down) or ``paper`` (Table 3, L=100).

        ``paper`` keeps Table 3 exactly, L = 100 and a ~66M-parameter U-Net (the paper's is 58M).
        ``cpu`` keeps Table 3 (N = 34 included: fewer Heun steps measurably inflate the sample spread, see
        tests/test_edm.py) and shrinks L to 32, the U-Net to 1.1M parameters and training to 3000 steps
        of 256 windows, so that one model trains in ~15-20 min and one DyDiff round of 256 trajectories
        with M = 2 (134 network calls) costs seconds on 2 cores (see :meth:`scaling_note`).
        """
        profile = resolve_profile(profile)
        base = cls(profile=profile)
        return by_profile(
            profile,
            smoke=replace(base, horizon=8, widths=(16, 32), train_steps=40, batch_size=32, lr=1e-3,
                          warmup_steps=5, edm=replace(base.edm, num_steps=6)),
            cpu=replace(base, horizon=32, widths=(32, 64, 128), train_steps=3000, batch_size=256, lr=5e-4,
                        warmup_steps=200),
            paper=base,
        )

    def scaling_note(self) -> str | None:
        """One line saying what this config changed from the paper's settings and why (None if nothing)."""
        paper = TrajectoryDiffusionConfig()
        changed = []
        if self.horizon != paper.horizon:
            changed.append(f"L {paper.horizon}->{self.horizon}")
        if self.widths != paper.widths:
            changed.append(f"U-Net widths {paper.widths}->{self.widths}")
        if self.edm.num_steps != paper.edm.num_steps:
            changed.append(f"Heun steps N {paper.edm.num_steps}->{self.edm.num_steps}")
        if self.train_steps != paper.train_steps:
            changed.append(f"train steps {paper.train_steps}->{self.train_steps}")
        if self.batch_size != paper.batch_size:
            changed.append(f"batch {paper.batch_size}->{self.batch_size}")
        if not changed:
            return None
        return (f"diffusion model (profile '{self.profile}'): " + ", ".join(changed)
                + "; scaled down so training and sampling fit a CPU (use --profile paper on a GPU).")

    def to_json(self) -> dict[str, Any]:
        """JSON-native dict (tuples become lists)."""
        data = asdict(self)
        data["widths"] = list(self.widths)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrajectoryDiffusionConfig:
        data = dict(data)
        data["widths"] = tuple(int(w) for w in data["widths"])
        data["edm"] = edm.EDMParams(**data["edm"])
        return cls(**data)

    def config_hash(self) -> str:
        """sha256 (first 12 hex) of the JSON of every field that changes the trained model."""
        data = {k: v for k, v in self.to_json().items() if k not in _UNHASHED}
        if not data.get("relative_states"):  # added later: absent from the hashes of older models
            data.pop("relative_states", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def validate(self) -> None:
        """Raise :class:`UserInputError` for settings that cannot work."""
        if self.horizon < 1:
            raise UserInputError(f"diffusion horizon L must be >= 1, got {self.horizon}")
        if not self.widths or min(self.widths) < 1:
            raise UserInputError(f"U-Net widths must be positive, got {self.widths}")
        if self.train_steps < 0 or self.batch_size < 1:
            raise UserInputError("train_steps must be >= 0 and batch_size >= 1")
        if self.edm.num_steps < 1:
            raise UserInputError(f"the number of Heun steps N must be >= 1, got {self.edm.num_steps}")


@dataclass(frozen=True)
class Normalizer:
    """Per-dimension scaled z-scores, states and actions separately: x_norm = (x - mean) / div with
    div = std / scale, so normalised data have standard deviation ``scale``.

    obs_mean, obs_std: (obs,) float32 mean and divisor; act_mean, act_std: (act,) float32 likewise (the
    dataset std is floored at 1e-3); scale: s_d of Table 3 (0.5), so the data match the spread the EDM
    preconditioning assumes.
    """

    obs_mean: np.ndarray
    obs_std: np.ndarray
    act_mean: np.ndarray
    act_std: np.ndarray
    scale: float = 1.0

    @classmethod
    def from_dataset(cls, dataset: OfflineDataset, scale: float) -> Normalizer:
        stats = dataset.stats
        acts = dataset.transitions.actions.astype(np.float64)
        return cls(obs_mean=stats.obs_mean.astype(np.float32),
                   obs_std=(stats.obs_std / scale).astype(np.float32),
                   act_mean=acts.mean(axis=0).astype(np.float32),
                   act_std=(np.maximum(acts.std(axis=0), 1e-3) / scale).astype(np.float32), scale=scale)

    def norm_obs(self, obs: np.ndarray) -> np.ndarray:
        return ((obs - self.obs_mean) / self.obs_std).astype(np.float32)

    def denorm_obs(self, obs: np.ndarray) -> np.ndarray:
        return (obs * self.obs_std + self.obs_mean).astype(np.float32)

    def norm_act(self, act: np.ndarray) -> np.ndarray:
        return ((act - self.act_mean) / self.act_std).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else float(v)) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Normalizer:
        return cls(**{k: (float(v) if k == "scale" else np.asarray(v, dtype=np.float32))
                      for k, v in data.items()})


def sdedit_schedule(t: list[float], gammas: list[float], start_sigma: float,
                    ) -> tuple[list[float], list[float]]:
    """The tail of a sampling schedule for an SDEdit start at ``start_sigma``.

    t: N+1 levels t_0 > ... > t_{N-1} > t_N = 0; gammas: their N churn factors. Returns (t[i0:],
    gammas[i0:]) with i0 the first level t_i0 <= start_sigma (at most N-1, so at least one step runs);
    the sampler then starts from init + t_i0 * eps. start_sigma must be > 0.
    """
    if not start_sigma > 0.0:
        raise UserInputError(f"the SDEdit start sigma must be > 0 (got {start_sigma})")
    n = len(t) - 1
    i0 = next((i for i in range(n) if t[i] <= start_sigma), n - 1)
    return list(t[i0:]), list(gammas[i0:])


def build_network(config: TrajectoryDiffusionConfig, channels: int) -> TemporalUNet:
    """The U-Net F for ``channels`` = obs+act, initialised from ``config.seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return TemporalUNet(channels, config.widths, kernel=config.kernel, act=config.activation)


class TrajectoryDiffusion:
    """A trained trajectory denoiser with its normaliser; samples states given s_0 and actions.

    network: the EMA U-Net F (eval mode); obs_dim, act_dim: sizes; meta: JSON-native training record.
    """

    def __init__(self, config: TrajectoryDiffusionConfig, network: TemporalUNet, normalizer: Normalizer,
                 obs_dim: int, act_dim: int, meta: dict[str, Any] | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.network = network.to(self.device).eval()
        self.normalizer = normalizer
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.meta = dict(meta or {})
        self.from_cache = False
        mask = condition_mask(config.horizon, obs_dim, act_dim).T  # (C, L+1)
        self._cond_mask = torch.as_tensor(mask, device=self.device)[None]

    @property
    def horizon(self) -> int:
        """L: actions per trajectory (the sample has L+1 states)."""
        return self.config.horizon

    @property
    def network_evaluations_per_sample(self) -> int:
        """Denoiser calls per call of :meth:`sample` at the default N (2N-1 for Heun)."""
        return edm.network_evaluations(self.config.edm.num_steps)

    def denoise(self, x: Tensor, sigma: float) -> Tensor:
        """D_theta(x; sigma) on normalised trajectories x (B, obs+act, L+1) (channels first)."""
        s = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
        return edm.precondition(self.network, x, s, self.config.edm.sigma_data)

    def sample(self, s0: np.ndarray, actions: np.ndarray, rng: np.random.Generator, *,
               num_steps: int | None = None, init_states: np.ndarray | None = None,
               start_sigma: float | None = None) -> np.ndarray:
        """Draw tau_s ~ p_theta(tau | s_0, tau_a) with Algorithm 2 (hard replacement of s_0 and actions).

        s0: (B, obs) float32 start states; actions: (B, L, act) float32; both raw units. rng seeds the
        sampler noise (same rng state -> same samples on the same device). num_steps: N (default
        ``config.edm.num_steps``). Returns states (B, L+1, obs) float32 in raw units with
        ``out[:, 0] == s0`` exactly (the conditions are replaced in normalised space after every step, and
        the raw s0 is copied into the output so the normalisation round trip cannot perturb it).

        SDEdit-style start (not in the paper): with ``init_states`` (B, L+1, obs) raw and ``start_sigma``,
        the reverse process starts from the normalised ``init_states`` plus noise of std t_i0 and runs
        only the schedule's levels t_i0 > ... > t_N = 0, where t_i0 is the largest level of the N-step
        schedule at or below ``start_sigma`` (:func:`sdedit_schedule`); it costs 2 (N - i0) - 1 calls.
        """
        s0 = np.asarray(s0, dtype=np.float32)
        actions = np.asarray(actions, dtype=np.float32)
        if s0.ndim != 2 or s0.shape[1] != self.obs_dim:
            raise UserInputError(f"s0 has shape {s0.shape}, expected (B, {self.obs_dim})")
        b, length = s0.shape[0], self.horizon
        if actions.shape != (b, length, self.act_dim):
            raise UserInputError(
                f"actions have shape {actions.shape}, expected ({b}, {length}, {self.act_dim}): the "
                f"diffusion model was trained with horizon L={length}")
        if (init_states is None) != (start_sigma is None):
            raise UserInputError("an SDEdit start needs both init_states and start_sigma (or neither)")
        if b == 0:
            return np.zeros((0, length + 1, self.obs_dim), dtype=np.float32)
        p = self.config.edm
        n = p.num_steps if num_steps is None else int(num_steps)
        if n < 1:
            raise UserInputError(f"the number of Heun steps N must be >= 1, got {n}")
        t = edm.time_steps(n, p.sigma_min, p.sigma_max, p.rho)
        gammas = edm.churn_gammas(t, p.s_churn, p.s_tmin, p.s_tmax)
        init_norm = None
        if init_states is not None and start_sigma is not None:
            init_states = np.asarray(init_states, dtype=np.float32)
            if init_states.shape != (b, length + 1, self.obs_dim):
                raise UserInputError(f"init_states have shape {init_states.shape}, expected "
                                     f"({b}, {length + 1}, {self.obs_dim})")
            t, gammas = sdedit_schedule(t, gammas, float(start_sigma))
            init_norm = self._normalised_layout(init_states, actions)

        cond = np.zeros((b, self.obs_dim + self.act_dim, length + 1), dtype=np.float32)
        cond[:, :self.obs_dim, 0] = self.normalizer.norm_obs(s0)
        cond[:, self.obs_dim:, :length] = self.normalizer.norm_act(actions).transpose(0, 2, 1)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(rng.integers(0, 2 ** 63 - 1)))
        with torch.inference_mode():
            cond_t = torch.as_tensor(cond, device=self.device)
            mask = self._cond_mask

            def apply_conditions(x: Tensor) -> Tensor:
                return torch.where(mask, cond_t, x)

            def randn_like(x: Tensor) -> Tensor:
                return torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)

            latents = randn_like(cond_t)
            if init_norm is not None:  # heun_sample starts from latents * t_0 = init + t_0 * eps
                latents = latents + torch.as_tensor(init_norm, device=self.device) / t[0]
            x = edm.heun_sample(self.denoise, latents, t, gammas, p.s_noise, apply_conditions, randn_like,
                                 replace_after_churn=self.config.condition_after_churn)
            states = x[:, :self.obs_dim, :].transpose(1, 2).cpu().numpy()
        if self.config.relative_states:
            states = states.copy()
            states[:, 1:] += states[:, :1]
        out = self.normalizer.denorm_obs(states)
        out[:, 0] = s0
        return out

    def _normalised_layout(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Raw states (B, L+1, obs) and actions (B, L, act) -> the denoiser's input (B, C, L+1): normalised,
        relative to s_0 when ``config.relative_states``."""
        x = pack(self.normalizer.norm_obs(states), self.normalizer.norm_act(actions))
        if self.config.relative_states:
            x = to_relative(x, self.obs_dim)
        return np.ascontiguousarray(x.transpose(0, 2, 1))

    def network_evaluations_for(self, start_sigma: float | None = None) -> int:
        """Denoiser calls of one :meth:`sample` at the default N: full schedule, or an SDEdit start."""
        if start_sigma is None:
            return self.network_evaluations_per_sample
        p = self.config.edm
        t = edm.time_steps(p.num_steps, p.sigma_min, p.sigma_max, p.rho)
        sub, _ = sdedit_schedule(t, edm.churn_gammas(t, p.s_churn, p.s_tmin, p.s_tmax), float(start_sigma))
        return edm.network_evaluations(len(sub) - 1)

    # ----------------------------------------------------------------------------------------- persistence

    def save(self, directory: str | Path) -> Path:
        """Write config.json, meta.json (normaliser, sizes, training record) and model.pt to ``directory``."""
        meta = dict(self.meta, obs_dim=self.obs_dim, act_dim=self.act_dim,
                    normalizer=self.normalizer.to_json())
        return write_model_dir(directory, self.config.to_json(), meta, self.network)

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> TrajectoryDiffusion:
        """Read a model written by :meth:`save` (``device`` overrides the saved config's)."""
        directory = Path(directory)
        if not (directory / "model.pt").exists():
            raise UserInputError(f"no trajectory diffusion model in {directory} (expected model.pt there)")
        config = TrajectoryDiffusionConfig.from_json(read_config(directory))
        if device is not None:
            config = replace(config, device=device)
        meta = read_meta(directory)
        obs_dim, act_dim = int(meta.pop("obs_dim")), int(meta.pop("act_dim"))
        normalizer = Normalizer.from_json(meta.pop("normalizer"))
        network = load_weights(build_network(config, obs_dim + act_dim), directory)
        return cls(config, network, normalizer, obs_dim, act_dim, meta)


# --------------------------------------------------------------------------------------------- training

def dataset_windows(dataset: OfflineDataset, normalizer: Normalizer, horizon: int) -> WindowIndex:
    """The windows of Eq. 2 over every episode of ``dataset``, normalised before padding."""
    return build_windows([normalizer.norm_obs(ep.observations) for ep in dataset.episodes],
                         [normalizer.norm_act(ep.actions) for ep in dataset.episodes], horizon)


def loss_mask(cond: Tensor, obs_dim: int, valid: Tensor | None) -> Tensor:
    """Entries Eq. 4 covers: state channels of steps t >= 1 (not the conditions), and when ``valid`` is
    given only real (non-padded) steps.

    cond: (1, C, L+1) bool condition mask; valid: (B, 1, L+1) bool or None. Returns (1 or B, C, L+1) bool.
    """
    states = torch.zeros_like(cond)
    states[:, :obs_dim] = True
    mask = states & ~cond
    return mask & valid if valid is not None else mask


def train_denoiser(network: TemporalUNet, windows: WindowIndex, config: TrajectoryDiffusionConfig, *,
                   progress: bool = True, resume: dict[str, Any] | None = None,
                   ) -> tuple[TemporalUNet, dict[str, Any], dict[str, Any]]:
    """Minimise Eq. 4 over the windows; return the EMA network (eval mode), a training record and the
    training state after ``config.train_steps`` steps.

    Each step draws ``batch_size`` windows uniformly from the union S of Eq. 2, noise levels
    ln(s) ~ N(P_mean, P_std^2), adds n ~ N(0, s^2 I), hard-replaces the conditions (s_0 and all actions)
    in the noisy input with their clean values (as Algorithm 2 does at sampling time), and takes the
    lambda(s)-weighted squared error on states t >= 1 (only real states when ``mask_padding``).

    The learning rate and the EMA decay depend on the step only (never on ``train_steps``), so the first
    k steps of a long run are a k-step run: ``resume`` (a state returned by an earlier, shorter call with
    the same other settings: weights, EMA, Adam, both RNGs, loss record) continues it to
    ``config.train_steps`` with the result a single run would have given.
    """
    device = resolve_device(config.device)
    network = network.to(device).train()
    ema = build_network(config, network.channels).to(device)
    ema.load_state_dict(network.state_dict())
    ema.eval().requires_grad_(False)
    opt = torch.optim.Adam(network.parameters(), lr=config.lr)
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    history: list[tuple[int, float]] = []
    running = math.nan
    first_step, seconds_before = 0, 0.0
    if resume is not None:
        network.load_state_dict(resume["network"])
        ema.load_state_dict(resume["ema"])
        opt.load_state_dict(resume["optimizer"])
        gen.set_state(resume["torch_generator"])
        rng.bit_generator.state = resume["numpy_rng"]
        history = [tuple(h) for h in resume["loss_history"]]  # type: ignore[misc]
        running = float(resume["running_loss"])
        first_step, seconds_before = int(resume["step"]), float(resume["train_seconds"])
        if first_step > config.train_steps:
            raise UserInputError(f"cannot resume a denoiser trained {first_step} steps to "
                                 f"{config.train_steps} steps")
    obs_dim = windows.obs_dim
    channels = network.channels
    cond = torch.as_tensor(condition_mask(config.horizon, obs_dim, channels - obs_dim).T, device=device)[None]
    start = time.perf_counter()

    def batch(step: int) -> tuple[Tensor, Tensor, Tensor]:
        idx = rng.integers(0, len(windows), size=config.batch_size)
        x_np, valid_np = windows.gather(idx)
        if config.relative_states:
            x_np = to_relative(x_np, obs_dim, valid_np)
        y = torch.as_tensor(x_np, device=device).transpose(1, 2).contiguous()  # (B, C, L+1)
        valid = torch.as_tensor(valid_np, device=device)[:, None, :]  # (B, 1, L+1)
        return y, loss_mask(cond, obs_dim, valid if config.mask_padding else None), cond

    history, running = fit_edm(
        network, ema, opt, batch, config.edm, gen, first_step=first_step, train_steps=config.train_steps,
        lr_at=lambda step: config.lr * min(1.0, (step + 1) / max(config.warmup_steps, 1)),
        grad_clip=config.grad_clip if config.grad_clip > 0 else None, ema_decay=config.ema_decay,
        copy_buffers=True, history=history, running=running, desc="diffusion (Eq. 4)", progress=progress)
    seconds = seconds_before + time.perf_counter() - start
    record = {"train_seconds": seconds, "final_loss": running,
              "loss_history": history, "parameters": count_parameters(network), "windows": len(windows),
              "resumed_from_step": first_step}
    state = {"step": config.train_steps, "network": cpu_state(network), "ema": cpu_state(ema),
             "optimizer": opt.state_dict(), "torch_generator": gen.get_state(),
             "numpy_rng": rng.bit_generator.state, "loss_history": list(history), "running_loss": running,
             "train_seconds": seconds}
    return ema, record, state


def cache_dir(dataset: OfflineDataset, config: TrajectoryDiffusionConfig) -> Path:
    """``augment_home()/diffusion/<dataset hash>-<config hash>``."""
    return augment_home() / "diffusion" / f"{dataset.content_hash}-{config.config_hash()}"


def resume_path(dataset: OfflineDataset, config: TrajectoryDiffusionConfig) -> Path:
    """Where a resumable training state of ``config``'s family (every setting but ``train_steps``) lives:
    ``augment_home()/diffusion-resume/<dataset hash>-<hash of the config with train_steps 0>.pt``."""
    family = replace(config, train_steps=0).config_hash()
    return augment_home() / "diffusion-resume" / f"{dataset.content_hash}-{family}.pt"


def fit_trajectory_diffusion(dataset: OfflineDataset, config: TrajectoryDiffusionConfig, *,
                             progress: bool = True, cache: bool = True,
                             resumable: bool = False) -> TrajectoryDiffusion:
    """Train the trajectory diffusion model on ``dataset`` or load it from the cache.

    With ``cache`` a model for the same (dataset content hash, config hash) is loaded instead of trained
    (``model.from_cache`` is then True), and a newly trained one is written there atomically; parallel
    runs train it once (:func:`augment.cache.load_or_train`).

    ``resumable`` (with ``cache``): training continues from the state a shorter run of the same settings
    left in :func:`resume_path` (when it trained at most ``config.train_steps`` steps) and leaves its own
    state there, so a dose-response over budgets 1k, 3k, 10k costs 10k steps in all and an interrupted
    sweep loses at most one budget's increment. The model equals a fresh run's (see
    :func:`train_denoiser`).
    """
    config.validate()
    if not cache:
        return _train(dataset, config, progress=progress)
    model, loaded = load_or_train(
        cache_dir(dataset, config), complete="model.pt",
        load=lambda d: TrajectoryDiffusion.load(d, device=config.device),
        train=lambda: _train(dataset, config, progress=progress, resumable=resumable),
        save=lambda m, d: m.save(d))
    if loaded:
        model.config = replace(model.config, **{k: getattr(config, k) for k in _UNHASHED})
        model.from_cache = True
    return model


def _load_resume(path: Path, train_steps: int) -> dict[str, Any] | None:
    from augment.cache import load_torch_or_none

    state = load_torch_or_none(path)  # a torn or foreign file: train from scratch
    return state if isinstance(state, dict) and int(state.get("step", -1)) <= train_steps else None


def _save_resume(path: Path, state: dict[str, Any]) -> None:
    from augment.cache import save_torch_atomic

    save_torch_atomic(state, path)


def _train(dataset: OfflineDataset, config: TrajectoryDiffusionConfig, *,
           progress: bool, resumable: bool = False) -> TrajectoryDiffusion:
    """Train a model (Eq. 4 on the Eq. 2 windows), printing what the profile scaled down."""
    note = config.scaling_note()
    if progress and note:
        tqdm.write(note)
    dataset.validate()
    normalizer = Normalizer.from_dataset(dataset, config.edm.sigma_data)
    windows = dataset_windows(dataset, normalizer, config.horizon)
    network = build_network(config, dataset.observation_size + dataset.action_size)
    resume = _load_resume(resume_path(dataset, config), config.train_steps) if resumable else None
    ema, record, state = train_denoiser(network, windows, config, progress=progress, resume=resume)
    if resumable:
        _save_resume(resume_path(dataset, config), state)
    record.update(dataset=dataset.name, dataset_hash=dataset.content_hash, config_hash=config.config_hash(),
                  torch_version=torch.__version__)
    return TrajectoryDiffusion(config, ema, normalizer, dataset.observation_size, dataset.action_size, record)
