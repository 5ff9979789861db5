"""ReplayStore's reports and input checks to the last field (mutation run, issue 9): ``info()``, row
reads at their bounds, per-generator counts, the schema record, and every refusal of
``append_transitions`` (each one leaves the store as it was)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from stores.errors import UserInputError
from stores.replay import ReplayStore, sample_batch
from stores.schema import TrajectoryBatch

OBS, ACT = 3, 2


def flat(n: int, *, reward: float = 1.0, terminal_last: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    (terminals if terminal_last else timeouts)[-1] = True
    return {"observations": rng.normal(size=(n, OBS)).astype(np.float32),
            "actions": rng.normal(size=(n, ACT)).astype(np.float32),
            "rewards": np.full(n, reward, np.float32) + np.arange(n, dtype=np.float32),
            "next_observations": rng.normal(size=(n, OBS)).astype(np.float32),
            "terminals": terminals, "timeouts": timeouts}


def test_info_reports_every_field(tmp_path) -> None:
    attrs = {"source_dataset": "toy", "source_hash": "abc", "env_id": "Hopper-v5", "generator_name": "g",
             "generator_config": {"k": 1}, "seed": 7, "normalization": {"obs_mean": [0.0] * OBS}}
    path = tmp_path / "s.zarr"
    with ReplayStore.create(path, observation_size=OBS, action_size=ACT, chunk_rows=4, attrs=attrs) as store:
        empty = store.info()
        assert empty["rows"] == 0 and math.isnan(empty["reward_mean"]) and empty["generators"] == {}
        store.append_transitions(flat(5, terminal_last=True), np.array([0]), generator="alpha")
        store.append_transitions(flat(3), np.array([0]), generator="beta")
    with ReplayStore.open(path) as store:
        info = store.info()
    rewards = np.r_[np.arange(5) + 1.0, np.arange(3) + 1.0]
    assert info["path"] == str(path) and info["format_version"] == 1
    assert (info["rows"], info["trajectories"], info["chunk_rows"]) == (8, 2, 4)
    assert (info["observation_size"], info["action_size"]) == (OBS, ACT)
    assert info["generators"] == {"alpha": 5, "beta": 3}
    assert (info["terminals"], info["timeouts"]) == (1, 1)
    assert info["reward_mean"] == pytest.approx(rewards.mean())
    for key in ("source_dataset", "source_hash", "env_id", "generator_name", "generator_config", "seed"):
        assert info[key] == attrs[key], key
    assert "normalization" not in info and info["has_normalization"] is True
    assert info["created"] and info["updated"] and info["updated"] >= info["created"]
    assert info["disk_bytes"] > 0


def test_info_without_normalisation(tmp_path) -> None:
    with ReplayStore.create(tmp_path / "n.zarr", observation_size=OBS, action_size=ACT) as store:
        assert store.info()["has_normalization"] is False


def test_read_rows_bounds_and_columns(tmp_path) -> None:
    data = flat(6)
    path = tmp_path / "r.zarr"
    with ReplayStore.create(path, observation_size=OBS, action_size=ACT, chunk_rows=4) as store:
        store.append_transitions(data, np.array([0]))
    with ReplayStore.open(tmp_path / "r.zarr") as store:
        whole = store.read_rows(0, 6)
        np.testing.assert_array_equal(whole["observations"], data["observations"])
        part = store.read_rows(0, 2, ["rewards"])
        assert list(part) == ["rewards"]
        np.testing.assert_array_equal(part["rewards"], data["rewards"][:2])
        assert store.read_rows(6, 6, ["rewards"])["rewards"].shape == (0,)
        np.testing.assert_array_equal(store.read_rows(3, 5, ["actions"])["actions"], data["actions"][3:5])
        for start, stop in ((-1, 2), (4, 3), (0, 7)):
            with pytest.raises(UserInputError, match="outside the 6 committed rows"):
                store.read_rows(start, stop)
        with pytest.raises(UserInputError, match=r"unknown store column\(s\) \['reward'\]"):
            store.read_rows(0, 2, ["reward"])


def test_schema_record_on_disk(tmp_path) -> None:
    with ReplayStore.create(tmp_path / "c.zarr", observation_size=OBS, action_size=ACT, chunk_rows=1):
        pass
    meta = json.loads((tmp_path / "c.zarr" / "zarr.json").read_text())
    schema = meta["attributes"]["schema"]
    columns = schema.get("columns", schema)
    assert columns["observations"]["shape"] == ["N", OBS] and columns["actions"]["shape"] == ["N", ACT]
    assert columns["rewards"]["shape"] == ["N"] and columns["terminals"]["dtype"] == "bool"
    assert columns["trajectory_starts"] == {"dtype": "int64", "shape": ["E"]}
    with pytest.raises(UserInputError, match="chunk"):
        ReplayStore.create(tmp_path / "z.zarr", observation_size=OBS, action_size=ACT, chunk_rows=0)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("terminals", np.zeros(4, np.int8), "expected bool"),
    ("timeouts", np.zeros(4, np.float32), "expected bool"),
    ("rewards", np.zeros(4, np.int64), "expected float"),
    ("actions", np.zeros((4, ACT), np.int32), "expected float"),
    ("observations", np.zeros((4, OBS + 1), np.float32), "has shape"),
    ("rewards", np.array([0.0, 1.0, np.inf, 0.0], np.float32), "first bad row 2"),
    ("next_observations", np.full((4, OBS), 1e39), "(NaN or inf|beyond float32).*first bad row 0"),
    ("round", np.zeros(4, np.float32), "must be (4,) int32"),
    ("learner_step", np.zeros(3, np.int64), "must be (4,) int64"),
    ("filter_score", np.zeros(4, np.int64), "must be (4,) float32"),
    ("start_index", np.zeros(4, np.float64), "'start_index' must be (4,) integers"),
])
def test_append_refuses_bad_columns_and_writes_nothing(tmp_path, field: str, value: np.ndarray,
                                                      message: str) -> None:
    data = flat(4)
    data[field] = value
    with ReplayStore.create(tmp_path / "b.zarr", observation_size=OBS, action_size=ACT) as store:
        pattern = message if field == "next_observations" else message.replace("(", r"\(").replace(")", r"\)")
        with pytest.raises(UserInputError, match=pattern):
            store.append_transitions(data, np.array([0]))
        assert len(store) == 0 and store.pending_rows == 0


@pytest.mark.parametrize(("starts", "message"), [
    (np.array([0.0, 2.0]), "1-D integer array"), (np.array([[0, 2]]), "1-D integer array"),
    (np.array([1]), "start at 0"), (np.array([0, 2, 2]), "increase strictly"),
    (np.array([], np.int64), "start"),
])
def test_append_refuses_bad_episode_starts(tmp_path, starts: np.ndarray, message: str) -> None:
    with ReplayStore.create(tmp_path / "e.zarr", observation_size=OBS, action_size=ACT) as store:
        with pytest.raises(UserInputError, match=message):
            store.append_transitions(flat(4), starts)
        assert len(store) == 0


def test_episode_starts_may_end_with_the_row_count_and_provenance_defaults(tmp_path) -> None:
    data = flat(5)
    data["timeouts"][1] = True  # the first trajectory (rows 0-1) ends there
    with ReplayStore.create(tmp_path / "d.zarr", observation_size=OBS, action_size=ACT) as store:
        store.append_transitions(data, np.array([0, 2, 5]))
    with ReplayStore.open(tmp_path / "d.zarr") as store:
        rows = store.load()
        np.testing.assert_array_equal(store.episode_starts(), [0, 2, 5])  # E + 1 offsets
    np.testing.assert_array_equal(rows["round"], -1)
    np.testing.assert_array_equal(rows["learner_step"], -1)
    assert np.isnan(rows["filter_score"]).all()
    np.testing.assert_array_equal(rows["start_index"], [0, 0, 2, 2, 2])  # each trajectory's first row
    with ReplayStore.create(tmp_path / "x.zarr", observation_size=OBS, action_size=ACT) as store:
        inner = flat(5)
        inner["terminals"][2] = True
        with pytest.raises(UserInputError, match="row 2 inside a trajectory"):
            store.append_transitions(inner, np.array([0]))
        with pytest.raises(UserInputError, match="missing field"):
            store.append_transitions({k: v for k, v in flat(5).items() if k != "rewards"}, np.array([0]))


def test_sample_batch_is_uniform_rows_of_the_columns() -> None:
    data = flat(50)
    batch = sample_batch(data, 20, rng=3)
    idx = np.random.default_rng(3).integers(0, 50, size=20)
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        np.testing.assert_array_equal(batch[name], data[name][idx], err_msg=name)
    with pytest.raises(UserInputError, match="empty store"):
        sample_batch({k: v[:0] for k, v in data.items()}, 4)


def _batch(lengths: list[int], length: int = 4, *, terminal_rows: tuple[int, ...] = ()) -> TrajectoryBatch:
    rng = np.random.default_rng(len(lengths) + length)
    b = len(lengths)
    lens = np.array(lengths, np.int64)
    terminals = np.zeros((b, length), bool)
    for r in terminal_rows:
        terminals[r, lens[r] - 1] = True
    return TrajectoryBatch(
        observations=rng.normal(size=(b, length + 1, OBS)).astype(np.float32),
        actions=rng.normal(size=(b, length, ACT)).astype(np.float32),
        rewards=rng.normal(size=(b, length)).astype(np.float32), terminals=terminals, lengths=lens,
        generator="toy", round=np.arange(b, dtype=np.int64) + 10,
        learner_step=np.arange(b, dtype=np.int64) * 7,
        filter_score=np.linspace(-1, 1, b).astype(np.float32), start_index=np.arange(b, dtype=np.int64) * 3)


@pytest.mark.parametrize("lengths", [[4, 4, 4], [4, 2, 3]])  # full rows (the reshape path) and cut rows
def test_appended_batches_are_stored_row_by_row(tmp_path, lengths: list[int]) -> None:
    batch = _batch(lengths, terminal_rows=(1,))
    path = tmp_path / "t.zarr"
    with ReplayStore.create(path, observation_size=OBS, action_size=ACT, chunk_rows=5) as store:
        store.append(batch)
    with ReplayStore.open(tmp_path / "t.zarr") as store:
        got = store.load()
        np.testing.assert_array_equal(store.episode_starts(), np.r_[0, np.cumsum(lengths)])
    rows = [(b, t) for b in range(len(lengths)) for t in range(lengths[b])]  # trajectory-major, by hand
    pick = (np.array([r for r, _ in rows]), np.array([t for _, t in rows]))
    np.testing.assert_array_equal(got["observations"], batch.observations[pick])
    np.testing.assert_array_equal(got["next_observations"], batch.observations[pick[0], pick[1] + 1])
    np.testing.assert_array_equal(got["actions"], batch.actions[pick])
    np.testing.assert_array_equal(got["rewards"], batch.rewards[pick])
    last = np.array([t == lengths[b] - 1 for b, t in rows])
    np.testing.assert_array_equal(got["terminals"], last & (pick[0] == 1))
    np.testing.assert_array_equal(got["timeouts"], last & (pick[0] != 1))
    np.testing.assert_array_equal(got["round"], batch.round[pick[0]])
    np.testing.assert_array_equal(got["learner_step"], batch.learner_step[pick[0]])
    np.testing.assert_array_equal(got["filter_score"], batch.filter_score[pick[0]])
    np.testing.assert_array_equal(got["start_index"], batch.start_index[pick[0]])


def test_flat_provenance_columns_are_kept(tmp_path) -> None:
    data = flat(4)
    data.update(round=np.array([1, 1, 1, 1], np.int64), learner_step=np.array([5, 5, 5, 5], np.int32),
                filter_score=np.array([0.5, 0.5, 0.5, 0.5], np.float64), start_index=np.array([9, 9, 9, 9]))
    with ReplayStore.create(tmp_path / "p.zarr", observation_size=OBS, action_size=ACT) as store:
        store.append_transitions(data, np.array([0]))
    with ReplayStore.open(tmp_path / "p.zarr") as store:
        got = store.load()
    np.testing.assert_array_equal(got["round"], 1)
    np.testing.assert_array_equal(got["learner_step"], 5)
    np.testing.assert_array_equal(got["filter_score"], 0.5)
    np.testing.assert_array_equal(got["start_index"], 9)


def test_iter_chunks_covers_the_rows_once(tmp_path) -> None:
    path = tmp_path / "i.zarr"
    with ReplayStore.create(path, observation_size=OBS, action_size=ACT, chunk_rows=4) as store:
        store.append_transitions(flat(7), np.array([0]))
        store.append_transitions(flat(3), np.array([0]))
    with ReplayStore.open(tmp_path / "i.zarr") as store:
        pieces = list(store.iter_chunks(rows=1, columns=["rewards"]))
        assert len(pieces) == 10 and all(p["rewards"].shape == (1,) for p in pieces)
        default = list(store.iter_chunks())
        assert [p["row"].tolist() for p in default] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        assert default[0]["row"].dtype == np.int64
        with pytest.raises(UserInputError, match="rows must be >= 1"):
            list(store.iter_chunks(rows=-1))


@pytest.mark.parametrize(("change", "message"), [
    (lambda b: b.round.__setitem__(0, -2), "'round' must be >= -1 and <= 2147483647"),
    (lambda b: b.round.__setitem__(1, 2 ** 31), "'round' must be >= -1 and <= 2147483647"),
    (lambda b: b.learner_step.__setitem__(2, -5), "'learner_step' must be >= -1 \\(-1 = unknown\\)"),
    (lambda b: b.start_index.__setitem__(0, -3), "'start_index' must be >= -1"),
])
def test_batch_provenance_ranges(tmp_path, change, message: str) -> None:
    batch = _batch([4, 4, 4])
    change(batch)
    with ReplayStore.create(tmp_path / "v.zarr", observation_size=OBS, action_size=ACT) as store:
        with pytest.raises(UserInputError, match=message):
            store.append(batch)
        assert store.pending_rows == 0 and len(store) == 0


@pytest.mark.parametrize("lengths", [[4, 4, 4], [4, 2, 3]])
def test_batch_values_beyond_float32_are_refused_where_they_are(tmp_path, lengths: list[int]) -> None:
    batch = _batch(lengths)
    rewards = batch.rewards.astype(np.float64)
    rewards[2, 1] = 1e39  # finite in float64, inf once stored as float32
    batch = dataclasses.replace(batch, rewards=rewards)
    with ReplayStore.create(tmp_path / "f.zarr", observation_size=OBS, action_size=ACT) as store, \
            pytest.raises(UserInputError, match=r"'rewards' holds .*\(trajectory 2, step 1\)"):
        store.append(batch)
    padded = _batch([4, 2, 3])
    obs = padded.observations.copy()
    obs[1, 4] = np.nan  # past row 1's length: padding, ignored
    with ReplayStore.create(tmp_path / "g.zarr", observation_size=OBS, action_size=ACT) as store:
        store.append(dataclasses.replace(padded, observations=obs))
        assert store.pending_rows == 9


def test_a_closed_store_refuses_writes(tmp_path) -> None:
    store = ReplayStore.create(tmp_path / "c.zarr", observation_size=OBS, action_size=ACT)
    store.close()
    with pytest.raises(UserInputError, match="is closed"):
        store.append_transitions(flat(3), np.array([0]))


def test_validate_finds_a_corrupted_trajectory_column(tmp_path) -> None:
    import zarr

    def chained(n: int) -> dict[str, np.ndarray]:  # s'_i = s_{i+1} inside the trajectory, as validate wants
        data = flat(n)
        states = np.random.default_rng(n + 100).normal(size=(n + 1, OBS)).astype(np.float32)
        data["observations"], data["next_observations"] = states[:-1], states[1:]
        return data

    path = tmp_path / "k.zarr"
    with ReplayStore.create(path, observation_size=OBS, action_size=ACT) as store:
        store.append_transitions(chained(4), np.array([0]))
        store.append_transitions(chained(3), np.array([0]))
    with ReplayStore.open(path) as store:
        store.validate()  # a sound store passes
    column = zarr.open_array(str(path / "trajectory"), mode="r+")
    values = column[:]
    values[5] = 0  # row 5 belongs to trajectory 1
    column[:] = values
    with ReplayStore.open(path) as store, pytest.raises(UserInputError, match="'trajectory' at row 5"):
        store.validate()
