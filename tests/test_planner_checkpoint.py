"""A planner fit killed mid-training resumes from its checkpoint and ends with the same networks.

For each planner (smoke profile, tiny real Hopper-v5 data): one fit without the cache (no checkpoints)
is the reference. A cached fit that checkpoints after every step is killed (KeyboardInterrupt, as a
signal would) right after a checkpoint; the next cached fit of the same key must resume from that step
(DMEMM, TD) or skip the finished stages (AEPO), act exactly like the reference, and leave no checkpoint
behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from baselines_data import hopper_random_dataset

from augment.planners import checkpoint as ckpt
from augment.planners.base import PLANNER_MARKER, planner_cache_dir, planner_class
from augment.planners.run import planner_config


@pytest.fixture(scope="module")
def dataset():
    return hopper_random_dataset(episodes=8, seed=1)


def _planner(name: str, overrides: str = ""):
    return planner_class(name)(planner_config(name, "smoke", "", overrides or None), progress=False)


def _actions(planner, obs: np.ndarray) -> np.ndarray:
    planner.seed_acting(123)
    planner.reset(obs.shape[0])
    return planner.act(obs)


def _kill_after(monkeypatch: pytest.MonkeyPatch, kill_at: int) -> list[int]:
    """Make TrainingCheckpoint.save raise KeyboardInterrupt once a state of step >= kill_at is on disk."""
    saved: list[int] = []
    original = ckpt.TrainingCheckpoint.save

    def save_then_die(self, state):  # type: ignore[no-untyped-def]
        original(self, state)
        saved.append(int(state["step"]))
        if int(state["step"]) >= kill_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.TrainingCheckpoint, "save", save_then_die)
    return saved


@pytest.mark.parametrize(("name", "kill_at"), [("dmemm", 7), ("td", 11), ("aepo", 1), ("aepo", 2)])
def test_killed_fit_resumes_to_the_uninterrupted_networks(name: str, kill_at: int, dataset, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUGMENT_HOME", str(tmp_path / "home"))
    obs = dataset.transitions.observations[:3]
    reference = _planner(name)
    reference.fit(dataset, cache=False)
    expected = _actions(reference, obs)

    killed = _planner(name)
    killed.checkpoint_seconds = 0.0  # a checkpoint after every step (stage, for AEPO)
    with monkeypatch.context() as m:
        saved = _kill_after(m, kill_at)
        with pytest.raises(KeyboardInterrupt):
            killed.fit(dataset)
    assert saved[-1] == kill_at
    target = planner_cache_dir(name, dataset, killed.cache_key())
    assert (ckpt.resume_dir(target) / f"{name}.pt").is_file()
    assert not target.exists()  # nothing half-written in the cache itself

    resumed = _planner(name)
    resumed.fit(dataset)
    assert not resumed.from_cache
    if name == "aepo":
        assert resumed.train_record["resumed_stages"] == ["eps_theta", "iql"][:kill_at]
    else:
        assert resumed.train_record["resumed_from_step"] == kill_at
        assert resumed.train_record["train_steps"] == reference.train_record["train_steps"]
    np.testing.assert_array_equal(_actions(resumed, obs), expected)
    assert not ckpt.resume_dir(target).exists()  # spent checkpoints are removed
    assert (target / PLANNER_MARKER).is_file()


def test_uninterrupted_fit_starts_at_step_zero_and_a_torn_checkpoint_is_ignored(dataset, tmp_path: Path,
                                                                                monkeypatch) -> None:
    monkeypatch.setenv("AUGMENT_HOME", str(tmp_path / "home"))
    p = _planner("dmemm")
    target = planner_cache_dir("dmemm", dataset, p.cache_key())
    torn = ckpt.resume_dir(target) / "dmemm.pt"
    torn.parent.mkdir(parents=True)
    torn.write_bytes(b"not a torch file")
    p.fit(dataset)
    assert p.train_record["resumed_from_step"] == 0
    assert not ckpt.resume_dir(target).exists()


def test_checkpoint_saves_only_when_due(tmp_path: Path) -> None:
    c = ckpt.TrainingCheckpoint(tmp_path / "x.pt", every_seconds=3600.0)
    assert c.load() is None
    assert not c.maybe_save(lambda: {"step": 1})
    assert c.load() is None
    c.save({"step": 4, "v": [1, 2]})
    assert c.load() == {"step": 4, "v": [1, 2]}
    now = ckpt.TrainingCheckpoint(tmp_path / "y.pt", every_seconds=0.0)
    assert now.maybe_save(lambda: {"step": 2}) and now.load() == {"step": 2}
    (tmp_path / "z.pt").write_bytes(b"\x00garbage")
    assert ckpt.TrainingCheckpoint(tmp_path / "z.pt").load() is None
    assert not list(tmp_path.glob(".*"))  # no temporary files left
