"""``benchmarks/bench_generator_consistency.py``: real Hopper transitions are consistent with MuJoCo, the
same transitions with a perturbed s' are not, and the CLI writes its table over a real replay store."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
from baselines_data import hopper_random_dataset, load_benchmark


def load_script() -> ModuleType:
    return load_benchmark("bench_generator_consistency")


def test_real_transitions_agree_with_mujoco_and_perturbed_ones_do_not(tmp_path: Path) -> None:
    bench = load_script()
    data = hopper_random_dataset(episodes=4, seed=2)
    tr = data.transitions
    real = bench.consistency("Hopper-v5", tr.observations, tr.actions, tr.next_observations, tr.terminals)
    assert real["rows"] == len(tr) and real["non_finite"] == 0
    assert real["median"] < 1e-3
    assert real["terminal_rule_agreement"] == 1.0
    shifted = tr.next_observations + np.float32(0.1)  # every column off by 0.1: error 11 * 0.01 more or less
    bad = bench.consistency("Hopper-v5", tr.observations, tr.actions, shifted, tr.terminals)
    assert 0.05 < bad["median"] < 0.3

    from stores.replay import ReplayStore

    path = tmp_path / "s.zarr"
    store = ReplayStore.create(path, observation_size=11, action_size=3)
    store.append_transitions({"observations": tr.observations, "actions": tr.actions, "rewards": tr.rewards,
                              "next_observations": shifted, "terminals": tr.terminals,
                              "timeouts": tr.timeouts}, tr.episode_starts)
    store.close()
    npz = tmp_path / "d.npz"
    np.savez(npz, observations=tr.observations, actions=tr.actions, rewards=tr.rewards,
             next_observations=tr.next_observations, terminals=tr.terminals, timeouts=tr.timeouts)
    out = tmp_path / "c.json"
    assert bench.main(["--dataset", str(npz), "--env", "Hopper-v5", "--store", f"shifted:x=1={path}",
                       "--rows", "50", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"real data", "shifted:x=1"}
    assert res["shifted:x=1"]["median"] > 100 * res["real data"]["median"]
