"""The learning policy of the diagnostics: a saved learner, or one trained on the real data to a target
normalized score (App. D.3's "expert" TD3+BC at the paper profile). Re-exported by :mod:`augment.diagnose`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stores.errors import UserInputError


@dataclass(frozen=True)
class PolicyTarget:
    """How the diagnostics make their learning policy when none is given: train ``learner`` on the real
    data, evaluating every ``eval_every`` updates with ``episodes`` episodes, until the mean normalized
    score reaches ``score`` or ``max_steps`` updates have run (then it says so loudly)."""

    score: float
    max_steps: int
    eval_every: int
    episodes: int

    @classmethod
    def for_profile(cls, profile: str) -> PolicyTarget:
        """smoke: 5 within 50 updates (not reached: tests only); cpu: 12 within 50k updates (TD3+BC on
        the cpu hopper-medium-replay recipe passes 12 between 17k and 30k updates, benchmarks/RESULTS.md);
        paper: 50 within 300k updates (App. D.3's "expert" TD3+BC)."""
        from augment.profiles import by_profile

        return by_profile(profile, smoke=cls(5.0, 50, 25, 2), cpu=cls(12.0, 50_000, 2_500, 5),
                          paper=cls(50.0, 300_000, 10_000, 10))


def learner_name_of(algo: Any) -> str:
    """``td3bc`` / ``cql`` / ``iql`` from a d3rlpy learner's class."""
    name = type(algo).__name__.lower()
    for key, learner in (("td3", "td3bc"), ("cql", "cql"), ("iql", "iql")):
        if key in name:
            return learner
    raise UserInputError(f"the saved learner is a {type(algo).__name__}; the diagnostics know td3bc, "
                         "cql and iql")


def load_policy(path: Path) -> tuple[Any, str]:
    """A saved learner (``model.d3`` of a run, or a run directory holding one) -> (d3rlpy algo, name)."""
    import d3rlpy

    path = Path(path)
    if path.is_dir():
        path = path / "model.d3"
    if not path.is_file():
        raise UserInputError(f"no saved learner at {path}; pass a run's model.d3 (augment train writes one)")
    algo = d3rlpy.load_learnable(str(path))
    return algo, learner_name_of(algo)


def train_policy_to_score(dataset: Any, learner: str, target: PolicyTarget, *, seed: int = 0,
                          progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Train ``learner`` on the real transitions until ``target.score`` or ``target.max_steps``.

    Returns (d3rlpy algo, record) with record = {steps, score, target, reached, evaluations: [(step,
    score)]}; the score is the mean normalized score of ``target.episodes`` evaluation episodes.
    """
    from tqdm import tqdm

    from baselines.evaluate import evaluate
    from baselines.learners import LearnerPolicy, make_learner
    from baselines.loop import score_name_for
    from baselines.sampler import MixedSampler
    from baselines.seeding import derive_seed, seed_everything

    if dataset.env_id is None:
        raise UserInputError(f"dataset '{dataset.name}' names no env to evaluate the policy in")
    seed_everything(seed)
    algo = make_learner(learner, dataset, seed=seed, total_steps=target.max_steps)
    sampler = MixedSampler(dataset.transitions, batch_size=256, real_ratio=1.0,
                           seed=derive_seed(seed, "diagnose-sampler"))
    score_name = score_name_for(dataset, dataset.env_id)
    evaluations: list[tuple[int, float]] = []
    score, step = math.nan, 0
    bar = tqdm(total=target.max_steps, desc=f"{learner} policy to score {target.score:g}",
               disable=not progress, leave=False)
    while step < target.max_steps:
        chunk = min(target.eval_every, target.max_steps - step)
        for _ in range(chunk):
            algo.update(sampler.sample())
        step += chunk
        bar.update(chunk)
        result = evaluate(LearnerPolicy(algo), dataset.env_id, episodes=target.episodes,
                          seed=derive_seed(seed, "diagnose-eval"), score_name=score_name,
                          num_envs=target.episodes)
        score = float(result.normalized_mean)
        evaluations.append((step, score))
        bar.set_postfix(score=f"{score:.1f}")
        if score >= target.score:
            break
    bar.close()
    record = {"steps": step, "score": score, "target": target.score, "reached": bool(score >= target.score),
              "max_steps": target.max_steps, "evaluations": evaluations, "learner": learner}
    return algo, record
