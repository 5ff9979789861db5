"""Training loop: generator hook and store, metrics/results files, resume to the same final result."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from baselines_data import hopper_random_dataset

from baselines.loop import TrainConfig, load_run, train
from baselines.protocols import Generator, Policy
from baselines.runs import read_metrics
from stores.errors import UserInputError
from stores.replay import ReplayStore
from stores.schema import OfflineDataset, TrajectoryBatch


class EnvRolloutGenerator:
    """A real Generator: rolls the given policy in the real Hopper-v5 for at most ``horizon`` steps.

    Reset seeds come from the loop's ``rng``, so rounds are reproducible; trajectories stop early at a
    terminal state and are padded to ``horizon``.
    """

    name = "env-rollout"

    def __init__(self, env_id: str = "Hopper-v5", horizon: int = 5) -> None:
        self.env = gym.make(env_id)
        self.horizon = horizon
        self.calls: list[tuple[int, int]] = []
        self.stochastic: list[bool] = []

    def fit(self, dataset: OfflineDataset) -> None:
        """Nothing to learn: the real simulator is the model."""

    def generate(self, n: int, policy: Policy | None, rng: np.random.Generator, *, round: int = 0,
                 learner_step: int = 0) -> TrajectoryBatch:
        assert policy is not None
        self.calls.append((round, learner_step))
        self.stochastic.append(bool(getattr(policy, "stochastic", False)))
        obs_size = self.env.observation_space.shape[0]
        act_size = self.env.action_space.shape[0]
        L = self.horizon  # noqa: N806 - the paper's symbol
        obs = np.zeros((n, L + 1, obs_size), np.float32)
        act = np.zeros((n, L, act_size), np.float32)
        rew = np.zeros((n, L), np.float32)
        term = np.zeros((n, L), bool)
        lengths = np.zeros(n, np.int64)
        for b in range(n):
            o, _ = self.env.reset(seed=int(rng.integers(2**31)))
            obs[b, 0] = o
            for t in range(L):
                a = policy.act(obs[b, t][None])[0]
                o, r, terminated, _, _ = self.env.step(a)
                act[b, t], rew[b, t], obs[b, t + 1] = a, r, o
                lengths[b] = t + 1
                if terminated:
                    term[b, t] = True
                    break
        self.last_round = {"generated": n, "terminated": int(term.any(axis=1).sum()), "seconds": {"x": 1.0},
                           "flag": True}
        return TrajectoryBatch(
            observations=obs, actions=act, rewards=rew, terminals=term, lengths=lengths, generator=self.name,
            round=np.full(n, round, np.int64), learner_step=np.full(n, learner_step, np.int64),
            filter_score=np.full(n, np.nan, np.float32), start_index=np.full(n, -1, np.int64))

    def save(self, directory: Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "generator.json").write_text(json.dumps({"horizon": self.horizon}))

    def load(self, directory: Path) -> None:
        self.horizon = json.loads((Path(directory) / "generator.json").read_text())["horizon"]


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return hopper_random_dataset(episodes=10, seed=2)


def _config(**kw: object) -> TrainConfig:
    base = {"steps": 24, "batch_size": 32, "eval_every": 12, "eval_episodes": 2, "checkpoint_every": 8,
            "rollout_interval": 8, "rollout_batch": 3, "max_synthetic": 40, "seed": 5, "real_ratio": 0.5}
    base.update(kw)
    return TrainConfig.for_profile("smoke", **base)


def test_generator_hook_store_and_run_files(dataset: OfflineDataset, tmp_path: Path) -> None:
    gen = EnvRolloutGenerator()
    assert isinstance(gen, Generator)
    result = train(dataset, "iql", _config(), tmp_path / "run", generator=gen, progress=False)
    # a round before the first update and every 8 updates after: steps 0, 8, 16
    assert gen.calls == [(0, 0), (1, 8), (2, 16)]
    assert gen.stochastic == [True, True, True]  # IQL rolls a ~ pi(.|s) (Eq. 8)
    assert result.completed and result.steps == 24 and result.rounds == 3
    with ReplayStore.open(tmp_path / "run" / "synthetic.zarr") as store:
        data = store.load()
        stored = len(store)
        assert set(np.unique(data["round"]).tolist()) == {0, 1, 2}
        info = store.info()  # the store format's standard provenance, as `augment store info` shows it
        assert (info["source_dataset"], info["source_hash"]) == (dataset.name, dataset.content_hash)
        assert info["env_id"] == dataset.env_id and info["generator_name"] == gen.name
        assert info["has_normalization"]
        assert len(store) >= result.num_synthetic  # the pool is FIFO-capped at 40
    assert result.num_synthetic == min(40, len(data["actions"]))
    results, rows = load_run(tmp_path / "run")
    assert [r["step"] for r in rows] == [12, 24]
    assert {"critic_loss", "v_loss", "actor_loss", "eval_normalized", "time_generate"} <= set(rows[0])
    assert results["steps"] == 24 and results["rounds"] == 3
    assert results["synthetic_added"] == stored > 0  # every generated transition landed in the store
    # the generator's counters summed over the 3 rounds; nested seconds and booleans left out
    assert set(results["generation_counts"]) == {"generated", "terminated"}
    assert results["generation_counts"]["generated"] == 9
    assert results["final_normalized"] == pytest.approx(rows[-1]["eval_normalized"], rel=1e-5)
    assert results["last5_normalized"] == pytest.approx(np.mean([r["eval_normalized"] for r in rows]), 1e-5)
    assert len(results["final"]["returns"]) == 2
    w = results["wall_time"]
    assert w["generate"] > 0 and w["update"] > 0 and w["evaluate"] > 0
    assert w["total"] >= w["generate"] + w["update"] + w["evaluate"]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["learner"] == "iql" and cfg["generator"] == "env-rollout" and cfg["train"]["steps"] == 24
    assert (tmp_path / "run" / "model.d3").exists()


def test_resume_reaches_the_same_final_result(dataset: OfflineDataset, tmp_path: Path) -> None:
    full = train(dataset, "td3bc", _config(), tmp_path / "full", generator=EnvRolloutGenerator(),
                 progress=False)
    part = train(dataset, "td3bc", _config(), tmp_path / "split", generator=EnvRolloutGenerator(),
                 progress=False, stop_at=16)
    assert not part.completed and part.steps == 16
    assert not (tmp_path / "split" / "results.json").exists()
    with pytest.raises(UserInputError, match="seed 5 -> 6"):
        train(dataset, "td3bc", _config(seed=6), tmp_path / "split", progress=False)
    resumed = train(dataset, "td3bc", _config(), tmp_path / "split", generator=EnvRolloutGenerator(),
                    progress=False)
    assert resumed.completed and resumed.steps == 24
    np.testing.assert_array_equal(resumed.final.returns, full.final.returns)
    assert resumed.final_normalized == full.final_normalized
    counts = [load_run(tmp_path / name)[0]["generation_counts"] for name in ("full", "split")]
    assert counts[0] == counts[1] and counts[0]["generated"] == 9  # the checkpoint keeps the sums
    assert resumed.last5_normalized == full.last5_normalized
    a, b = read_metrics(tmp_path / "full" / "metrics.csv"), read_metrics(tmp_path / "split" / "metrics.csv")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [12, 24]
    for ra, rb in zip(a, b, strict=True):
        for key in ("critic_loss", "actor_loss", "eval_return_mean", "num_synthetic"):
            assert ra[key] == rb[key], key
    with ReplayStore.open(tmp_path / "full" / "synthetic.zarr") as s1, \
            ReplayStore.open(tmp_path / "split" / "synthetic.zarr") as s2:
        np.testing.assert_array_equal(s1.load()["observations"], s2.load()["observations"])


def test_fixed_synthetic_pool_is_mixed_in(dataset: OfflineDataset, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from baselines.sampler import MixedSampler

    tr = dataset.transitions
    # synthetic row j carries the reward 1000 + j, far from any real Hopper reward, so a batch row says
    # whether it is synthetic and which pool row it is
    synthetic = {"observations": tr.observations[:50], "actions": tr.actions[:50],
                 "rewards": 1000.0 + np.arange(50, dtype=np.float32),
                 "next_observations": tr.next_observations[:50],
                 "terminals": tr.terminals[:50], "timeouts": tr.timeouts[:50]}
    assert np.abs(tr.rewards).max() < 100
    batches: list[np.ndarray] = []
    real_sample = MixedSampler.sample

    def spy(self: MixedSampler):  # records what the learner is given, then hands it on unchanged
        batch = real_sample(self)
        batches.append(np.asarray(batch.rewards).ravel().copy())
        return batch

    monkeypatch.setattr(MixedSampler, "sample", spy)
    r = train(dataset, "td3bc", _config(steps=6, eval_every=6), tmp_path / "fixed", synthetic=synthetic,
              progress=False)
    assert r.num_synthetic == 40  # FIFO capacity of the config
    assert len(batches) == 6  # one batch per update
    for rewards in batches:
        syn = rewards[rewards >= 1000.0]
        assert rewards.shape == (32,) and syn.size == 16  # B_real = floor(0.5 * 32) real rows, 16 synthetic
        # only the newest 40 pool rows (10..49) survive the FIFO cap
        assert set((syn - 1000.0).round().astype(int).tolist()) <= set(range(10, 50))
    assert len(set(np.concatenate(batches).round(3).tolist())) > 40  # rows vary from batch to batch
    cfg = json.loads((tmp_path / "fixed" / "config.json").read_text())
    assert cfg["fixed_synthetic_transitions"] == 50


def test_profiles_scale_the_budget() -> None:
    smoke, cpu, paper = (TrainConfig.for_profile(p) for p in ("smoke", "cpu", "paper"))
    assert smoke.steps < cpu.steps < paper.steps == 1_000_000
    assert paper.eval_every == 5_000 and paper.eval_episodes == 10 and smoke.eval_episodes == 2
    assert TrainConfig.for_profile("cpu", steps=7, seed=None).steps == 7
    assert "updates" in cpu.scaled_summary()


@pytest.mark.slow
def test_cli_train_smoke_builds_the_dataset_and_writes_the_run_dir(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli import cli

    out = tmp_path / "run"
    args = ["train", "--policy", "td3bc", "--dataset", "hopper-medium-replay", "--profile", "smoke",
            "--steps", "20", "--eval-every", "10", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "final normalized" in result.output
    for name in ("config.json", "metrics.csv", "results.json", "model.d3", "checkpoints/latest"):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 20 and results["dataset"] == "hopper-medium-replay"
    assert results["env_id"] == "Hopper-v5" and len(results["evaluations"]) == 2
