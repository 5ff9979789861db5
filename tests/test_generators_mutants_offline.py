"""augment/generators/offline.py and commands.py piece by piece: how generators are built by name (plugin
path included), option parsing, the policy resolution, trimming, round sizing, the checks before any work,
the store's provenance, and the ``augment generate`` glue (end table, early checks, banner). A scripted
generator (its output a function of the rng) makes the expected rows computable without the code under
test; the real generators are built but only fitted where the test needs it (tiny shapes)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import click
import numpy as np
import pytest

from augment.generators import offline
from augment.generators.base import GENERATORS
from augment.generators.commands import end_table, register, run_generate
from augment.generators.offline import (
    GenerateResult,
    build_generator,
    check_generate_out,
    check_generate_request,
    fit_generator,
    generate_store,
    iter_batches,
    parse_options,
    resolve_policy,
    round_size,
    trim_batch,
)
from baselines.seeding import derive_seed
from stores.errors import UserInputError
from stores.replay import ReplayStore
from stores.schema import Episode, OfflineDataset, TrajectoryBatch

OBS, ACT = 3, 2


def toy_dataset(episodes: int = 4, steps: int = 6, seed: int = 0, env_id: str | None = None,
                obs: int = OBS, act: int = ACT, name: str = "toy") -> OfflineDataset:
    """Gaussian states and uniform actions, timeouts only (no terminal), no env unless named."""
    rng = np.random.default_rng(seed)
    eps = tuple(Episode(observations=rng.normal(size=(steps + 1, obs)).astype(np.float32),
                        actions=rng.uniform(-1, 1, size=(steps, act)).astype(np.float32),
                        rewards=rng.normal(size=steps).astype(np.float32), terminated=np.zeros(steps, bool),
                        truncated=np.arange(steps) == steps - 1) for _ in range(episodes))
    return OfflineDataset(name=name, episodes=eps, env_id=env_id)


def rows_batch(obs: np.ndarray, lengths: list[int] | np.ndarray, name: str = "t") -> TrajectoryBatch:
    """A batch whose observations are ``obs`` (B, L+1, OBS); actions 0, rewards 1, no terminal."""
    b, length = obs.shape[0], obs.shape[1] - 1
    return TrajectoryBatch(
        observations=obs.astype(np.float32), actions=np.zeros((b, length, ACT), np.float32),
        rewards=np.ones((b, length), np.float32), terminals=np.zeros((b, length), bool),
        lengths=np.asarray(lengths, np.int64), generator=name, round=np.zeros(b, np.int64),
        learner_step=np.zeros(b, np.int64), filter_score=np.full(b, np.nan, np.float32),
        start_index=np.arange(b, dtype=np.int64))


class ScriptedGenerator:
    """``generate(k)`` returns k rows of ``per_item`` steps whose observations are ``rng.normal`` draws
    (nothing on the calls numbered in ``empty``, 1-based, or on every call after ``dead_after``); records
    what it was asked."""

    name = "scripted"

    def __init__(self, batch: int = 10, per_item: int = 3, empty: tuple[int, ...] = (),
                 dead_after: int | None = None) -> None:
        self.config = SimpleNamespace(rollout_batch=batch)
        self.per_item, self.empty, self.dead_after = per_item, empty, dead_after
        self.asks: list[int] = []
        self.rounds: list[int] = []
        self.fitted: str | None = None

    def fit(self, dataset: OfflineDataset) -> None:
        self.fitted = dataset.name

    def generate(self, n: int, policy, rng: np.random.Generator, *, round: int = 0,
                 learner_step: int = 0) -> TrajectoryBatch:
        self.asks.append(n)
        self.rounds.append(round)
        call = len(self.asks)
        k = 0 if call in self.empty or (self.dead_after is not None and call > self.dead_after) else n
        obs = rng.normal(size=(k, self.per_item + 1, OBS))
        return rows_batch(obs, [self.per_item] * k, self.name)


class ZeroPolicy:
    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.zeros((observations.shape[0], ACT), np.float32)

    def reset(self, n: int) -> None:
        pass


# ------------------------------------------------------------------------------------- building by name
class ToyPlanner:
    """A plugin generator with ``for_profile`` (as the planners have): records how it was built."""

    name = "toyplan"

    def __init__(self, **kwargs) -> None:
        self.built = ("init", kwargs)

    @classmethod
    def for_profile(cls, profile: str, dataset_name: str, *, progress: bool, **opts) -> ToyPlanner:
        out = cls()
        out.built = ("for_profile", {"profile": profile, "dataset_name": dataset_name, "progress": progress,
                                     **opts})
        return out


class PlainPlugin:
    name = "plainplug"

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs


def test_plugin_generators_are_built_with_for_profile_or_their_constructor(monkeypatch) -> None:
    monkeypatch.setitem(GENERATORS, "toyplan", f"{__name__}:ToyPlanner")
    monkeypatch.setitem(GENERATORS, "plainplug", f"{__name__}:PlainPlugin")
    gen = build_generator("toyplan", profile="smoke", dataset_name="d", options={"k": 1}, progress=False)
    assert isinstance(gen, ToyPlanner)
    assert gen.built == ("for_profile", {"profile": "smoke", "dataset_name": "d", "progress": False, "k": 1})
    plain = build_generator("plainplug", profile="smoke", options={"a": 2})
    assert isinstance(plain, PlainPlugin) and plain.kwargs == {"a": 2}
    with pytest.raises(UserInputError, match="did you mean"):
        build_generator("toyplam")


def test_builtin_builders_pass_profile_dataset_and_options() -> None:
    roll = build_generator("rollout", profile="smoke", dataset_name="toy-medium", options={"horizon": 2},
                           progress=False)
    # DyDiff smoke on medium data: floor(0.6 * 16) = 9 kept rows of L = 8 -> ceil(72 / 2) start states
    assert (roll.config.horizon, roll.config.rollout_batch, roll.config.profile) == (2, 36, "smoke")
    assert roll.config.dataset == "toy-medium" and roll.progress is False
    dy = build_generator("dydiff", profile="smoke", dataset_name="maze2d-umaze-v1", progress=False)
    # Table 4: Maze2D has M = 1 and eta = 0.6
    assert (dy.config.iterations, dy.config.eta, dy.config.dataset) == (1, 0.6, "maze2d-umaze-v1")
    assert dy.config.profile == "smoke" and dy.progress is False
    dy2 = build_generator("dydiff", profile="smoke", dataset_name="hopper-medium-replay",
                          options={"eta": 0.5})
    assert (dy2.config.iterations, dy2.config.eta) == (2, 0.5)
    syn = build_generator("synther", profile="smoke", options={"num_steps": 3}, progress=False)
    assert syn.config.edm.num_steps == 3 and syn.config.profile == "smoke" and syn.progress is False
    with pytest.raises(UserInputError, match=r"generator 'rollout' does not take option\(s\) \['depth'\]"):
        build_generator("rollout", profile="smoke", options={"depth": 3})


def test_parse_options_values_and_aliases() -> None:
    assert parse_options("dydiff", [" M = 1", "L=16", "B_r=8", "filter=hardmax"]) == {
        "iterations": 1, "rollout_length": 16, "rollout_batch": 8, "filter": "hardmax"}
    assert parse_options("rollout", ["B=4", "deterministic=FALSE", "x=1e-3"]) == {
        "rollout_batch": 4, "deterministic": False, "x": 1e-3}
    assert parse_options("other", ["h=3"]) == {"h": 3}  # aliases are per generator
    assert parse_options("synther", ("N=2", "N=5")) == {"num_steps": 5}
    for bad in ("=3", " =3", "noequals"):
        with pytest.raises(UserInputError, match="KEY=VALUE"):
            parse_options("rollout", [bad])
    assert offline._parse_value("True") is True and offline._parse_value("2.50") == 2.5
    assert offline._parse_value("7") == 7 and isinstance(offline._parse_value("7"), int)


# ------------------------------------------------------------------------------------------------ policies
def test_resolve_policy_without_data_and_for_policy_free_generators(tmp_path) -> None:
    spec = resolve_policy("behavior", None, "rollout")
    assert spec.policy is None and spec.description == "behavior" and spec.algo is None
    assert resolve_policy(None, None, "dydiff").description == "behavior"
    free = resolve_policy(str(tmp_path / "missing.d3"), None, "synther")
    assert free.policy is None and free.description == "none (synther ignores the policy)"
    with pytest.raises(UserInputError, match="no file at"):
        resolve_policy(str(tmp_path / "missing.d3"), None, "rollout")
    fn = resolve_policy(lambda obs: np.zeros((len(obs), ACT)), None, "rollout")
    assert fn.description == "python object function"
    np.testing.assert_array_equal(fn.policy.act(np.ones((2, OBS), np.float32)), np.zeros((2, ACT)))
    obj = ZeroPolicy()
    assert resolve_policy(obj, None, "rollout").policy is obj


def test_behavior_policy_is_bc_cached_under_the_dataset_hash(monkeypatch, tmp_path) -> None:
    import d3rlpy

    monkeypatch.setenv("AUGMENT_HOME", str(tmp_path / "home"))
    data = toy_dataset()
    spec = resolve_policy("behavior", data, "rollout", profile="smoke", seed=2, progress=False)
    assert spec.description == "behavior cloning (d3rlpy BC) on the data"
    assert type(spec.algo).__name__ == "BC" and spec.policy.stochastic is False
    assert spec.algo.config.learning_rate == 1e-3 and spec.algo.config.batch_size == 256
    # smoke: 50 updates; the cache key is <dataset hash>-<steps>-<seed>
    target = tmp_path / "home" / "bc" / f"{data.content_hash}-50-2" / "model.d3"
    assert target.is_file()
    obs = data.transitions.observations[:5]
    again = offline.behavior_policy(data, profile="smoke", seed=2, progress=False)
    np.testing.assert_allclose(again.predict(obs), spec.algo.predict(obs), rtol=1e-6)
    saved = d3rlpy.load_learnable(str(target))
    np.testing.assert_allclose(saved.predict(obs), spec.algo.predict(obs), rtol=1e-6)
    offline.behavior_policy(data, steps=3, seed=0, progress=False)
    assert (tmp_path / "home" / "bc" / f"{data.content_hash}-3-0" / "model.d3").is_file()


def test_learner_files_fit_checks_and_their_policies(tmp_path) -> None:
    from baselines.learners import make_learner

    data = toy_dataset()
    algo = make_learner("td3bc", data, seed=0)
    path = tmp_path / "run"
    path.mkdir()
    algo.save(str(path / "model.d3"))
    loaded = offline.load_learner(path)  # a run directory means its model.d3
    assert offline.learner_sizes(loaded) == (OBS, ACT)
    spec = resolve_policy(str(path / "model.d3"), data, "rollout")
    assert spec.description == f"d3rlpy TD3PlusBC from {path / 'model.d3'}"
    assert spec.policy.stochastic is False
    assert resolve_policy(path / "model.d3", data, "rollout", preloaded=algo).algo is algo
    assert offline.learner_policy(algo, stochastic=True).stochastic is True
    iql = make_learner("iql", data, seed=0)
    assert offline.learner_policy(iql).stochastic is True  # IQL's Gaussian actor is sampled
    other = toy_dataset(obs=4, name="wide")
    fits = r"takes 3-dim observations and gives 2-dim actions, but 'wide' has 4/2"
    with pytest.raises(UserInputError, match=fits):
        offline.check_policy_fits(algo, other)
    with pytest.raises(UserInputError, match="takes 3-dim"):
        resolve_policy(str(path), other, "rollout")
    (tmp_path / "junk.d3").write_text("junk")
    with pytest.raises(UserInputError, match="is not a d3rlpy model"):
        offline.load_learner(tmp_path / "junk.d3")


# ---------------------------------------------------------------------------------------- trim and rounds
def test_trim_batch_inside_the_first_row_and_at_row_ends() -> None:
    obs = np.arange(3 * 6 * OBS, dtype=np.float32).reshape(3, 6, OBS)
    batch = rows_batch(obs, [5, 3, 2])
    batch.terminals[0, 4] = True
    cut = trim_batch(batch, 2)  # inside row 0: one row of 2 steps, its terminal (step 4) cut off
    assert cut.lengths.tolist() == [2] and not cut.terminals.any()
    np.testing.assert_array_equal(cut.observations[0], obs[0])
    assert batch.terminals[0, 4]  # the input is not modified
    whole = trim_batch(batch, 5)
    assert whole.lengths.tolist() == [5] and whole.terminals[0, 4]
    two = trim_batch(batch, 6)
    assert two.lengths.tolist() == [5, 1] and two.start_index.tolist() == [0, 1]
    assert trim_batch(batch, -1).batch_size == 0 and trim_batch(batch, 10) is batch


def test_round_size_reads_the_config() -> None:
    assert round_size(SimpleNamespace(config=SimpleNamespace(rollout_batch=7))) == 7
    assert round_size(SimpleNamespace(config=SimpleNamespace(sample_batch=9))) == 9
    assert round_size(SimpleNamespace(config=SimpleNamespace(rollout_batch=0, sample_batch=5))) == 5
    assert round_size(SimpleNamespace(config=SimpleNamespace(rollout_batch=2.0))) == 1024
    assert round_size(object()) == 1024


def test_iter_batches_sizes_each_request_from_the_yield_so_far() -> None:
    gen = ScriptedGenerator(batch=10, per_item=3)
    batches = list(iter_batches(gen, None, 32, np.random.default_rng(0), progress=False))
    # 10 items -> 30 transitions; 2 left at 3 per item -> ceil(2 / 3) = 1 item, trimmed to 2 steps
    assert gen.asks == [10, 1] and gen.rounds == [0, 1]
    assert [b.num_transitions for b in batches] == [30, 2]
    gen = ScriptedGenerator(batch=10, per_item=3)
    list(iter_batches(gen, None, 50, np.random.default_rng(0), progress=False))
    assert gen.asks == [10, 7]  # ceil(20 / 3) = 7


def test_iter_batches_retries_empty_rounds_and_gives_up_after_20() -> None:
    gen = ScriptedGenerator(batch=4, per_item=2, empty=(2, 3))
    batches = list(iter_batches(gen, None, 12, np.random.default_rng(0), progress=False))
    # 4 items -> 8; empty rounds still count their items: 8 / 6 per item -> ask ceil(4 / (8 / 6)) = 3,
    # then 8 / 9 per item -> ceil(4.5) = 5, capped at the round size 4
    assert [b.num_transitions for b in batches] == [8, 4] and gen.asks == [4, 2, 3, 4]
    assert gen.rounds == [0, 1, 2, 3]
    dead = ScriptedGenerator(batch=4, per_item=2, dead_after=1)
    with pytest.raises(UserInputError, match="scripted returned no transitions in 20 rounds"):
        list(iter_batches(dead, None, 12, np.random.default_rng(0), progress=False))
    assert len(dead.asks) == 21  # one round with rows, then 20 empty ones


def test_iter_batches_survives_an_empty_first_round() -> None:
    gen = ScriptedGenerator(batch=4, per_item=2, empty=(1,))
    batches = list(iter_batches(gen, None, 8, np.random.default_rng(0), progress=False))
    assert sum(b.num_transitions for b in batches) == 8


# ----------------------------------------------------------------------------------------------- checks
def test_generate_request_checks(tmp_path) -> None:
    assert check_generate_request("rollout", 5, None) is None  # the default policy is behaviour cloning
    assert check_generate_request("synther", 5, tmp_path / "s.zarr", policy=str(tmp_path / "none")) is None
    for n in (0, -1, True, 2.5, "3"):
        with pytest.raises(UserInputError, match="--n must be a positive"):
            check_generate_request("rollout", n, None)
    assert check_generate_request("rollout", np.int64(3), None, policy="behavior") is None
    with pytest.raises(UserInputError, match="no file at"):
        check_generate_request("rollout", 3, None, policy=tmp_path / "missing.d3")
    taken = tmp_path / "taken.zarr"
    taken.mkdir()
    with pytest.raises(UserInputError, match="already exists"):
        check_generate_out(taken)
    with pytest.raises(UserInputError, match="did not make"):
        check_generate_out(taken, overwrite=True)
    link = tmp_path / "dangling.zarr"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserInputError, match="already exists"):
        check_generate_out(link)
    check_generate_out(None)
    check_generate_out(tmp_path / "free.zarr")


def test_a_bad_policy_file_fails_before_any_model_is_fitted(monkeypatch, tmp_path) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("AUGMENT_HOME", str(home))
    junk = tmp_path / "junk.d3"
    junk.write_text("junk")
    with pytest.raises(UserInputError, match="is not a d3rlpy model"):
        generate_store("rollout", toy_dataset(), 5, tmp_path / "o.zarr", policy=str(junk), profile="smoke",
                       progress=False)
    assert not home.exists() or not any(home.iterdir())  # no world model was trained or cached
    with pytest.raises(UserInputError, match="is not a d3rlpy model"):
        generate_store(ScriptedGenerator(), toy_dataset(), 5, None, policy=str(junk), progress=False)
    with pytest.raises(UserInputError, match="--n must be a positive"):
        generate_store(ScriptedGenerator(), toy_dataset(), 0, None, policy=ZeroPolicy(), progress=False)


# ------------------------------------------------------------------------------------------- generation
def test_generate_store_in_memory_rows_seed_and_provenance() -> None:
    data = toy_dataset()
    gen = ScriptedGenerator(batch=10, per_item=3)
    result, batch = generate_store(gen, data, 32, None, policy=ZeroPolicy(), profile="smoke", seed=5,
                                   progress=False)
    assert gen.fitted == "toy" and batch is not None and batch.num_transitions == 32
    # the rows come from the rng derive_seed(seed, "generate-<name>"), asked 10 then 1 item
    rng = np.random.default_rng(derive_seed(5, "generate-scripted"))
    first = rng.normal(size=(10, 4, OBS)).astype(np.float32)
    second = rng.normal(size=(1, 4, OBS)).astype(np.float32)
    np.testing.assert_array_equal(batch.observations[:10], first)
    np.testing.assert_array_equal(batch.observations[10, :3], second[0, :3])
    assert batch.lengths.tolist() == [3] * 10 + [2]
    assert (result.store, result.generator, result.rows, result.trajectories, result.rounds) == (
        None, "scripted", 32, 11, 2)
    assert result.policy == "python object ZeroPolicy"
    attrs = result.attrs
    assert attrs["generator_name"] == "scripted" and attrs["seed"] == 5 and attrs["profile"] == "smoke"
    assert attrs["requested_transitions"] == 32 and attrs["termination"] == {}
    assert attrs["policy"] == "python object ZeroPolicy" and attrs["model_diagnostics"] is None
    gen_rec = attrs["generation"]
    assert set(gen_rec) == {"rows", "trajectories", "rounds", "wall_seconds", "cpu_seconds", "fit_seconds",
                            "cpu_seconds_per_1k"}
    assert (gen_rec["rows"], gen_rec["trajectories"], gen_rec["rounds"]) == (32, 11, 2)
    assert gen_rec["cpu_seconds_per_1k"] == pytest.approx(1000.0 * gen_rec["cpu_seconds"] / 32)
    assert gen_rec["wall_seconds"] == result.seconds and gen_rec["fit_seconds"] == result.fit_seconds


def test_generate_store_writes_the_store_with_its_attrs(tmp_path) -> None:
    data = toy_dataset()
    out = tmp_path / "s.zarr"
    result, batch = generate_store(ScriptedGenerator(batch=4, per_item=2), data, 9, out, policy=ZeroPolicy(),
                                   profile="smoke", seed=1, progress=False)
    assert batch is None and result.store == out and result.rows == 9
    with ReplayStore.open(out) as store:
        assert len(store) == 9 and store.generators == ["scripted"]
        attrs = store.attrs
    assert attrs["generation"]["rows"] == 9 and attrs["profile"] == "smoke" and attrs["seed"] == 1
    assert attrs["source_dataset"] == "toy" and attrs["generator_name"] == "scripted"
    again, _ = generate_store(ScriptedGenerator(batch=4, per_item=2), data, 4, out, policy=ZeroPolicy(),
                              profile="smoke", overwrite=True, progress=False)
    with ReplayStore.open(out) as store:
        assert len(store) == 4 and store.attrs["seed"] == 0


def test_generate_store_gives_policy_free_generators_no_policy(tmp_path) -> None:
    from augment.generators.synther import SynthERConfig, SynthERGenerator

    data = toy_dataset()
    cfg = SynthERConfig.for_profile("smoke", width=8, blocks=1, emb_dim=4, train_steps=3, batch_size=8,
                                    num_steps=2)
    gen = SynthERGenerator(cfg, progress=False)
    result, batch = generate_store(gen, data, 6, None, policy="behavior", profile="smoke", progress=False)
    assert result.policy == "none (synther ignores the policy)" and batch.num_transitions == 6
    assert result.generator == "synther" and result.attrs["generator_config"]["num_steps"] == 2
    assert result.attrs["termination"] == {"source": "model", "env_id": None,
                                           "rule": "SynthER's d channel > 0.5"}
    assert result.attrs["model_diagnostics"] == {"model_final_loss": gen.model.meta["final_loss"]}


def test_fit_generator_termination_records() -> None:
    data = toy_dataset()

    class WithRecord(ScriptedGenerator):
        termination = {"source": "env", "rule": "r"}

    rec = fit_generator(WithRecord(), data)
    assert rec == {"source": "env", "rule": "r"} and rec is not WithRecord.termination
    world = SimpleNamespace(terminal_fn="before")
    gen = ScriptedGenerator()
    gen.world = world
    rec = fit_generator(gen, data)
    assert rec["source"] == "none" and rec["data_terminals"] == 0 and world.terminal_fn == "before"
    assert fit_generator(ScriptedGenerator(), data) == {}


def test_diagnostics_and_store_attrs_of_any_generator() -> None:
    world = SimpleNamespace(report={"holdout_next_state_mse_raw": 0.5, "holdout_reward_mse_raw": 0.25,
                                    "elite_holdout_mse": [1.0, 2.0], "other": 9})
    gen = SimpleNamespace(world=world, diffusion=SimpleNamespace(meta={"final_loss": 0.125}),
                          model=SimpleNamespace(meta={"final_loss": np.float32(0.5)}))
    assert offline._diagnostics(gen) == {
        "world_holdout_next_state_mse_raw": 0.5, "world_holdout_reward_mse_raw": 0.25,
        "world_elite_holdout_mse": [1.0, 2.0], "diffusion_final_loss": 0.125, "model_final_loss": 0.5}
    assert offline._diagnostics(SimpleNamespace(world=None, model=SimpleNamespace(meta={}))) is None
    assert offline._store_attrs(SimpleNamespace(name="bare")) == {"generator_name": "bare"}
    assert offline._store_attrs(object()) == {"generator_name": ""}
    made = SimpleNamespace(store_attrs=lambda: {"generator_name": "x", "v": np.int64(3)})
    out = offline._store_attrs(made)
    assert out == {"generator_name": "x", "v": 3} and type(out["v"]) is int


def test_generate_result_rates_and_table_row() -> None:
    res = GenerateResult(store=None, generator="g", rows=300, trajectories=30, rounds=3, seconds=1.5,
                         cpu_seconds=3.0, fit_seconds=0.25, policy="p")
    assert res.transitions_per_s == 200.0 and res.transitions_per_cpu_s == 100.0
    assert res.table_row() == {"generator": "g", "rows": 300, "trajectories": 30, "rounds": 3, "fit s": 0.25,
                               "wall s": 1.5, "transitions/s": 200.0, "transitions/CPU-s": 100.0}
    idle = GenerateResult(store=None, generator="g", rows=0, trajectories=0, rounds=0, seconds=0.0,
                          cpu_seconds=0.0, fit_seconds=0.0, policy="p")
    assert math.isnan(idle.transitions_per_s) and math.isnan(idle.transitions_per_cpu_s)


# ----------------------------------------------------------------------------------------------- commands
def test_end_table_aligns_and_formats() -> None:
    table = end_table({"rows": 1234567, "wall s": 2.25, "rate": float("nan"), "generator": "synther"})
    assert table == ("rows       1,234,567\n"
                     "wall s     2.2\n"
                     "rate       n/a\n"
                     "generator  synther")
    assert end_table({"x": float("inf")}) == "x  n/a"


def test_register_adds_the_generate_command() -> None:
    group = click.Group("augment")
    register(group)
    assert list(group.commands) == ["generate"] and group.commands["generate"].name == "generate"


def test_run_generate_checks_the_policy_before_loading_data(tmp_path, capsys) -> None:
    junk = tmp_path / "junk.d3"
    junk.write_text("junk")
    with pytest.raises(UserInputError, match="is not a d3rlpy model"):
        run_generate("rollout", str(tmp_path / "missing.npz"), 5, tmp_path / "o.zarr", policy=str(junk),
                     profile="smoke", progress=False)
    with pytest.raises(UserInputError, match="KEY=VALUE"):
        run_generate("rollout", str(tmp_path / "missing.npz"), 5, tmp_path / "o.zarr", options=("h3",),
                     profile="smoke", progress=False)
    capsys.readouterr()
    with pytest.raises(UserInputError):  # the data are missing: the banner came first
        run_generate("synther", str(tmp_path / "missing.npz"), 5, tmp_path / "o.zarr", profile="smoke",
                     progress=True)
    banner = "profile 'smoke': tiny budgets for tests; numbers mean nothing."
    assert capsys.readouterr().err.splitlines()[0] == banner
    with pytest.raises(UserInputError):
        run_generate("synther", str(tmp_path / "missing.npz"), 5, tmp_path / "o.zarr", profile="smoke",
                     progress=False)
    assert capsys.readouterr().err == ""


def test_run_generate_on_envless_data_says_where_terminals_come_from(tmp_path, capsys) -> None:
    from stores.sources import write_npz

    path = tmp_path / "toy.npz"
    write_npz(toy_dataset(), path)
    out = tmp_path / "o.zarr"
    result = run_generate("synther", str(path), 7, out, profile="smoke", options=("N=2", "train_steps=3"),
                          progress=True)
    assert "names no environment: termination comes from the data's terminals" in capsys.readouterr().err
    assert result.rows == 7 and result.attrs["generator_config"]["num_steps"] == 2
    assert result.attrs["generator_config"]["train_steps"] == 3
    with ReplayStore.open(out) as store:
        assert len(store) == 7


def test_generate_command_quiet_prints_the_table_and_the_store(tmp_path, capsys) -> None:
    from stores.sources import write_npz
    from tests.cli_helpers import run_cli

    path = tmp_path / "toy.npz"
    write_npz(toy_dataset(), path)
    out = tmp_path / "q.zarr"
    code, stdout, err = run_cli(["generate", "synther", "--dataset", str(path), "--n", "5", "--out", str(out),
                                 "--profile", "smoke", "--seed", "4", "-o", "N=2", "-o", "train_steps=3",
                                 "--quiet"], capsys)
    assert code == 0 and err == ""  # --quiet: no banner, no bars, no env-less note
    lines = stdout.splitlines()
    assert lines[0].split() == ["generator", "synther"] and lines[1].split() == ["rows", "5"]
    assert lines[-1] == f"store: {out}"
    with ReplayStore.open(out) as store:
        assert len(store) == 5 and store.attrs["seed"] == 4 and store.attrs["profile"] == "smoke"
