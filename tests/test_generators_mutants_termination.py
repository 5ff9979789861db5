"""augment/generators/data_termination.py: which source decides termination, the classifier's probability
against a hand-set network, fitting (statistics, determinism, class weights, the RNG it leaves alone),
the JSON record of each source, the silenced fallback warning, and what ``apply_data_termination`` gives a
world model. Data: 2-dim states, terminal when s'[0] > 1 (about 1 in 8 transitions)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from augment.generators.data_termination import (
    SOURCES,
    TerminalClassifier,
    apply_data_termination,
    fit_terminal_classifier,
    quiet_fallback_warning,
    termination_record,
    termination_source,
)
from augment.nn.mlp import MLP
from stores.schema import Episode, OfflineDataset

OBS = 2


def walk_dataset(with_terminals: bool = True, env_id: str | None = None, episodes: int = 12,
                 seed: int = 0) -> OfflineDataset:
    """s' = s + (0.12, 0) + noise from s_0[0] ~ U(-0.4, 0.4); an episode ends terminal at the first
    s'[0] > 1 (when ``with_terminals``), else times out after 12 steps. s[1] is noise."""
    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(episodes):
        s = [np.array([rng.uniform(-0.4, 0.4), rng.normal()], np.float32)]
        for _t in range(12):
            s.append((s[-1] + np.array([0.12, 0.0]) + rng.normal(scale=[0.01, 0.3])).astype(np.float32))
            if with_terminals and s[-1][0] > 1.0:
                break
        n = len(s) - 1
        term = np.zeros(n, bool)
        term[-1] = with_terminals and s[-1][0] > 1.0
        eps.append(Episode(observations=np.stack(s), actions=np.zeros((n, 1), np.float32),
                           rewards=np.zeros(n, np.float32), terminated=term,
                           truncated=~term & (np.arange(n) == n - 1)))
    return OfflineDataset(name="walk", episodes=tuple(eps), env_id=env_id)


@pytest.fixture(scope="module")
def data() -> OfflineDataset:
    return walk_dataset()


def test_sources() -> None:
    assert SOURCES == ("env", "data", "none")
    assert termination_source(walk_dataset()) == "data"
    assert termination_source(walk_dataset(with_terminals=False)) == "none"
    assert termination_source(walk_dataset(env_id="Hopper-v5")) == "env"  # the env's rule wins


def test_probability_of_a_hand_set_network() -> None:
    net = MLP(OBS, 1, (), activation="silu")  # one linear layer: logit = 2 z_0 - 1
    with torch.no_grad():
        net.net[0].weight.copy_(torch.tensor([[2.0, 0.0]]))
        net.net[0].bias.fill_(-1.0)
    clf = TerminalClassifier(net, mean=np.array([1.0, 0.0], np.float32), std=np.array([0.5, 1.0], np.float32))
    x = np.array([[1.0, 3.0], [1.5, 0.0], [1.25, 7.0], [np.nan, 0.0], [0.0, np.inf]], np.float32)
    # z_0 = (x_0 - 1) / 0.5 = 0, 1, 0.5 -> logits -1, 1, 0; non-finite rows count as terminal
    expected = [1 / (1 + np.e), 1 / (1 + np.exp(-1.0)), 0.5, 1.0, 1.0]
    p = clf.probability(x)
    assert p.dtype == np.float32 and p.shape == (5,)
    np.testing.assert_allclose(p, expected, rtol=1e-6)
    assert clf(x).tolist() == [False, True, False, True, True]  # p > 0.5, strictly
    assert np.isnan(clf.train_accuracy) and np.isnan(clf.train_recall)


