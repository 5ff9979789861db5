"""benchmarks/probe_td_components.py: the component swap between two Trajectory Diffuser fits, on the smoke
profile with tiny real Hopper-v5 data and MuJoCo evaluation."""

from __future__ import annotations

import math
from types import ModuleType

from tests.baselines_data import load_benchmark, planner_dataset


def _load() -> ModuleType:
    return load_benchmark("probe_td_components")


def test_swap_rows_name_the_host_alone_then_each_network_of_the_donor() -> None:
    probe = _load()
    rows = probe.swap_rows(3, 2)
    assert rows[0] == ("seed 3", 3, None)
    assert [r[2] for r in rows[1:]] == ["gpt", "unet", "inverse_dynamics", "critic"]
    assert all(r[1] == 3 and "of seed 2" in r[0] for r in rows[1:])


def test_probe_swaps_a_network_in_and_puts_the_host_back() -> None:
    from augment.planners.run import evaluate_planner, make_planner

    probe = _load()
    data = planner_dataset()
    report = probe.run_probe(data, good=0, bad=1, profile="smoke", episodes=2, eval_seed=5, max_steps=8)
    rows = report["rows"]
    assert [(r["host"], r["swapped"]) for r in rows] == (
        [(1, None), (1, "gpt"), (1, "unet"), (1, "inverse_dynamics"), (1, "critic")]
        + [(0, None), (0, "gpt"), (0, "unet"), (0, "inverse_dynamics"), (0, "critic")])
    assert all(math.isfinite(r["return_mean"]) and 1 <= r["length_mean"] <= 8 for r in rows)
    # each host-alone row is that fit's own evaluation on the same episodes
    for seed in (0, 1):
        fit = make_planner("td", data, profile="smoke", seed=seed, progress=False)
        own = evaluate_planner(fit, "Hopper-v5", seed=5, episodes=2, envs=2, score_name=data.name,
                               max_steps=8)
        (row,) = [r for r in rows if r["host"] == seed and r["swapped"] is None]
        assert row["return_mean"] == float(own.mean)
    # the two fits differ, so putting one's inverse dynamics into the other changes the actions and returns
    inv = [r for r in rows if r["host"] == 1 and r["swapped"] == "inverse_dynamics"][0]
    assert inv["return_mean"] != rows[0]["return_mean"]


def test_swapped_puts_the_hosts_network_back_even_when_the_block_raises() -> None:
    probe = _load()

    class Fit:
        def __init__(self, tag: str) -> None:
            self.gpt, self.unet = f"{tag}-gpt", f"{tag}-unet"

    host, donor = Fit("host"), Fit("donor")
    with probe.swapped(host, "gpt", donor) as h:
        assert (h.gpt, h.unet) == ("donor-gpt", "host-unet")
    assert host.gpt == "host-gpt"
    try:
        with probe.swapped(host, "unet", donor):
            raise RuntimeError("evaluation failed")
    except RuntimeError:
        pass
    assert (host.gpt, host.unet) == ("host-gpt", "host-unet")
    with probe.swapped(host, None, donor) as h:
        assert h is host and host.gpt == "host-gpt"
