"""SynthER (Lu et al. 2023, "Synthetic Experience Replay"): a transition-level EDM diffusion model over
(s, a, r, s', done) that upsamples an offline dataset; the ``+SynthER`` column of the DyDiff paper.

One training sample is the flat vector x = [s (obs), a (act), r (1), s' (obs), d (1)]
(:func:`pack_transitions` / :func:`unpack_transitions` are the only code that knows the offsets).
s, a, r, s' are z-scored per dimension with the dataset's statistics; d stays 0/1 (SynthER's
``disable_terminal_norm``). The denoiser is the residual MLP of :mod:`augment.nn.residual` with EDM
preconditioning (EDM Eq. 7), trained with EDM's loss (lambda(s) ||D(x + n; s) - x||^2, ln s ~ N(P_mean,
P_std^2)) and sampled with EDM's stochastic Heun sampler (EDM Algorithm 2, no conditions).

Terminals of generated transitions come from one of two sources (``SynthERConfig.terminals``):

* ``model``: SynthER's own channel, d > ``terminal_threshold`` (0.5);
* ``env``: the env's termination rule on s' (:mod:`augment.world.termination`), where one exists;
* ``auto`` (default): ``env`` when the dataset's env has a rule, else ``model``. docs/generators.md gives
  the measured agreement of both with the data (:func:`terminal_report`).

The generator ignores the policy; its model is trained once per (dataset, config) and cached
(:func:`fit_synther`, :func:`augment.cache.load_or_train`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from augment.cache import load_or_train
from augment.diffusion import edm
from augment.diffusion.model_dir import load_weights, read_config, read_meta, write_model_dir
from augment.diffusion.training import fit_edm, resolve_device
from augment.nn.residual import ResidualMLP
from augment.profiles import by_profile, resolve_profile
from stores.errors import UserInputError, check_settings
from stores.paths import augment_home
from stores.schema import OfflineDataset, TrajectoryBatch

if TYPE_CHECKING:  # pragma: no cover
    from baselines.protocols import Policy

Tensor = torch.Tensor
TERMINAL_SOURCES: tuple[str, ...] = ("auto", "model", "env")
#: SynthER's sampler (its published configuration): 128 Heun steps with churn 80 on [0.05, 50],
#: S_noise 1.003; sigma_data 1 because the data are z-scored to unit variance.
SYNTHER_EDM = edm.EDMParams(sigma_min=0.002, sigma_max=80.0, sigma_data=1.0, rho=7.0, p_mean=-1.2, p_std=1.2,
                            s_churn=80.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003, num_steps=128)
#: Config fields that only affect sampling / bookkeeping, kept out of the cache key.
_SAMPLING_FIELDS = ("terminals", "terminal_threshold", "sample_batch", "clip_actions", "device", "profile")
_SAMPLING_EDM_FIELDS = ("num_steps", "s_churn", "s_tmin", "s_tmax", "s_noise", "sigma_min", "sigma_max",
                        "rho")


# ----------------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SynthERConfig:
    """SynthER's settings (paper profile = the paper / its published configuration).

    width, blocks, emb_dim, activation: the residual MLP denoiser (paper: width 1024, 6 blocks, a
    128-wide time embedding, ReLU). edm: EDM hyper-parameters; ``edm.num_steps`` is N, the Heun steps
    (paper 128). train_steps, batch_size, lr, weight_decay: AdamW with a cosine decay of the learning
    rate to 0 over ``train_steps`` (paper 100k steps of 256, lr 3e-4, no weight decay); ema_decay: the
    sampler uses an EMA of the weights with decay min(ema_decay, (1+k)/(10+k)) at step k.
    terminals: ``auto`` | ``model`` | ``env`` (module docstring); terminal_threshold: on the d channel.
    clip_actions: clip generated actions into the dataset's per-dimension [min, max] (no policy can take
    an action outside the action space). sample_batch: transitions denoised at once (memory bound).
    seed: initial weights, minibatch draws and training noise. device: ``auto`` / ``cpu`` / ``cuda``.
    profile: which profile made it (recorded). notes: what a scaled profile changed and why.
    """

    width: int = 1024
    blocks: int = 6
    emb_dim: int = 128
    activation: str = "relu"
    edm: edm.EDMParams = field(default_factory=lambda: SYNTHER_EDM)
    train_steps: int = 100_000
    batch_size: int = 256
    lr: float = 3e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    terminals: str = "auto"
    terminal_threshold: float = 0.5
    clip_actions: bool = True
    sample_batch: int = 100_000
    seed: int = 0
    device: str = "auto"
    profile: str = "paper"
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = (
            (self.width >= 1 and self.blocks >= 0, f"SynthER width/blocks must be positive "
                                                   f"(got {self.width}/{self.blocks})"),
            (self.emb_dim >= 2 and self.emb_dim % 2 == 0, f"emb_dim must be even (got {self.emb_dim})"),
            (self.train_steps >= 0 and self.batch_size >= 1, "train_steps must be >= 0 and batch_size >= 1"),
            (self.terminals in TERMINAL_SOURCES,
             f"terminals must be one of {', '.join(TERMINAL_SOURCES)} (got '{self.terminals}')"),
            (self.sample_batch >= 1, f"sample_batch must be >= 1 (got {self.sample_batch})"),
            (self.edm.num_steps >= 1, f"Heun steps N must be >= 1 (got {self.edm.num_steps})"),
        )
        check_settings(checks)

    @classmethod
    def for_profile(cls, profile: str | None, dataset_name: str = "", **overrides: Any) -> SynthERConfig:
        """``paper``: the paper's settings. ``cpu``: width 256, 4 blocks, 4000 steps, N = 32 Heun steps.
        ``smoke``: seconds, for tests. ``overrides`` replace fields (``num_steps`` sets edm.num_steps)."""
        del dataset_name  # SynthER has no per-dataset settings
        name = resolve_profile(profile)
        base = cls(profile=name)
        cfg = by_profile(
            name,
            smoke=replace(base, width=32, blocks=2, emb_dim=16, train_steps=60, batch_size=64, lr=1e-3,
                          edm=replace(SYNTHER_EDM, num_steps=6), sample_batch=512),
            cpu=replace(base, width=256, blocks=4, emb_dim=64, train_steps=4000, batch_size=256, lr=1e-3,
                        edm=replace(SYNTHER_EDM, num_steps=32), sample_batch=4096),
            paper=base,
        )
        if name != "paper":
            cfg = replace(cfg, notes=(
                f"denoiser width {cfg.width} x {cfg.blocks} blocks (paper 1024 x 6) and {cfg.train_steps:,} "
                f"training steps (paper 100k): the paper's model needs a GPU for its ~25 min of training",
                f"N = {cfg.edm.num_steps} Heun steps (paper 128): sampling costs 2N - 1 denoiser calls "
                "per transition",
                "unchanged: EDM schedule and churn, z-scored inputs with sigma_data 1, d channel unscaled"))
        num_steps = overrides.pop("num_steps", None)
        if num_steps is not None:
            cfg = replace(cfg, edm=replace(cfg.edm, num_steps=int(num_steps)))
        return replace(cfg, **overrides) if overrides else cfg

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SynthERConfig:
        data = dict(data)
        data["edm"] = edm.EDMParams(**data["edm"])
        data["notes"] = tuple(data.get("notes", ()))
        return cls(**data)

    def config_hash(self) -> str:
        """sha256 (12 hex) of the fields that change the trained model (sampling settings excluded)."""
        data = {k: v for k, v in self.to_json().items() if k not in _SAMPLING_FIELDS and k != "notes"}
        data["edm"] = {k: v for k, v in data["edm"].items() if k not in _SAMPLING_EDM_FIELDS}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def explain(self) -> list[str]:
        head = (f"SynthER ({self.profile}): residual MLP {self.width} x {self.blocks}, "
                f"{self.train_steps:,} steps of {self.batch_size}, N={self.edm.num_steps} Heun steps, "
                f"terminals '{self.terminals}'")
        return [head] + [f"  - {note}" for note in self.notes]


# ----------------------------------------------------------------------------------------------------
# packing and normalisation (the only code that knows the layout)
# ----------------------------------------------------------------------------------------------------

def feature_size(obs_dim: int, act_dim: int) -> int:
    """D = 2 obs + act + 2: the length of one packed transition."""
    return 2 * obs_dim + act_dim + 2


def pack_transitions(obs: np.ndarray, act: np.ndarray, rew: np.ndarray, next_obs: np.ndarray,
                     done: np.ndarray) -> np.ndarray:
    """(N, obs), (N, act), (N,), (N, obs), (N,) -> (N, D) float32 rows [s, a, r, s', d]."""
    n = obs.shape[0]
    return np.concatenate([obs, act, np.reshape(rew, (n, 1)), next_obs,
                           np.reshape(done, (n, 1)).astype(np.float32)], axis=1).astype(np.float32)


def unpack_transitions(x: np.ndarray, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    """(N, D) rows -> observations (N, obs), actions (N, act), rewards (N,), next_observations (N, obs),
    done (N,) (the raw d channel, float)."""
    o, a = obs_dim, act_dim
    if x.ndim != 2 or x.shape[1] != feature_size(o, a):
        raise ValueError(f"packed transitions must have shape (N, {feature_size(o, a)}), got {x.shape}")
    return {"observations": x[:, :o], "actions": x[:, o:o + a], "rewards": x[:, o + a],
            "next_observations": x[:, o + a + 1: 2 * o + a + 1], "done": x[:, -1]}


@dataclass(frozen=True)
class FeatureNormalizer:
    """Per-feature z-score of packed rows: (x - mean) / std, the d channel left as is (mean 0, std 1).

    mean, std: (D,) float32, std floored at 1e-3.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> FeatureNormalizer:
        mean = x.mean(axis=0).astype(np.float64)
        std = np.maximum(x.std(axis=0), 1e-3).astype(np.float64)
        mean[-1], std[-1] = 0.0, 1.0
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        return (x * self.std + self.mean).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureNormalizer:
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))


def dataset_rows(dataset: OfflineDataset) -> np.ndarray:
    """Every transition of ``dataset`` packed: (N, D) float32 (d = the data's terminal flag)."""
    tr = dataset.transitions
    return pack_transitions(tr.observations, tr.actions, tr.rewards, tr.next_observations, tr.terminals)


# ----------------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------------

def build_denoiser(config: SynthERConfig, features: int) -> ResidualMLP:
    """The residual MLP F for D = ``features``, initialised from ``config.seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return ResidualMLP(features, features, config.width, config.blocks, emb_dim=config.emb_dim,
                           activation=config.activation)


class SynthERModel:
    """A trained SynthER denoiser (EMA weights) with its normaliser; draws raw transitions.

    network: the EMA residual MLP; obs_dim / act_dim: sizes; act_low / act_high: (act,) the dataset's
    action range (for ``clip_actions``); meta: JSON-native training record.
    """

    def __init__(self, config: SynthERConfig, network: ResidualMLP, normalizer: FeatureNormalizer,
                 obs_dim: int, act_dim: int, act_low: np.ndarray, act_high: np.ndarray,
                 meta: dict[str, Any] | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.network = network.to(self.device).eval()
        self.normalizer = normalizer
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.act_low = np.asarray(act_low, np.float32)
        self.act_high = np.asarray(act_high, np.float32)
        self.meta = dict(meta or {})
        self.from_cache = False

    @property
    def features(self) -> int:
        return feature_size(self.obs_dim, self.act_dim)

    @property
    def network_evaluations_per_sample(self) -> int:
        """Denoiser calls per sampled batch: 2N - 1 (Heun)."""
        return edm.network_evaluations(self.config.edm.num_steps)

    def denoise(self, x: Tensor, sigma: float) -> Tensor:
        """D_theta(x; sigma) on normalised rows x (B, D) (EDM Eq. 7)."""
        s = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
        return edm.precondition(self.network, x, s, self.config.edm.sigma_data)

    def sample_rows(self, n: int, rng: np.random.Generator, *, num_steps: int | None = None) -> np.ndarray:
        """n packed transitions (n, D) float32 in raw units, drawn with EDM Algorithm 2 (no conditions).

        ``rng`` seeds the latents and the churn noise (same rng state -> same rows on the same device);
        rows are denoised ``config.sample_batch`` at a time.
        """
        if n < 0:
            raise UserInputError(f"cannot sample {n} transitions")
        p = self.config.edm
        steps = p.num_steps if num_steps is None else int(num_steps)
        t = edm.time_steps(steps, p.sigma_min, p.sigma_max, p.rho)
        gammas = edm.churn_gammas(t, p.s_churn, p.s_tmin, p.s_tmax)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(rng.integers(0, 2 ** 63 - 1)))

        def randn_like(x: Tensor) -> Tensor:
            return torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)

        out = []
        with torch.inference_mode():
            for lo in range(0, n, self.config.sample_batch):
                b = min(self.config.sample_batch, n - lo)
                latents = torch.randn((b, self.features), generator=gen, device=self.device)
                x = edm.heun_sample(self.denoise, latents, t, gammas, p.s_noise, lambda z: z, randn_like)
                out.append(x.cpu().numpy())
        rows = np.concatenate(out) if out else np.zeros((0, self.features), np.float32)
        return self.normalizer.denormalize(rows)

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """config.json, meta.json (normaliser, sizes, action range, training record), model.pt."""
        meta = dict(self.meta, obs_dim=self.obs_dim, act_dim=self.act_dim,
                    normalizer=self.normalizer.to_json(), act_low=self.act_low.tolist(),
                    act_high=self.act_high.tolist())
        return write_model_dir(directory, self.config.to_json(), meta, self.network)

    @classmethod
    def load(cls, directory: str | Path, *, config: SynthERConfig | None = None) -> SynthERModel:
        """Read a directory written by :meth:`save`; ``config`` replaces the saved sampling settings."""
        d = Path(directory)
        if not (d / "model.pt").is_file():
            raise UserInputError(f"no SynthER model in {d} (expected model.pt); train one with fit_synther")
        saved = SynthERConfig.from_json(read_config(d))
        if config is not None:
            if config.config_hash() != saved.config_hash():
                raise UserInputError(f"the SynthER model in {d} was trained with other settings")
            saved = config
        meta = read_meta(d)
        obs_dim, act_dim = int(meta.pop("obs_dim")), int(meta.pop("act_dim"))
        normalizer = FeatureNormalizer.from_json(meta.pop("normalizer"))
        low, high = meta.pop("act_low"), meta.pop("act_high")
        network = load_weights(build_denoiser(saved, feature_size(obs_dim, act_dim)), d)
        return cls(saved, network, normalizer, obs_dim, act_dim, np.asarray(low), np.asarray(high), meta)


def train_synther(dataset: OfflineDataset, config: SynthERConfig, *, progress: bool = True) -> SynthERModel:
    """Train the denoiser on every transition of ``dataset`` (no cache).

    Each step draws ``batch_size`` rows uniformly, ln s ~ N(P_mean, P_std^2), n ~ N(0, s^2 I), and takes
    EDM's weighted loss over all D features; AdamW with cosine learning-rate decay, gradient norm clipped
    at ``grad_clip``, EMA of the weights for sampling.
    """
    dataset.validate()
    device = resolve_device(config.device)
    raw = dataset_rows(dataset)
    normalizer = FeatureNormalizer.fit(raw)
    data = torch.as_tensor(normalizer.normalize(raw), device=device)
    network = build_denoiser(config, raw.shape[1]).to(device).train()
    ema = build_denoiser(config, raw.shape[1]).to(device)
    ema.load_state_dict(network.state_dict())
    ema.eval().requires_grad_(False)
    opt = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    start = time.perf_counter()
    ones = torch.ones((1, raw.shape[1]), dtype=torch.bool, device=device)

    def batch(step: int) -> tuple[Tensor, Tensor, None]:
        idx = torch.as_tensor(rng.integers(0, data.shape[0], size=config.batch_size), device=device)
        return data[idx], ones, None

    history, running = fit_edm(
        network, ema, opt, batch, config.edm, gen, first_step=0, train_steps=config.train_steps,
        lr_at=lambda step: 0.5 * config.lr * (1.0 + math.cos(math.pi * step / max(config.train_steps, 1))),
        grad_clip=config.grad_clip if config.grad_clip > 0 else None, ema_decay=config.ema_decay,
        desc="SynthER denoiser", progress=progress)
    tr = dataset.transitions
    meta = {"dataset": dataset.name, "dataset_hash": dataset.content_hash,
            "config_hash": config.config_hash(),
            "transitions": int(raw.shape[0]), "train_seconds": time.perf_counter() - start,
            "final_loss": running, "loss_history": history,
            "parameters": int(sum(q.numel() for q in network.parameters())),
            "data_terminal_rate": float(tr.terminals.mean()), "torch_version": torch.__version__}
    return SynthERModel(config, ema, normalizer, dataset.observation_size, dataset.action_size,
                        tr.actions.min(axis=0), tr.actions.max(axis=0), meta)


def cache_dir(dataset: OfflineDataset, config: SynthERConfig) -> Path:
    """``augment_home()/synther/<dataset hash>-<config hash>``."""
    return augment_home() / "synther" / f"{dataset.content_hash}-{config.config_hash()}"


def fit_synther(dataset: OfflineDataset, config: SynthERConfig, *, progress: bool = True,
                cache: bool = True) -> SynthERModel:
    """Train SynthER's denoiser on ``dataset`` or load it from the cache (key: dataset hash, config hash)."""
    if not cache:
        return train_synther(dataset, config, progress=progress)
    model, loaded = load_or_train(
        cache_dir(dataset, config), complete="model.pt",
        load=lambda d: SynthERModel.load(d, config=config),
        train=lambda: train_synther(dataset, config, progress=progress), save=lambda m, d: m.save(d))
    model.from_cache = loaded
    return model


# ----------------------------------------------------------------------------------------------------
# terminals: which source agrees with the data
# ----------------------------------------------------------------------------------------------------

def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Agreement of two (N,) bool flag vectors: rates of each, fraction equal, and Cohen's kappa."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    n = max(a.size, 1)
    pa, pb = float(a.mean()) if a.size else math.nan, float(b.mean()) if b.size else math.nan
    equal = float((a == b).sum() / n)
    chance = pa * pb + (1 - pa) * (1 - pb)
    kappa = (equal - chance) / (1 - chance) if chance < 1 else 1.0
    return {"rate_a": pa, "rate_b": pb, "agreement": equal, "kappa": float(kappa)}


def terminal_report(model: SynthERModel, dataset: OfflineDataset, n: int, rng: np.random.Generator
                    ) -> dict[str, Any]:
    """Measure the two terminal sources against the data (docs/generators.md quotes the figures).

    * ``data_rate``: fraction of the dataset's transitions that are terminal;
    * ``rule_on_data``: the env rule on the real s' against the real terminal flags (how exact the rule is);
    * ``model_rate`` / ``rule_rate``: terminal fraction of n generated transitions by each source;
    * ``model_vs_rule``: agreement of the two on the same generated transitions (the rule judges the
      generated s' exactly as the simulator would have);
    * ``model_on_data``: the model channel's d of real transitions is the data's flag by construction,
      so the sample rates are the comparison.
    None where the env has no rule.
    """
    from augment.world.termination import has_rule, termination_fn

    tr = dataset.transitions
    rows = unpack_transitions(model.sample_rows(n, rng), model.obs_dim, model.act_dim)
    model_flags = rows["done"] > model.config.terminal_threshold
    out: dict[str, Any] = {"samples": int(n), "data_rate": float(tr.terminals.mean()),
                           "model_rate": float(model_flags.mean()), "env_id": dataset.env_id}
    if has_rule(dataset.env_id):
        rule = termination_fn(dataset.env_id)
        finite = np.isfinite(rows["next_observations"]).all(axis=1)
        rule_flags = rule(np.where(finite[:, None], rows["next_observations"], 0.0)) | ~finite
        out["rule_rate"] = float(rule_flags.mean())
        out["rule_on_data"] = agreement(rule(tr.next_observations), tr.terminals)
        out["model_vs_rule"] = agreement(model_flags, rule_flags)
    else:
        out["rule_rate"] = None
        out["rule_on_data"] = None
        out["model_vs_rule"] = None
    return out


# ----------------------------------------------------------------------------------------------------
# the generator
# ----------------------------------------------------------------------------------------------------

def transitions_to_batch(rows: dict[str, np.ndarray], terminals: np.ndarray, name: str, *, round: int = 0,
                         learner_step: int = 0) -> TrajectoryBatch:
    """N independent transitions as N one-step trajectories (L = 1): observations (N, 2, obs)."""
    n = rows["actions"].shape[0]
    return TrajectoryBatch(
        observations=np.stack([rows["observations"], rows["next_observations"]], axis=1).astype(np.float32),
        actions=rows["actions"][:, None].astype(np.float32),
        rewards=rows["rewards"][:, None].astype(np.float32),
        terminals=np.asarray(terminals, bool)[:, None], lengths=np.ones(n, np.int64), generator=name,
        round=np.full(n, round, np.int64), learner_step=np.full(n, learner_step, np.int64),
        filter_score=np.full(n, np.nan, np.float32), start_index=np.full(n, -1, np.int64))


class SynthERGenerator:
    """SynthER behind the ``Generator`` protocol: ``generate(n, policy=None, rng)`` returns n transitions
    (one-step trajectories; rows that came out non-finite are dropped and counted in ``last_round``)."""

    name = "synther"

    def __init__(self, config: SynthERConfig | None = None, *, progress: bool = True) -> None:
        self.config = config or SynthERConfig.for_profile(None)
        self.progress = progress
        self.model: SynthERModel | None = None
        self.dataset_name = ""
        self.env_id: str | None = None
        self.last_round: dict[str, Any] = {}

    def terminal_source(self) -> str:
        """``env`` or ``model``: what ``auto`` resolves to for this dataset's env."""
        from augment.world.termination import has_rule

        if self.config.terminals == "env" and not has_rule(self.env_id):
            raise UserInputError(f"terminals='env' needs an env with a termination rule; '{self.env_id}' has "
                                 "none (use terminals='model' or 'auto')")
        if self.config.terminals == "auto":
            return "env" if has_rule(self.env_id) else "model"
        return self.config.terminals

    def fit(self, dataset: OfflineDataset) -> None:
        """Train (or load from the cache) the denoiser on ``dataset``."""
        self.dataset_name, self.env_id = dataset.name, dataset.env_id
        self.model = fit_synther(dataset, self.config, progress=self.progress, cache=True)

    def _require_fitted(self) -> SynthERModel:
        if self.model is None:
            raise UserInputError("SynthERGenerator.generate() called before fit(dataset) or load(dir)")
        return self.model

    def generate(self, n: int, policy: Policy | None = None, rng: np.random.Generator | None = None, *,
                 round: int = 0, learner_step: int = 0) -> TrajectoryBatch:
        """n synthetic transitions (the policy is ignored: SynthER upsamples the data's distribution)."""
        del policy
        model = self._require_fitted()
        if n < 1:
            raise UserInputError(f"number of transitions must be >= 1 (got {n})")
        rng = rng if rng is not None else np.random.default_rng(0)
        t0 = time.perf_counter()
        rows = unpack_transitions(model.sample_rows(n, rng), model.obs_dim, model.act_dim)
        finite = np.all([np.isfinite(v.reshape(n, -1)).all(axis=1) for v in rows.values()], axis=0)
        rows = {k: v[finite] for k, v in rows.items()}
        if self.config.clip_actions:
            rows["actions"] = np.clip(rows["actions"], model.act_low, model.act_high)
        source = self.terminal_source()
        if source == "env":
            from augment.world.termination import termination_fn

            terminals = termination_fn(self.env_id)(rows["next_observations"])
        else:
            terminals = rows["done"] > self.config.terminal_threshold
        batch = transitions_to_batch(rows, terminals, self.name, round=round, learner_step=learner_step)
        if batch.batch_size:
            batch.validate()
        self.last_round = {"generated": int(n), "kept": batch.batch_size, "nonfinite": int((~finite).sum()),
                           "terminals": int(np.sum(terminals)), "terminal_source": source,
                           "seconds": time.perf_counter() - t0}
        return batch

    def store_attrs(self) -> dict[str, Any]:
        """Provenance for the store: generator name/config, env id, terminal source."""
        cfg = self.config
        return {"generator_name": self.name, "env_id": self.env_id, "generator_config": {
            "width": cfg.width, "blocks": cfg.blocks, "num_steps": cfg.edm.num_steps,
            "train_steps": cfg.train_steps, "terminals": cfg.terminals,
            "terminal_source": self.terminal_source(), "profile": cfg.profile, "dataset": self.dataset_name,
            "config_hash": cfg.config_hash()}}

    def save(self, directory: Path) -> None:
        """Write synther.json and the model under ``directory``."""
        model = self._require_fitted()
        directory = Path(directory)
        model.save(directory / "model")
        meta = {"config": self.config.to_json(), "dataset": self.dataset_name, "env_id": self.env_id}
        (directory / "synther.json").write_text(json.dumps(meta, indent=2))

    def load(self, directory: Path) -> None:
        """Read what :meth:`save` wrote."""
        directory = Path(directory)
        if not (directory / "synther.json").is_file():
            raise UserInputError(f"{directory} holds no synther.json; point to a directory written by save()")
        meta = json.loads((directory / "synther.json").read_text())
        self.config = SynthERConfig.from_json(meta["config"])
        self.dataset_name, self.env_id = meta.get("dataset", ""), meta.get("env_id")
        self.model = SynthERModel.load(directory / "model", config=self.config)
