"""Termination of synthetic rollouts when the env has no rule: learned from the data's terminals, or none.

The env's own rule (:mod:`augment.world.termination`) is used whenever one exists. Without one (an
env-less dataset such as a robot's logs, or an env the toolkit has no rule for):

* the data hold terminal transitions -> a small classifier p(done | s') is fitted on the dataset's
  (next state, terminal flag) pairs (:func:`fit_terminal_classifier`) and a state is terminal when
  p > 0.5. The classes are reweighted (positive weight = negatives / positives) because terminals are
  rare (about 1 in 100 transitions of hopper-medium-replay);
* the data hold no terminal -> rollouts never terminate ("none").

The choice is returned as a JSON-native record (:func:`termination_record`) that the generators put in
their store's attributes, so a store always says where its terminal flags came from.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from augment.nn.mlp import MLP
from augment.world.termination import has_rule
from stores.schema import OfflineDataset

#: What decided the terminal flags: the env's rule, a classifier fitted on the data's terminals, nothing.
SOURCES: tuple[str, ...] = ("env", "data", "none")


def termination_source(dataset: OfflineDataset) -> str:
    """``env`` when the dataset's env has a rule, else ``data`` when the data hold terminals, else
    ``none``."""
    if has_rule(dataset.env_id):
        return "env"
    return "data" if bool(dataset.transitions.terminals.any()) else "none"


@dataclass
class TerminalClassifier:
    """p(done | s') > 0.5 as a termination rule: next_obs (B, obs) -> (B,) bool.

    net: MLP over z-scored next states -> one logit; mean / std: (obs,) the z-score statistics;
    train_accuracy / train_recall: on the data it was fitted on (recall = terminals found).
    """

    net: MLP
    mean: np.ndarray
    std: np.ndarray
    train_accuracy: float = float("nan")
    train_recall: float = float("nan")

    @torch.no_grad()
    def probability(self, next_obs: np.ndarray) -> np.ndarray:
        """(B, obs) -> (B,) float32 p(done | s'); non-finite states count as terminal (p = 1)."""
        x = np.asarray(next_obs, dtype=np.float32)
        finite = np.isfinite(x).all(axis=1)
        z = torch.as_tensor((np.where(finite[:, None], x, 0.0) - self.mean) / self.std, dtype=torch.float32)
        p = torch.sigmoid(self.net(z)[:, 0]).numpy()
        return np.where(finite, p, 1.0).astype(np.float32)

    def __call__(self, next_obs: np.ndarray) -> np.ndarray:
        return self.probability(next_obs) > 0.5


def fit_terminal_classifier(dataset: OfflineDataset, *, steps: int = 500, batch_size: int = 256,
                            hidden: tuple[int, ...] = (64, 64), lr: float = 1e-3, seed: int = 0,
                            ) -> TerminalClassifier:
    """Fit p(done | s') on every (next state, terminal) pair of ``dataset`` with class-weighted BCE.

    Deterministic for a given seed (its own torch and NumPy generators). Needs at least one terminal.
    """
    tr = dataset.transitions
    x = tr.next_observations.astype(np.float32)
    y = tr.terminals.astype(np.float32)
    positives = float(y.sum())
    if positives == 0:
        raise ValueError("the dataset holds no terminal transition to learn termination from")
    mean = x.mean(axis=0)
    std = np.maximum(x.std(axis=0), 1e-3).astype(np.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MLP(x.shape[1], 1, hidden, activation="silu")
    xt = torch.as_tensor((x - mean) / std)
    yt = torch.as_tensor(y)
    pos_weight = torch.tensor([(len(y) - positives) / positives])
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (min(batch_size, len(y)),), generator=gen)
        loss = loss_fn(net(xt[idx])[:, 0], yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    clf = TerminalClassifier(net, mean.astype(np.float32), std)
    pred = clf(x)
    clf.train_accuracy = float((pred == tr.terminals).mean())
    clf.train_recall = float(pred[tr.terminals].mean())
    return clf


def termination_record(source: str, dataset: OfflineDataset,
                       classifier: TerminalClassifier | None = None) -> dict[str, Any]:
    """JSON-native description of the termination choice (goes into store attrs and config.json)."""
    terminals = int(dataset.transitions.terminals.sum())
    record: dict[str, Any] = {"source": source, "env_id": dataset.env_id,
                              "data_terminals": terminals, "data_transitions": dataset.num_transitions}
    if source == "env":
        record["rule"] = f"{dataset.env_id} healthy-range rule (augment.world.termination)"
    elif source == "data":
        record["rule"] = "p(done | s') > 0.5, classifier fitted on the data's terminal flags"
        if classifier is not None:
            record["train_accuracy"] = classifier.train_accuracy
            record["train_recall"] = classifier.train_recall
    else:
        record["rule"] = "none: the data hold no terminal transition, rollouts never terminate"
    return record


@contextlib.contextmanager
def quiet_fallback_warning(dataset: OfflineDataset) -> Iterator[None]:
    """Silence the world model's "no termination rule ... never terminate" warning while models are fitted
    for data whose termination will come from the data's terminals (it would be wrong there)."""
    with warnings.catch_warnings():
        if termination_source(dataset) == "data":
            warnings.filterwarnings("ignore", message="no termination rule")
        yield


def apply_data_termination(world: Any, dataset: OfflineDataset, *, seed: int = 0) -> dict[str, Any]:
    """Give ``world`` (a :class:`augment.world.WorldModel`) the termination rule this dataset calls for.

    With an env rule nothing changes; otherwise ``world.terminal_fn`` becomes the fitted classifier
    (data with terminals) or stays the never-terminal fallback. Returns :func:`termination_record`.
    """
    source = termination_source(dataset)
    classifier = None
    if source == "data":
        classifier = fit_terminal_classifier(dataset, seed=seed)
        if world is not None:
            world.terminal_fn = classifier
    return termination_record(source, dataset, classifier)
