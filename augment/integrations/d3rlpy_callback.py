"""A d3rlpy ``fit`` callback that augments training online with any generator (DyDiff, rollouts, ...).

::

    algo = d3rlpy.algos.TD3PlusBCConfig(...).create()
    algo.create_impl(obs_shape, action_size)            # MixedReplayBuffer cannot build the impl itself
    callback = GeneratorCallback(generator, dataset, every=500, rollout_batch=64, real_ratio=0.6)
    algo.fit(callback.start(algo), n_steps=100_000, callback=callback)

:meth:`GeneratorCallback.start` runs the first round with the untrained policy and returns
``callback.buffer``, a d3rlpy ``MixedReplayBuffer`` whose primary buffer is the synthetic one (a
``FIFOBuffer`` of ``capacity`` transitions) and whose secondary buffer is the real data, mixed so that
``int((1 - real_ratio) * B)`` of each batch of B is synthetic (d3rlpy's own arithmetic; the toolkit's
loop uses ``B - floor(real_ratio * B)``). d3rlpy then calls the callback after every update as
``callback(algo, epoch, total_step)``; every ``every`` steps it rolls the current policy (deterministic
actors: ``predict``; stochastic ones: ``sample_action``, as DyDiff Eq. 8) and appends the trajectories to
the synthetic buffer (and, when ``store`` is given, to a ReplayStore with their provenance).

The generator must be fitted (``generator.fit(dataset)``) before it is passed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stores.errors import UserInputError
from stores.schema import OfflineDataset, TrajectoryBatch


def batch_to_d3rlpy_episodes(batch: TrajectoryBatch) -> list[Any]:
    """Each valid trajectory of ``batch`` as a d3rlpy Episode holding exactly its transitions
    (:func:`stores.convert.d3rlpy_episode`: terminated rows end in a terminal, the others in a timeout)."""
    from stores.convert import d3rlpy_episode

    episodes = []
    for b in range(batch.batch_size):
        n = int(batch.lengths[b])
        episodes.append(d3rlpy_episode(batch.observations[b, :n + 1], batch.actions[b, :n],
                                       batch.rewards[b, :n], bool(batch.terminals[b, n - 1])))
    return episodes


class GeneratorCallback:
    """Runs ``generator`` every ``every`` updates of a d3rlpy ``fit`` and feeds a MixedReplayBuffer.

    generator: a fitted :class:`baselines.protocols.Generator`. dataset: the real data (OfflineDataset).
    rollout_batch: items asked per round (start states; SynthER: transitions). real_ratio: share of real
    transitions per batch. capacity: synthetic FIFO size in transitions. seed: the generator's RNG.
    stochastic: roll ``sample_action`` (True), ``predict`` (False) or decide by the learner's class (None).
    store: optional ReplayStore path (created) that receives every round. policy_fn: optional
    ``algo -> Policy`` to override how the learner is turned into a policy.
    Attributes after training: rounds, synthetic_added (transitions), history [(step, transitions)].
    """

    def __init__(self, generator: Any, dataset: OfflineDataset, *, every: int = 500, rollout_batch: int = 256,
                 real_ratio: float = 0.6, capacity: int = 1_000_000, seed: int = 0,
                 stochastic: bool | None = None, store: str | Path | None = None,
                 policy_fn: Any = None) -> None:
        if every < 1 or rollout_batch < 1 or capacity < 1:
            raise UserInputError(f"every, rollout_batch and capacity must be >= 1 (got {every}, "
                                 f"{rollout_batch}, {capacity})")
        if not 0.0 <= real_ratio < 1.0:
            raise UserInputError(f"real_ratio must lie in [0, 1) for a mixed buffer (got {real_ratio}); "
                                 "with 1.0 train on the real data alone")
        self.generator = generator
        self.dataset = dataset
        self.every = int(every)
        self.rollout_batch = int(rollout_batch)
        self.real_ratio = float(real_ratio)
        self.capacity = int(capacity)
        self.stochastic = stochastic
        self.policy_fn = policy_fn
        self.rng = np.random.default_rng(seed)
        self.store_path = None if store is None else Path(store)
        self._store: Any = None
        self.buffer: Any = None
        self.synthetic: Any = None
        self.rounds = 0
        self.synthetic_added = 0
        self.history: list[tuple[int, int]] = []

    def policy(self, algo: Any) -> Any:
        """The learner as the Policy the generator rolls out."""
        if self.policy_fn is not None:
            return self.policy_fn(algo)
        from augment.generators.offline import learner_policy

        return learner_policy(algo, stochastic=self.stochastic)

    def _round(self, algo: Any, step: int) -> TrajectoryBatch:
        batch = self.generator.generate(self.rollout_batch, self.policy(algo), self.rng, round=self.rounds,
                                        learner_step=step)
        batch.validate()
        self.rounds += 1
        if batch.batch_size == 0:
            return batch
        if self._store is not None:
            self._store.append(batch)
            self._store.flush()
        if self.synthetic is not None:
            for episode in batch_to_d3rlpy_episodes(batch):
                self.synthetic.append_episode(episode)
        self.synthetic_added += batch.num_transitions
        self.history.append((step, batch.num_transitions))
        return batch

    def start(self, algo: Any) -> Any:
        """First round with ``algo``'s current policy (its impl must exist: ``create_impl``); builds and
        returns :attr:`buffer` (the MixedReplayBuffer to pass to ``algo.fit``)."""
        from d3rlpy.dataset import FIFOBuffer, MixedReplayBuffer, ReplayBuffer

        from stores.convert import to_d3rlpy

        if getattr(algo, "impl", None) is None:
            raise UserInputError("call algo.create_impl(observation_shape, action_size) before start(): "
                                 "d3rlpy cannot build a learner from a MixedReplayBuffer")
        if self.store_path is not None and self._store is None:
            from stores.replay import ReplayStore

            attrs = {"generator_name": getattr(self.generator, "name", ""),
                     "source_dataset": self.dataset.name, "source_hash": self.dataset.content_hash,
                     "env_id": self.dataset.env_id}
            self._store = ReplayStore.create(self.store_path, observation_size=self.dataset.observation_size,
                                             action_size=self.dataset.action_size, attrs=attrs)
        first = self._round(algo, 0)
        if first.batch_size == 0:
            raise UserInputError("the generator's first round returned no trajectories; check its models")
        self.synthetic = ReplayBuffer(FIFOBuffer(self.capacity), episodes=batch_to_d3rlpy_episodes(first))
        real = to_d3rlpy(self.dataset)
        self.buffer = MixedReplayBuffer(primary_replay_buffer=self.synthetic, secondary_replay_buffer=real,
                                        secondary_mix_ratio=self.real_ratio)
        return self.buffer

    def __call__(self, algo: Any, epoch: int, total_step: int) -> None:
        """d3rlpy's per-update hook: a round every ``every`` steps."""
        if self.buffer is None:
            raise UserInputError("call callback.start(algo) and fit on callback.buffer before training")
        if total_step % self.every == 0:
            self._round(algo, int(total_step))

    def close(self) -> None:
        """Close the ReplayStore, if one was written."""
        if self._store is not None:
            self._store.close()
            self._store = None
