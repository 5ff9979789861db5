"""The comparison arms of augment/generators/arms.py, unit by unit: the TrainConfig each runner builds from a
request, what ``rollout_request`` / ``synther_request`` record in config.json and the stores, the cached
SynthER store (its name, reuse and regeneration) and the arm specs. Tiny env-less data (no evaluation),
two learner updates per run, smoke profile."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from augment.generators.arms import (
    SYNTHER_TRANSITIONS,
    _complete,
    _train_config,
    rollout_request,
    synther_request,
    synther_store,
)
from baselines.compare import RunRequest, resolve_arm
from stores.datasets import load_dataset
from stores.errors import UserInputError
from stores.paths import augment_home
from stores.replay import ReplayStore
from tests.baselines_data import linear_system_npz

OBS, ACT = 3, 2
#: Two updates, evaluated and checkpointed at the end: the smallest run train() accepts.
TINY = {"steps": 2, "eval_every": 2, "checkpoint_every": 2, "batch_size": 8}


def envless_npz(path: Path, episodes: int = 5, steps: int = 12, seed: int = 0) -> Path:
    """s' = 0.9 s + W a + 0.01 noise, r = -|s|^2, every episode a timeout after ``steps`` (no terminal,
    no env id). The name ends in ``-medium.npz``, so the DyDiff table gives eta = 0.6 (kept = 9 of 16)."""
    w = np.array([[0.3, 0.1], [-0.2, 0.4], [0.1, -0.3]])
    return linear_system_npz(path, w, decay=0.9, episodes=episodes, steps=steps, seed=seed)


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    return envless_npz(tmp_path_factory.mktemp("arms") / "toy-medium.npz")


def _request(npz: Path, run_dir: Path, **overrides) -> RunRequest:
    return RunRequest(dataset=str(npz), learner="td3bc", seed=3, profile="smoke", run_dir=run_dir,
                      overrides={**TINY, **overrides})


def _config(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "config.json").read_text())


# ------------------------------------------------------------------------------------------- _train_config
def test_train_config_overrides_win_and_arm_fields_fill_the_rest(tmp_path) -> None:
    req = RunRequest(dataset="x", learner="td3bc", seed=4, profile="smoke", run_dir=tmp_path,
                     overrides={"steps": 7, "max_synthetic": 9})
    cfg = _train_config(req, max_synthetic=100, rollout_batch=33, real_ratio=None)
    # smoke TrainConfig: 300 updates, eval every 100, rollouts every 100 of 16, FIFO 10k, ratio 0.6
    assert (cfg.steps, cfg.max_synthetic, cfg.rollout_batch, cfg.seed) == (7, 9, 33, 4)
    assert (cfg.real_ratio, cfg.eval_every, cfg.rollout_interval, cfg.profile) == (0.6, 100, 100, "smoke")
    plain = _train_config(req)
    assert (plain.steps, plain.max_synthetic, plain.rollout_batch) == (7, 9, 16)


# ------------------------------------------------------------------------------------------------- rollout
def test_rollout_request_records_the_arm_config_and_the_store(npz, tmp_path) -> None:
    run = tmp_path / "roll"
    # real_ratio comes from the comparison's overrides when the arm names none
    assert rollout_request(_request(npz, run, real_ratio=0.3), options=(("horizon", 2),)) == run
    conf = _config(run)
    # DyDiff smoke on "-medium" data: kept floor(0.6 * 16) = 9 rows of L = 8 per round, every 50 updates,
    # FIFO 12 rounds; rollouts of h = 2 get ceil(9 * 8 / 2) = 36 start states
    batch = math.ceil(9 * 8 / 2)
    train = conf["train"]
    assert (train["real_ratio"], train["rollout_batch"], train["rollout_interval"]) == (0.3, batch, 50)
    assert (train["max_synthetic"], train["steps"], train["seed"]) == (12 * 9 * 8, 2, 3)
    extra = conf["extra"]
    assert set(extra) == {"arm_dataset", "arm_options", "rollout", "generator"}
    assert extra["arm_dataset"] == str(npz) and extra["arm_options"] == {"horizon": 2}
    rollout = extra["rollout"]
    assert (rollout["horizon"], rollout["rollout_batch"], rollout["real_ratio"]) == (2, batch, 0.3)
    assert (rollout["profile"], rollout["dataset"], rollout["penalty"]) == ("smoke", "toy-medium.npz", 0.0)
    gen = extra["generator"]
    assert gen["generator_name"] == "rollout" and gen["env_id"] is None
    assert gen["generator_config"]["horizon"] == 2 and gen["generator_config"]["profile"] == "smoke"
    assert gen["termination"]["source"] == "none"  # the data hold no terminal
    with ReplayStore.open(run / "synthetic.zarr") as store:
        attrs = store.attrs
        assert len(store) > 0
    assert attrs["generator_name"] == "rollout" and attrs["termination"]["source"] == "none"
    assert attrs["generator_config"]["horizon"] == 2 and attrs["generator_config"]["rollout_batch"] == batch
    assert attrs["generator_config"]["dataset"] == "toy-medium.npz"


# ------------------------------------------------------------------------------------------------- synther
def test_synther_request_trains_on_the_whole_cached_store(npz, tmp_path) -> None:
    run = tmp_path / "syn"
    options = (("n", 60), ("num_steps", 2), ("real_ratio", 0.4))
    assert synther_request(_request(npz, run), options=options) == run
    conf = _config(run)
    assert conf["fixed_synthetic_transitions"] == 60
    assert conf["train"]["real_ratio"] == 0.4 and conf["train"]["max_synthetic"] == 60
    extra = conf["extra"]
    assert extra["arm_options"] == {"n": 60, "num_steps": 2, "real_ratio": 0.4}
    path = Path(extra["synthetic_store"])
    assert path.parent == augment_home() / "synther-stores" and path.name.endswith("-auto-N2-n60.zarr")
    with ReplayStore.open(path) as store:
        assert len(store) == 60
        attrs = store.attrs
    assert extra["generation"] == attrs["generation"] and extra["generation"]["rows"] == 60
    assert extra["generator"] == {"generator_config": attrs["generator_config"],
                                  "termination": attrs["termination"]}
    assert extra["generator"]["termination"]["source"] == "model"  # no env rule: SynthER's d channel
    assert attrs["profile"] == "smoke" and attrs["generator_config"]["num_steps"] == 2


def test_synther_request_defaults_to_the_profile_store_size(npz, tmp_path) -> None:
    run = tmp_path / "syn-default"
    synther_request(_request(npz, run), options=(("num_steps", 2),))
    conf = _config(run)
    assert SYNTHER_TRANSITIONS["smoke"] == 2000
    assert conf["fixed_synthetic_transitions"] == 2000 and conf["train"]["max_synthetic"] == 2000
    assert conf["train"]["real_ratio"] == 0.6  # the smoke TrainConfig's
    assert Path(conf["extra"]["synthetic_store"]).name.endswith("-n2000.zarr")


def test_synther_store_is_named_reused_and_regenerated_when_short(npz) -> None:
    from augment.generators.synther import SynthERConfig

    data = load_dataset(str(npz), profile="smoke", progress=False)
    cfg = SynthERConfig.for_profile("smoke", num_steps=2, terminals="model")
    path = synther_store(data, "smoke", 40, {"num_steps": 2, "terminals": "model"})
    name = f"{data.content_hash}-{cfg.config_hash()}-model-N2-n40.zarr"
    assert path == augment_home() / "synther-stores" / name
    with ReplayStore.open(path, mode="a") as store:
        assert len(store) == 40 and store.attrs["profile"] == "smoke"
        assert store.attrs["generator_config"]["terminals"] == "model"
        store.update_attrs(marker="kept")
    assert synther_store(data, "smoke", 40, {"num_steps": 2, "terminals": "model"}) == path
    with ReplayStore.open(path) as store:
        assert store.attrs.get("marker") == "kept"  # a complete store is not generated again
    with ReplayStore.open(path, mode="a") as store:
        store.truncate(10)
    synther_store(data, "smoke", 40, {"num_steps": 2, "terminals": "model"})
    with ReplayStore.open(path) as store:
        assert len(store) == 40 and store.attrs.get("marker") is None  # a short one is replaced


def test_complete_needs_the_length_and_the_generation_record(tmp_path) -> None:
    assert not _complete(tmp_path / "missing.zarr", 5)
    path = tmp_path / "s.zarr"
    from stores.schema import TrajectoryBatch

    batch = TrajectoryBatch(
        observations=np.zeros((5, 2, OBS), np.float32), actions=np.zeros((5, 1, ACT), np.float32),
        rewards=np.zeros((5, 1), np.float32), terminals=np.zeros((5, 1), bool), lengths=np.ones(5, np.int64),
        generator="t", round=np.zeros(5, np.int64), learner_step=np.zeros(5, np.int64),
        filter_score=np.full(5, np.nan, np.float32), start_index=np.full(5, -1, np.int64))
    with ReplayStore.create(path, observation_size=OBS, action_size=ACT) as store:
        store.append(batch)
    assert not _complete(path, 5)  # no generation record: a run killed before the end
    with ReplayStore.open(path, mode="a") as store:
        store.update_attrs(generation={"rows": 5})
    assert _complete(path, 5) and not _complete(path, 6)


# ------------------------------------------------------------------------------------------------- specs
def test_arm_specs_name_the_runner_and_its_sorted_options() -> None:
    arm = resolve_arm("rollout:lambda=0.5, h=2")
    assert arm.name == "rollout:lambda=0.5,h=2"
    assert arm.runner.func is rollout_request
    assert arm.runner.keywords == {"options": (("horizon", 2), ("penalty", 0.5))}
    arm = resolve_arm("synther:n=30,ratio=0.25,N=3,terminals=env")
    assert arm.runner.func is synther_request
    assert arm.runner.keywords == {"options": (("n", 30), ("num_steps", 3), ("real_ratio", 0.25),
                                               ("terminals", "env"))}
    with pytest.raises(UserInputError, match=r"^rollout arm option 'depth=3'.*e\.g\. rollout:h="):
        resolve_arm("rollout:depth=3")
    with pytest.raises(UserInputError, match=r"^synther arm option 'k=1'.*e\.g\. synther:n="):
        resolve_arm("synther:k=1")
