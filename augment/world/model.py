"""The world model DyDiff rolls the learning policy in: dynamics ensemble, reward model, termination rule.

:func:`fit_world_model` trains both models on an :class:`~stores.schema.OfflineDataset` (or loads them
from the cache ``augment_home()/world/<dataset.content_hash>-<config hash>``) and returns a
:class:`WorldModel`:

* ``predict_next(obs, act, rng)``: ``s' ~ T_phi(. | s, a)`` (Eq. 6) - for each row a uniformly drawn
  elite's Gaussian over ``s' - s``, sampled with ``rng``.
* ``predict_reward(obs, act)``: ``r_psi(s, a)`` (Eq. 10 model, used for Eq. 11's trajectory rewards).
* ``is_terminal(next_obs)``: the env's termination rule (:mod:`augment.world.termination`).

Training runs on ``device`` (``auto``: CUDA when torch sees it, else the CPU; ``cpu``; ``cuda``); the device
is not part of the cache key (a model trained on either is the same entry) and the returned model always
predicts on the CPU. Asking for CUDA on a machine without it is a one-line :class:`UserInputError`
(:func:`checked_device`).

A cache directory holds ``config.json`` (the :class:`WorldModelConfig`), ``meta.json`` (sizes, env,
elites, training reports) and ``weights.pt``; it is written to a temporary directory and renamed into
place, so a directory that exists is complete.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augment.cache import load_or_train
from augment.diffusion.training import resolve_device
from augment.world.config import WorldModelConfig
from augment.world.dynamics import GaussianDynamicsEnsemble, select_elites
from augment.world.reward import RewardModel
from augment.world.termination import termination_fn
from augment.world.training import fit_ensemble, holdout_split
from stores.errors import UserInputError
from stores.paths import augment_home
from stores.schema import OfflineDataset, check_finite

WEIGHTS = "weights.pt"


def checked_device(name: str | torch.device, *, setting: str = "device") -> torch.device:
    """The torch device to train on: ``auto`` -> CUDA when torch sees it, else CPU
    (:func:`augment.diffusion.training.resolve_device`); ``cpu`` / ``cuda`` / ``cuda:N`` as named.

    Raises :class:`UserInputError` (one line naming ``setting``) for a name torch does not parse, a device
    other than cpu / cuda, CUDA on a machine without it, or a CUDA index the machine lacks.
    """
    from baselines.preflight import check_device

    text = str(name)
    if text != "auto":
        check_device(text, setting=setting, use="auto, cpu or cuda", fallback="cpu or auto")
    return resolve_device(text)


def _f32(x: np.ndarray, name: str, width: int) -> torch.Tensor:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise UserInputError(f"world model: '{name}' must have shape (B, {width}), got {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr))


class WorldModel:
    """Trained dynamics ensemble (all members kept, elites used), reward model and termination rule.

    Attributes: config, env_id, elites (member indices, best first), report (training reports, JSON),
    from_cache (True when :func:`fit_world_model` loaded it instead of training), path (its directory,
    when saved or loaded).
    """

    def __init__(self, config: WorldModelConfig, dynamics: GaussianDynamicsEnsemble, elites: list[int],
                 reward: RewardModel, env_id: str | None, report: dict[str, Any] | None = None) -> None:
        self.config = config
        self.dynamics = dynamics.cpu().eval()
        self.elites = [int(e) for e in elites]
        self.elite_dynamics = self.dynamics.select(self.elites).eval()
        self.reward = reward.cpu().eval()
        self.env_id = env_id
        self.terminal_fn = termination_fn(env_id)
        self.report: dict[str, Any] = dict(report or {})
        self.from_cache = False
        self.path: Path | None = None

    @property
    def observation_size(self) -> int:
        return self.dynamics.observation_size

    @property
    def action_size(self) -> int:
        return self.dynamics.action_size

    def predict_next_distribution(self, obs: np.ndarray, act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each elite's Gaussian over the next state: mean (K, B, obs) and std (K, B, obs), raw float32."""
        o = _f32(obs, "obs", self.observation_size)
        a = _f32(act, "act", self.action_size)
        mean_delta, std = self.elite_dynamics.predict(o, a)
        return (o.unsqueeze(0) + mean_delta).numpy(), std.numpy()

    def predict_next(self, obs: np.ndarray, act: np.ndarray, rng: np.random.Generator, *,
                     deterministic: bool = False) -> np.ndarray:
        """s' ~ T_phi(. | s, a) (Eq. 6): obs (B, obs), act (B, act) -> (B, obs) float32.

        Each row uses an elite drawn uniformly with ``rng`` and a Gaussian sample drawn with ``rng``.
        ``deterministic=True`` returns the mean over elites of their means and draws nothing.
        """
        if deterministic:
            return self.predict_next_distribution(obs, act)[0].mean(axis=0).astype(np.float32)
        o = _f32(obs, "obs", self.observation_size)
        a = _f32(act, "act", self.action_size)
        b = o.shape[0]
        member = rng.integers(0, len(self.elites), size=b)
        noise = rng.standard_normal(size=(b, self.observation_size)).astype(np.float32)
        mean_delta, std = self.elite_dynamics.predict_rows(o, a, torch.from_numpy(member))
        return (o + mean_delta + std * torch.from_numpy(noise)).numpy()

    def predict_reward(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        """r_psi(s, a) (Eq. 10 model): obs (B, obs), act (B, act) -> (B,) float32."""
        o = _f32(obs, "obs", self.observation_size)
        a = _f32(act, "act", self.action_size)
        return self.reward.predict(o, a).numpy().astype(np.float32)

    def is_terminal(self, next_obs: np.ndarray) -> np.ndarray:
        """The env's termination rule: next_obs (B, obs) -> (B,) bool."""
        return np.asarray(self.terminal_fn(np.asarray(next_obs)), dtype=bool)

    def save(self, directory: str | Path) -> Path:
        """Write config.json, meta.json and weights.pt into ``directory`` (created)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        torch.save({"dynamics": self.dynamics.state_dict(), "reward": self.reward.state_dict()}, d / WEIGHTS)
        meta = {"observation_size": self.observation_size, "action_size": self.action_size,
                "env_id": self.env_id, "elites": self.elites, "report": self.report}
        (d / "meta.json").write_text(json.dumps(meta, indent=2))
        (d / "config.json").write_text(json.dumps(self.config.to_json(), indent=2))
        self.path = d
        return d

    @classmethod
    def load(cls, directory: str | Path) -> WorldModel:
        """Read a directory written by :meth:`save`."""
        d = Path(directory)
        if not (d / WEIGHTS).is_file():
            raise UserInputError(f"no world model in {d} (missing {WEIGHTS}); train one with fit_world_model")
        config = WorldModelConfig.from_json(json.loads((d / "config.json").read_text()))
        meta = json.loads((d / "meta.json").read_text())
        dynamics, reward = _build(config, meta["observation_size"], meta["action_size"])
        state = torch.load(d / WEIGHTS, map_location="cpu", weights_only=True)
        dynamics.load_state_dict(state["dynamics"])
        reward.load_state_dict(state["reward"])
        model = cls(config, dynamics, meta["elites"], reward, meta["env_id"], meta.get("report"))
        model.path = d
        return model


def _build(config: WorldModelConfig, obs_size: int, act_size: int,
           seed: int | None = None) -> tuple[GaussianDynamicsEnsemble, RewardModel]:
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    dynamics = GaussianDynamicsEnsemble(obs_size, act_size, config.members, config.hidden, config.activation,
                                        config.weight_decay, config.logvar_penalty, generator=gen)
    reward = RewardModel(obs_size, act_size, config.reward_hidden, config.reward_members,
                         config.reward_activation, generator=gen)
    return dynamics, reward


def cache_dir(dataset: OfflineDataset, config: WorldModelConfig) -> Path:
    """``augment_home()/world/<dataset.content_hash>-<config.config_hash()>``."""
    return augment_home() / "world" / f"{dataset.content_hash}-{config.config_hash()}"


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def train_world_model(dataset: OfflineDataset, config: WorldModelConfig, *, progress: bool = True,
                      device: str | torch.device = "auto") -> WorldModel:
    """Train the dynamics ensemble and the reward model on all of ``dataset``'s transitions (no cache).

    Both models share one holdout split. Dynamics inputs are ``(s, a)``, targets ``s' - s``; reward
    targets ``r``; each normalised with the training rows' mean and std. ``device``: see
    :func:`checked_device` (the report records the resolved one; the model is returned on the CPU).
    """
    dev = checked_device(device, setting="world model device")
    tr = dataset.transitions
    for name in ("observations", "actions", "rewards", "next_observations"):
        check_finite(name, getattr(tr, name), where=f"dataset '{dataset.name}': ")
    n = len(tr)
    rng = np.random.default_rng(config.seed)
    train_idx, hold_idx = holdout_split(n, config.holdout_ratio, config.max_holdout, rng)
    inputs = np.concatenate([tr.observations, tr.actions], axis=1).astype(np.float32)
    deltas = (tr.next_observations - tr.observations).astype(np.float32)
    dynamics, reward = _build(config, dataset.observation_size, dataset.action_size, seed=config.seed)
    dynamics.set_normalizer(inputs[train_idx], deltas[train_idx])
    reward.set_normalizer(inputs[train_idx], tr.rewards[train_idx])
    dynamics.to(dev)
    reward.to(dev)

    x = torch.from_numpy(inputs).to(dev)
    with torch.no_grad():
        xd = dynamics.normalize_inputs(x)
        yd = dynamics.normalize_targets(torch.from_numpy(deltas).to(dev))
        xr = reward.normalize_inputs(x)
        yr = reward.normalize_rewards(torch.from_numpy(tr.rewards).to(dev))
    tri = torch.from_numpy(train_idx).to(dev)
    hoi = torch.from_numpy(hold_idx).to(dev)
    dyn_report = fit_ensemble(dynamics, xd[tri], yd[tri], xd[hoi], yd[hoi], config.dynamics_settings(), rng,
                              progress=progress, desc="world model: dynamics")
    elites = select_elites(dyn_report.best_holdout_mse, config.elites)
    rew_report = fit_ensemble(reward, xr[tri], yr[tri], xr[hoi], yr[hoi], config.reward_settings(), rng,
                              progress=progress, desc="world model: reward")
    model = WorldModel(config, dynamics, elites, reward, dataset.env_id)
    hold_obs, hold_act = tr.observations[hold_idx], tr.actions[hold_idx]
    mean_next = model.predict_next(hold_obs, hold_act, rng, deterministic=True)
    model.report = {
        "dataset": dataset.name, "dataset_hash": dataset.content_hash, "transitions": n,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": str(dev),
        "dynamics": dyn_report.to_json(), "reward": rew_report.to_json(),
        "elite_holdout_mse": [dyn_report.best_holdout_mse[e] for e in elites],
        "holdout_next_state_mse_raw": float(np.mean((mean_next - tr.next_observations[hold_idx]) ** 2)),
        "holdout_reward_mse_raw": float(np.mean(
            (model.predict_reward(hold_obs, hold_act) - tr.rewards[hold_idx]) ** 2)),
    }
    return model


def fit_world_model(dataset: OfflineDataset, config: WorldModelConfig, *, progress: bool = True,
                    cache: bool = True, device: str | torch.device = "auto") -> WorldModel:
    """Train DyDiff's world models on ``dataset`` (Eq. 5 and Eq. 10), or load them from the cache.

    The cache key is (``dataset.content_hash``, ``config.config_hash()``), not the device; a hit skips
    training and sets ``from_cache``. ``cache=False`` neither reads nor writes the cache. ``device`` is
    where training runs (``auto``: CUDA when present; checked first, also on a cache hit, by
    :func:`checked_device`); the returned model predicts on the CPU. The termination rule follows
    ``dataset.env_id``.
    """
    device = checked_device(device, setting="world model device")
    if not cache:
        return _train(dataset, config, progress=progress, device=device)
    target = cache_dir(dataset, config)
    model, loaded = load_or_train(
        target, complete=WEIGHTS, load=WorldModel.load,
        train=lambda: _train(dataset, config, progress=progress, device=device),
        save=lambda m, d: m.save(d))
    model.path = target
    if loaded:
        model.from_cache = True
        if model.env_id != dataset.env_id:
            model.env_id, model.terminal_fn = dataset.env_id, termination_fn(dataset.env_id)
        _say(progress, f"world model: loaded from cache {target}")
    return model


def _train(dataset: OfflineDataset, config: WorldModelConfig, *, progress: bool,
           device: torch.device) -> WorldModel:
    """Train with progress messages: what differs from the paper, then the holdout figures."""
    scaled = config.differences_from_paper()
    if scaled:
        _say(progress, "world model: settings differ from the paper's (REFERENCE §6): " + "; ".join(scaled))
    _say(progress, f"world model: training on {dataset.num_transitions} transitions of '{dataset.name}' "
                   f"({device})")
    model = train_world_model(dataset, config, progress=progress, device=device)
    rep = model.report
    dyn, rew = rep["dynamics"], rep["reward"]
    _say(progress, f"world model: dynamics {dyn['epochs']} epochs in {dyn['seconds']:.1f}s, elite holdout "
                   f"MSE (normalised) {np.mean(rep['elite_holdout_mse']):.4f}; reward {rew['epochs']} epochs "
                   f"in {rew['seconds']:.1f}s, holdout MSE {rep['holdout_reward_mse_raw']:.4f}")
    return model
