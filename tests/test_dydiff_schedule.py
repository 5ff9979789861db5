"""DyDiff's rollout schedule: pool-age accounting of the synthetic FIFO (known answers by hand), the cpu
profile's schedule, the learner budget owned by TrainConfig, and a resumed run that never stores a round
twice (the store is cut back to the checkpoint's rows).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from baselines_data import hopper_random_dataset

from augment.generators.dydiff import POOL_ROUNDS, DyDiffConfig
from baselines.sampler import MixedSampler
from stores.schema import OfflineDataset, TrajectoryBatch


def _rows(n: int, obs: int = 3, act: int = 2) -> dict[str, np.ndarray]:
    o = np.zeros((n, obs), np.float32)
    return {"observations": o, "actions": np.zeros((n, act), np.float32), "rewards": np.zeros(n, np.float32),
            "next_observations": o, "terminals": np.zeros(n, bool)}


def _draw(s: MixedSampler, k: int) -> None:
    for _ in range(k):
        s.sample_rows()


def test_pool_age_unbounded_pool() -> None:
    s = MixedSampler(_rows(50), batch_size=4, real_ratio=0.5, seed=0)  # B_syn = 2
    assert math.isnan(s.pool_stats()["age_mean"]) and math.isnan(s.pool_age()[0])
    s.add_synthetic(_rows(10))  # birth 0
    _draw(s, 5)  # batches at updates 0..4 see mean ages 0, 1, 2, 3, 4
    s.add_synthetic(_rows(10))  # birth 5
    stats = s.pool_stats()
    assert stats["updates"] == 5 and stats["age_mean"] == 2.0 and stats["age_max"] == 4
    assert s.pool_age() == (2.5, 5)  # births ten 0s and ten 5s, at update 5
    assert stats["synthetic_draws"] == 10 and stats["draws_per_row"] == 0.5
    assert stats["inflow_per_update"] == 4.0 and stats["expected_draws_per_row"] == 0.5


def test_pool_age_fifo_evicts_the_oldest_births() -> None:
    s = MixedSampler(_rows(50), batch_size=4, real_ratio=0.5, max_synthetic=10, seed=0)
    s.add_synthetic(_rows(10))  # ten births 0
    _draw(s, 3)
    s.add_synthetic(_rows(4))  # evicts four 0s: six 0s + four 3s
    assert s.pool_age() == (pytest.approx(3 - 12 / 10), 3)
    _draw(s, 1)  # update 3: mean age 1.8, oldest 3
    s.add_synthetic(_rows(7))  # evicts six 0s and one 3: three 3s + seven 4s, at update 4
    assert s.pool_age() == (pytest.approx(4 - (9 + 28) / 10), 1)
    s.add_synthetic(_rows(25))  # more than the capacity: ten births 4
    assert s.pool_age() == (0.0, 0) and s.num_synthetic == 10
    stats = s.pool_stats()
    assert stats["age_mean"] == pytest.approx((0 + 1 + 2 + 1.8) / 4) and stats["age_max"] == 3
    assert stats["synthetic_added"] == 46 and stats["draws_per_row"] == pytest.approx(8 / 46)


def test_pool_counters_survive_a_state_round_trip() -> None:
    a = MixedSampler(_rows(50), batch_size=4, real_ratio=0.5, max_synthetic=10, seed=3)
    a.add_synthetic(_rows(8))
    _draw(a, 4)
    a.add_synthetic(_rows(6))
    b = MixedSampler(_rows(50), batch_size=4, real_ratio=0.5, max_synthetic=10, seed=9)
    b.load_state_dict(a.state_dict())
    _draw(a, 3)
    _draw(b, 3)
    assert a.pool_stats() == b.pool_stats() and a.pool_age() == b.pool_age()


def test_cpu_profile_keeps_the_papers_pool_age() -> None:
    paper = DyDiffConfig.for_profile("paper", "hopper-medium-replay")
    cpu = DyDiffConfig.for_profile("cpu", "hopper-medium-replay")
    # the paper: 1638 kept x 100 steps every 500 updates (~328 per update), a 2M FIFO of ~12 rounds
    assert paper.nominal_inflow_per_update == pytest.approx(1638 * 100 / 500)
    assert paper.pool_rounds == pytest.approx(2_000_000 / 163_800)
    assert cpu.rollout_interval == paper.rollout_interval == 500
    assert cpu.max_synthetic == POOL_ROUNDS * cpu.kept_per_round * cpu.rollout_length
    assert cpu.pool_rounds == POOL_ROUNDS == 12
    assert not hasattr(cpu, "steps")  # the learner budget belongs to TrainConfig
    old = {**cpu.to_json(), "steps": 100_000}  # dydiff.json of an older run
    assert DyDiffConfig.from_json(old) == cpu


def test_train_config_owns_the_learner_budget() -> None:
    from augment.commands import dydiff_config, train_config
    from baselines.loop import TrainConfig

    cfg = dydiff_config("hopper-medium-replay", profile="cpu", iteration_rule="average", dynamics="mean")
    assert (cfg.iteration_rule, cfg.dynamics) == ("average", "mean")
    tc = train_config(cfg, profile="cpu", seed=3)
    assert tc.steps == TrainConfig.for_profile("cpu").steps  # the same budget as `augment train`
    assert (tc.rollout_interval, tc.rollout_batch, tc.max_synthetic) == (
        cfg.rollout_interval, cfg.rollout_batch, cfg.max_synthetic)
    assert train_config(cfg, profile="cpu", seed=3, steps=1234).steps == 1234


class FixedRoundGenerator:
    """Rounds of ``n`` trajectories of exactly ``horizon`` steps (no terminals), values from the rng."""

    name = "fixed-rounds"

    def __init__(self, obs: int, act: int, horizon: int = 5) -> None:
        self.obs, self.act, self.horizon = obs, act, horizon
        self.calls: list[int] = []

    def fit(self, dataset: OfflineDataset) -> None:
        pass

    def generate(self, n: int, policy, rng: np.random.Generator, *, round: int = 0,
                 learner_step: int = 0) -> TrajectoryBatch:
        self.calls.append(learner_step)
        h = self.horizon
        return TrajectoryBatch(
            observations=rng.standard_normal((n, h + 1, self.obs)).astype(np.float32),
            actions=rng.uniform(-1, 1, (n, h, self.act)).astype(np.float32),
            rewards=rng.standard_normal((n, h)).astype(np.float32), terminals=np.zeros((n, h), bool),
            lengths=np.full(n, h, np.int64), generator=self.name, round=np.full(n, round, np.int64),
            learner_step=np.full(n, learner_step, np.int64), filter_score=np.zeros(n, np.float32),
            start_index=np.full(n, -1, np.int64))


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return hopper_random_dataset(episodes=6, seed=4)


def _config():
    from baselines.loop import TrainConfig

    # rounds before updates 0, 8, 16 of 4 x 5 = 20 rows each; the FIFO holds 2 rounds; B_syn = 16
    return TrainConfig.for_profile("smoke", steps=24, batch_size=32, real_ratio=0.5, eval_every=12,
                                   eval_episodes=1, eval_envs=1, checkpoint_every=8, rollout_interval=8,
                                   rollout_batch=4, max_synthetic=40, seed=1)


def test_results_record_the_pool_and_resume_never_stores_a_round_twice(dataset, tmp_path: Path) -> None:
    from baselines.loop import train
    from stores.replay import ReplayStore

    obs, act = dataset.observation_size, dataset.action_size
    full = train(dataset, "td3bc", _config(), tmp_path / "full", generator=FixedRoundGenerator(obs, act),
                 progress=False)
    results = json.loads((tmp_path / "full" / "results.json").read_text())
    pool = results["synthetic_pool"]
    # by hand: ages u (u < 8), u - 4 (8 <= u < 16, births 0 and 8), u - 12 (u >= 16, births 8 and 16)
    assert pool["updates"] == 24 and pool["synthetic_added"] == 60 and pool["inflow_per_update"] == 2.5
    assert pool["age_mean"] == pytest.approx((28 + 60 + 60) / 24) and pool["age_max"] == 15
    assert (pool["age_mean_now"], pool["age_max_now"]) == (12.0, 16)
    assert pool["draws_per_row"] == pytest.approx(24 * 16 / 60) == pool["expected_draws_per_row"]
    # a run that stopped at 12, then "crashed" after storing the round of step 16 without a checkpoint
    train(dataset, "td3bc", _config(), tmp_path / "split", generator=FixedRoundGenerator(obs, act),
          progress=False, stop_at=12)
    with ReplayStore.open(tmp_path / "split" / "synthetic.zarr", mode="a") as store:
        assert len(store) == 40
        extra = FixedRoundGenerator(obs, act).generate(4, None, np.random.default_rng(5), round=2,
                                                         learner_step=16)
        store.append(extra)
    resumed = train(dataset, "td3bc", _config(), tmp_path / "split", generator=FixedRoundGenerator(obs, act),
                    progress=False)
    assert resumed.completed and resumed.final_normalized == full.final_normalized
    note = json.loads((tmp_path / "split" / "resume_note.json").read_text())
    assert (note["store_rows_at_checkpoint"], note["store_rows_found"]) == (40, 60)
    with ReplayStore.open(tmp_path / "full" / "synthetic.zarr") as a, \
            ReplayStore.open(tmp_path / "split" / "synthetic.zarr") as b:
        assert len(a) == len(b) == 60
        for key in ("observations", "round", "learner_step"):
            np.testing.assert_array_equal(a.load()[key], b.load()[key])
    again = json.loads((tmp_path / "split" / "results.json").read_text())["synthetic_pool"]
    assert again == pool
