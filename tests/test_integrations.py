"""Integrations for code we do not own: ``as_policy`` on every kind of callable, the plain ``generate``
entry point, and the d3rlpy ``fit`` callback feeding a MixedReplayBuffer (real d3rlpy, tiny data)."""

from __future__ import annotations

import d3rlpy
import numpy as np
import pytest
import torch

from augment.generators.offline import build_generator, fit_generator
from augment.integrations import GeneratorCallback, as_policy, batch_to_d3rlpy_episodes, generate
from baselines.learners import make_learner
from tests.baselines_data import hopper_random_dataset

W = np.array([[0.5, -1.0, 0.25], [1.0, 0.0, -0.5]], np.float32)  # act 2 x obs 3


@pytest.fixture(scope="module")
def dataset():
    return hopper_random_dataset(episodes=8, seed=2)


def test_as_policy_handles_numpy_rowwise_torch_and_act_objects() -> None:
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    expected = np.tanh(obs @ W.T)
    batched = as_policy(lambda o: np.tanh(o @ W.T))
    np.testing.assert_allclose(batched.act(obs), expected, rtol=1e-6)

    def single(o: np.ndarray) -> np.ndarray:  # one observation (3,) -> (2,), fails on a batch
        assert o.ndim == 1
        return np.tanh(W @ o)

    rowwise = as_policy(single)
    np.testing.assert_allclose(rowwise.act(obs), expected, rtol=1e-6)
    assert rowwise.batched is False
    module = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        module.weight.copy_(torch.as_tensor(W))
    # torch's float32 GEMM sums in another order than NumPy's (which order depends on the CPU's kernels), and
    # obs[3] @ W[0] cancels to ~9e-4: an absolute float32 tolerance, not only a relative one, for such entries
    np.testing.assert_allclose(as_policy(torch.nn.Sequential(module, torch.nn.Tanh())).act(obs), expected,
                               rtol=1e-5, atol=1e-6)
    tensor_fn = as_policy(lambda o: torch.tanh(torch.as_tensor(o) @ torch.as_tensor(W).T))
    np.testing.assert_allclose(tensor_fn.act(obs), expected, rtol=1e-5, atol=1e-6)

    class ActOnly:
        def act(self, o):
            return np.tanh(o @ W.T)

    wrapped = as_policy(ActOnly())
    wrapped.reset(3)
    np.testing.assert_allclose(wrapped.act(obs), expected, rtol=1e-6)
    assert wrapped.act(obs[:1]).shape == (1, 2)


def test_plain_generate_with_a_torch_actor(dataset, tmp_path) -> None:
    actor = torch.nn.Sequential(torch.nn.Linear(dataset.observation_size, dataset.action_size),
                                torch.nn.Tanh())
    data = generate(60, policy=actor, dataset=dataset, generator="rollout", profile="smoke",
                    options={"horizon": 2}, out=tmp_path / "r.zarr")
    assert data["observations"].shape == (60, dataset.observation_size)
    assert data["actions"].shape == (60, dataset.action_size)
    with torch.no_grad():  # every synthetic action is the actor's on its state
        expected = actor(torch.as_tensor(data["observations"])).numpy()
    np.testing.assert_allclose(data["actions"], expected, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "r.zarr").exists()
    with pytest.raises(ValueError, match="policy"):
        generate(5, policy=None, dataset=dataset, generator="rollout", profile="smoke")


def test_d3rlpy_fit_callback_feeds_a_mixed_buffer(dataset, tmp_path) -> None:
    generator = build_generator("rollout", profile="smoke", dataset_name=dataset.name,
                                options={"horizon": 3}, progress=False)
    fit_generator(generator, dataset)
    algo = make_learner("td3bc", dataset, seed=0, batch_size=32)
    callback = GeneratorCallback(generator, dataset, every=10, rollout_batch=8, real_ratio=0.75,
                                 capacity=40, seed=1, store=tmp_path / "cb.zarr")
    with pytest.raises(ValueError, match="start"):
        callback(algo, 1, 10)
    buffer = callback.start(algo)
    assert isinstance(buffer, d3rlpy.dataset.MixedReplayBuffer)
    algo.fit(buffer, n_steps=30, n_steps_per_epoch=30, callback=callback, show_progress=False,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory(), save_interval=10**9)
    callback.close()
    assert algo.grad_step == 30 and callback.rounds == 4  # start + steps 10, 20, 30
    assert [step for step, _ in callback.history] == [0, 10, 20, 30]
    assert callback.synthetic.transition_count == min(40, callback.synthetic_added)  # FIFO capacity
    batch = buffer.sample_transition_batch(8)  # d3rlpy's split: int((1 - 0.75) * 8) = 2 synthetic rows
    assert batch.observations.shape == (8, dataset.observation_size)
    from stores.replay import ReplayStore

    with ReplayStore.open(tmp_path / "cb.zarr") as store:
        assert len(store) == callback.synthetic_added and store.attrs["generator_name"] == "rollout"
        steps = sorted(set(store.load(columns=("learner_step",))["learner_step"].tolist()))
    assert steps == [0, 10, 20, 30]


def test_episodes_hold_exactly_the_batch_transitions(dataset) -> None:
    generator = build_generator("rollout", profile="smoke", dataset_name=dataset.name,
                                options={"horizon": 4}, progress=False)
    fit_generator(generator, dataset)
    batch = generator.generate(10, as_policy(lambda o: np.zeros((len(o), 3), np.float32)),
                               np.random.default_rng(0))
    episodes = batch_to_d3rlpy_episodes(batch)
    assert sum(ep.transition_count for ep in episodes) == batch.num_transitions
    for ep, n, term in zip(episodes, batch.lengths, batch.terminals.any(axis=1), strict=True):
        assert ep.transition_count == n and bool(ep.terminated) == bool(term)
