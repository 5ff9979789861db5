"""A single-file TD3+BC (Fujimoto & Gu 2021) in plain PyTorch, CORL style, trained on a D4RL HDF5 file
that holds real plus synthetic transitions exported by the toolkit.

Step 1 (``--make-data``) uses the toolkit: the real dataset and ``--n`` synthetic transitions of
``--generator`` are merged into one ReplayStore and exported as a D4RL-layout HDF5 (keys observations,
actions, rewards, next_observations, terminals, timeouts, plus per-row provenance under ``augment/``).
Step 2 is code that knows nothing of the toolkit: it reads the HDF5 with h5py and trains TD3+BC.

    python examples/corl_td3bc.py --make-data --dataset hopper-medium-replay --profile smoke \
        --hdf5 /tmp/real_plus_synthetic.hdf5 --steps 500 --eval-episodes 2
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


# ------------------------------------------------------------------------------- step 1: the toolkit
def make_data(dataset_name: str, generator: str, n: int, profile: str, out: Path, seed: int) -> Path:
    """Real dataset + n synthetic transitions -> one D4RL HDF5 at ``out``."""
    from augment.generators.offline import generate_store
    from stores.convert import dataset_to_store, export_store, merge_stores
    from stores.datasets import load_dataset

    dataset = load_dataset(dataset_name, profile=profile, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        real = dataset_to_store(dataset, Path(tmp) / "real.zarr", progress=False)
        real.close()
        generate_store(generator, dataset, n, Path(tmp) / "synthetic.zarr", profile=profile, seed=seed,
                       progress=False)
        merged = merge_stores([Path(tmp) / "real.zarr", Path(tmp) / "synthetic.zarr"], Path(tmp) / "all.zarr",
                              progress=False)
        merged.close()
        return export_store(Path(tmp) / "all.zarr", "hdf5", out)


# ------------------------------------------------------------------------------- step 2: plain PyTorch
def load_hdf5(path: Path) -> dict[str, np.ndarray]:
    """D4RL keys as float32 arrays; rewards/terminals (N,)."""
    with h5py.File(path, "r") as f:
        data = {k: np.asarray(f[k], dtype=np.float32) for k in
                ("observations", "actions", "rewards", "next_observations", "terminals")}
        if "augment" in f and "generator" in f["augment"]:
            names = json.loads(f["augment"].attrs["generators"])
            codes = np.asarray(f["augment"]["generator"])
            data["source"] = np.array([names[c] for c in codes])
        data["env_id"] = f.attrs.get("env_id")
    return data


class Actor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, max_action: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, act_dim), nn.Tanh())
        self.max_action = max_action

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.max_action * self.net(s)


class Critic(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim + act_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, 1))

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([s, a], dim=-1))


def train_td3bc(data: dict[str, np.ndarray], steps: int, *, batch_size: int = 256, alpha: float = 2.5,
                discount: float = 0.99, tau: float = 0.005, policy_noise: float = 0.2,
                noise_clip: float = 0.5, policy_freq: int = 2, lr: float = 3e-4,
                seed: int = 0) -> tuple[Actor, np.ndarray, np.ndarray]:
    """TD3+BC on normalised states; returns (actor, state mean, state std)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean = data["observations"].mean(0)
    std = data["observations"].std(0) + 1e-3
    s = torch.as_tensor((data["observations"] - mean) / std)
    s2 = torch.as_tensor((data["next_observations"] - mean) / std)
    a = torch.as_tensor(data["actions"])
    r = torch.as_tensor(data["rewards"])[:, None]
    not_done = 1.0 - torch.as_tensor(data["terminals"])[:, None]
    obs_dim, act_dim = s.shape[1], a.shape[1]
    max_action = float(np.abs(data["actions"]).max()) or 1.0  # the env's bound when actions reach it
    actor = Actor(obs_dim, act_dim, max_action)
    critic1, critic2 = Critic(obs_dim, act_dim), Critic(obs_dim, act_dim)
    actor_t, critic1_t, critic2_t = copy.deepcopy(actor), copy.deepcopy(critic1), copy.deepcopy(critic2)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=lr)
    critic_opt = torch.optim.Adam([*critic1.parameters(), *critic2.parameters()], lr=lr)
    for it in range(steps):
        idx = torch.as_tensor(rng.integers(0, len(s), size=batch_size))
        bs, ba, br, bs2, bnd = s[idx], a[idx], r[idx], s2[idx], not_done[idx]
        with torch.no_grad():
            noise = (torch.randn_like(ba) * policy_noise).clamp(-noise_clip, noise_clip)
            a2 = (actor_t(bs2) + noise).clamp(-max_action, max_action)
            target = br + discount * bnd * torch.min(critic1_t(bs2, a2), critic2_t(bs2, a2))
        critic_loss = F.mse_loss(critic1(bs, ba), target) + F.mse_loss(critic2(bs, ba), target)
        critic_opt.zero_grad()
        critic_loss.backward()
        critic_opt.step()
        if it % policy_freq == 0:
            pi = actor(bs)
            q = critic1(bs, pi)
            lmbda = alpha / q.abs().mean().detach()
            actor_loss = -lmbda * q.mean() + F.mse_loss(pi, ba)
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
            with torch.no_grad():
                for net, tgt in ((actor, actor_t), (critic1, critic1_t), (critic2, critic2_t)):
                    for p, pt in zip(net.parameters(), tgt.parameters(), strict=True):
                        pt.lerp_(p, tau)
    return actor, mean, std


def evaluate(actor: Actor, env_id: str, mean: np.ndarray, std: np.ndarray, episodes: int, seed: int) -> float:
    """Mean undiscounted return of the deterministic actor over ``episodes`` Gymnasium episodes."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done, total = False, 0.0
        while not done:
            with torch.no_grad():
                act = actor(torch.as_tensor((obs - mean) / std, dtype=torch.float32)).numpy()
            obs, rew, term, trunc, _ = env.step(act)
            total += float(rew)
            done = term or trunc
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hdf5", type=Path, required=True, help="D4RL HDF5 to read (written by --make-data)")
    parser.add_argument("--make-data", action="store_true", help="build the HDF5 with the toolkit first")
    parser.add_argument("--dataset", default="hopper-medium-replay")
    parser.add_argument("--generator", default="rollout")
    parser.add_argument("--n", type=int, default=2000, help="synthetic transitions")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.make_data:
        make_data(args.dataset, args.generator, args.n, args.profile, args.hdf5, args.seed)
    data = load_hdf5(args.hdf5)
    if "source" in data:
        names, counts = np.unique(data["source"], return_counts=True)
        print("transitions by source: " + ", ".join(f"{n} {c:,}" for n, c in zip(names, counts, strict=True)))
    actor, mean, std = train_td3bc(data, args.steps, seed=args.seed)
    result = {"transitions": float(len(data["rewards"])), "steps": float(args.steps)}
    env_id = data.get("env_id")
    if args.eval_episodes > 0 and env_id:
        result["return"] = evaluate(actor, str(env_id), mean, std, args.eval_episodes, args.seed)
    for key, value in result.items():
        print(f"{key:12s} {value:,.1f}")
    return result


if __name__ == "__main__":
    main()