def test_fit_learns_the_rule_with_its_own_generators(data) -> None:
    tr = data.transitions
    positives = int(tr.terminals.sum())
    assert 8 <= positives <= 12 and tr.terminals.mean() < 0.15
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    clf = fit_terminal_classifier(data, steps=150, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    x = tr.next_observations
    np.testing.assert_allclose(clf.mean, x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(clf.std, x.std(axis=0), rtol=1e-5)
    assert clf.mean.dtype == np.float32 and clf.std.dtype == np.float32 and not clf.net.training
    pred = clf(x)
    assert clf.train_accuracy == pytest.approx(float((pred == tr.terminals).mean()))
    assert clf.train_recall == pytest.approx(float(pred[tr.terminals].mean()))
    # the classes are reweighted, so the rare terminals are found; the rule is s'[0] > 1
    assert clf.train_recall >= 0.9 and clf.train_accuracy >= 0.9
    grid = np.array([[0.2, 0.0], [0.5, 0.0], [1.3, 0.0], [1.5, 1.0]], np.float32)
    assert clf(grid).tolist() == [False, False, True, True]
    again = fit_terminal_classifier(data, steps=150, seed=0)
    np.testing.assert_array_equal(again.probability(x), clf.probability(x))
    other = fit_terminal_classifier(data, steps=150, seed=1)
    assert not np.array_equal(other.probability(x), clf.probability(x))


def test_fit_floors_the_std_and_needs_a_terminal() -> None:
    base = walk_dataset(episodes=6)
    eps = tuple(Episode(observations=np.concatenate([e.observations, np.full((len(e.observations), 1), 2.0,
                                                                              np.float32)], axis=1),
                        actions=e.actions, rewards=e.rewards, terminated=e.terminated, truncated=e.truncated)
                for e in base.episodes)
    flat = OfflineDataset(name="flat", episodes=eps, env_id=None)  # a constant third state dimension
    clf = fit_terminal_classifier(flat, steps=5, hidden=(4,), seed=0)
    assert clf.std[2] == pytest.approx(1e-3) and clf.mean[2] == pytest.approx(2.0)
    assert isinstance(clf.net.net[0], torch.nn.Linear) and clf.net.net[0].out_features == 4
    with pytest.raises(ValueError, match="no terminal"):
        fit_terminal_classifier(walk_dataset(with_terminals=False))


def test_records_of_each_source(data) -> None:
    n, terms = data.num_transitions, int(data.transitions.terminals.sum())
    clf = SimpleNamespace(train_accuracy=0.75, train_recall=0.5)
    assert termination_record("data", data, clf) == {
        "source": "data", "env_id": None, "data_terminals": terms, "data_transitions": n,
        "rule": "p(done | s') > 0.5, classifier fitted on the data's terminal flags",
        "train_accuracy": 0.75, "train_recall": 0.5}
    assert "train_accuracy" not in termination_record("data", data)
    hop = walk_dataset(env_id="Hopper-v5")
    rec = termination_record("env", hop)
    assert rec["rule"] == "Hopper-v5 healthy-range rule (augment.world.termination)"
    assert rec["env_id"] == "Hopper-v5"
    assert termination_record("none", data)["rule"] == (
        "none: the data hold no terminal transition, rollouts never terminate")


def test_fallback_warning_is_silenced_only_for_data_termination(data) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_fallback_warning(data):
            warnings.warn("no termination rule for env None: never terminate", UserWarning, stacklevel=1)
            warnings.warn("something else", UserWarning, stacklevel=1)
        with quiet_fallback_warning(walk_dataset(with_terminals=False)):
            warnings.warn("no termination rule for env None: never terminate", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else",
                                              "no termination rule for env None: never terminate"]


def test_apply_gives_the_world_the_fitted_classifier(data) -> None:
    world = SimpleNamespace(terminal_fn="fallback")
    rec = apply_data_termination(world, data, seed=1)
    clf = world.terminal_fn
    assert isinstance(clf, TerminalClassifier)
    assert rec["source"] == "data" and rec["train_accuracy"] == clf.train_accuracy
    assert rec["train_recall"] == clf.train_recall and rec["train_recall"] >= 0.9
    x = data.transitions.next_observations
    expected = fit_terminal_classifier(data, seed=1)  # the default 500 steps, the given seed
    np.testing.assert_array_equal(clf.probability(x), expected.probability(x))
    assert apply_data_termination(None, data)["source"] == "data"
    untouched = SimpleNamespace(terminal_fn="rule")
    assert apply_data_termination(untouched, walk_dataset(env_id="Hopper-v5"))["source"] == "env"
    assert apply_data_termination(untouched, walk_dataset(with_terminals=False))["source"] == "none"
    assert untouched.terminal_fn == "rule"
