"""The plain-Python entry point: ``generate(n, policy=callable, dataset=...)`` -> transition arrays.

::

    from augment.integrations import generate
    data = generate(10_000, policy=my_actor, dataset="hopper-medium-replay", generator="rollout")
    data["observations"], data["actions"], data["rewards"], data["next_observations"], data["terminals"]

``policy`` is anything that maps observations to actions:

* an object with ``act(observations (B, obs)) -> (B, act)`` (a :class:`baselines.protocols.Policy`);
* a ``torch.nn.Module`` (called on a float32 tensor on the module's device, under ``torch.no_grad``);
* any callable on NumPy arrays, batched ``(B, obs) -> (B, act)`` or per observation ``(obs,) -> (act,)``
  (tried batched first; a call that fails or returns the wrong shape falls back to one call per row);
  torch tensors it returns are converted.

Generators that ignore the policy (SynthER) accept ``policy=None``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from stores.errors import UserInputError
from stores.schema import OfflineDataset


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


class CallablePolicy:
    """Any ``obs -> action`` callable as a Policy: ``act((B, obs)) -> (B, act)`` float32; ``reset`` no-op.

    ``batched``: None (detect on the first call), True (always one call with the batch) or False (one
    call per observation row).
    """

    def __init__(self, fn: Callable[..., Any], *, batched: bool | None = None) -> None:
        if not callable(fn):
            raise UserInputError("policy must be callable (obs -> action) or have act(); got "
                                 f"{type(fn).__name__}")
        self.fn = fn
        self.batched = batched
        self._torch = _is_torch_module(fn)

    def _call(self, obs: np.ndarray) -> np.ndarray:
        if self._torch:
            import torch

            param = next(iter(self.fn.parameters()), None)  # type: ignore[attr-defined]
            device = param.device if param is not None else torch.device("cpu")
            with torch.no_grad():
                return _to_numpy(self.fn(torch.as_tensor(obs, dtype=torch.float32, device=device)))
        return _to_numpy(self.fn(obs))

    def act(self, observations: np.ndarray) -> np.ndarray:
        obs = np.ascontiguousarray(observations, dtype=np.float32)
        if obs.ndim == 1:
            obs = obs[None]
        b = obs.shape[0]
        if self.batched is not False:
            try:
                out = self._call(obs)
            except Exception:
                if self.batched:
                    raise
                out = None
            if out is not None and out.ndim == 2 and out.shape[0] == b:
                self.batched = True
                return out
            if self.batched:
                shape = None if out is None else out.shape
                raise UserInputError(f"the policy returned actions of shape {shape} for {b} observations")
        rows = [self._call(o).reshape(-1) for o in obs]
        self.batched = False
        return np.stack(rows).astype(np.float32)

    def reset(self, n: int) -> None:
        """Nothing to reset."""


def _is_torch_module(fn: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(fn, torch.nn.Module)


def as_policy(policy: Any) -> Any:
    """``policy`` as a :class:`baselines.protocols.Policy`: objects with ``act`` are returned as they are
    (given a no-op ``reset`` if they lack one), anything else callable is wrapped in CallablePolicy."""
    if hasattr(policy, "act") and callable(policy.act) and not _is_torch_module(policy):
        if not hasattr(policy, "reset"):
            return _WithReset(policy)
        return policy
    return CallablePolicy(policy)


class _WithReset:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.asarray(self.inner.act(observations), dtype=np.float32)

    def reset(self, n: int) -> None:
        """The wrapped object has no reset."""


def generate(n: int, policy: Any = None, *, dataset: str | OfflineDataset,
             generator: str | Any = "rollout", profile: str | None = None, seed: int = 0,
             out: str | Path | None = None, overwrite: bool = False,
             options: dict[str, Any] | None = None, env_id: str | None = None,
             progress: bool = False) -> dict[str, np.ndarray]:
    """Generate ``n`` synthetic transitions from ``dataset`` with ``generator`` rolling out ``policy``.

    dataset: a name, alias or path (as for ``augment train``) or an OfflineDataset. generator: a
    registered name (``rollout``, ``dydiff``, ``synther``, ...) or a generator object (fitted here).
    policy: see the module docstring; None for generators that ignore it, or ``"behavior"`` for a
    behaviour-cloned policy. out: also write a ReplayStore there. options: generator config fields
    (``{"horizon": 3}``). The models are trained once and cached. Returns flat arrays observations /
    next_observations (n, obs), actions (n, act), rewards, terminals, timeouts (n,).
    """
    from augment.generators.offline import generate_store
    from stores.datasets import load_dataset

    name = generator if isinstance(generator, str) else str(getattr(generator, "name", "generator"))
    spec: Any = policy
    if policy is None and name not in ("synther",):
        raise UserInputError(f"generator '{name}' rolls out a policy: pass policy=callable or 'behavior'")
    data = dataset if isinstance(dataset, OfflineDataset) else load_dataset(
        str(dataset), profile=profile, env_id=env_id, progress=progress)
    result, batch = generate_store(generator, data, int(n), out, policy=spec, profile=profile, seed=seed,
                                   overwrite=overwrite, options=options, progress=progress)
    if batch is not None:
        flat = batch.to_transitions()
    else:
        from stores.replay import ReplayStore

        with ReplayStore.open(result.store) as store:  # type: ignore[arg-type]
            flat = store.load(columns=("observations", "actions", "rewards", "next_observations",
                                       "terminals", "timeouts"))
    return {k: flat[k] for k in ("observations", "actions", "rewards", "next_observations", "terminals",
                                 "timeouts")}
