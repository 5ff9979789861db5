"""Generators write synthetic trajectories for the training loop (see docs/architecture.md).

* :mod:`augment.generators.dydiff` - DyDiff (Algorithm 1): single-step rollouts refined by trajectory
  diffusion and the learning policy, reward-filtered, cut at terminals.
* :mod:`augment.generators.filters` - hardmax / softmax reward filters.
* :mod:`augment.generators.base` - the Generator protocol and the registry of generator names.
"""

from augment.generators.base import GENERATORS, Generator, check_generator, generator_class
from augment.generators.dydiff import DyDiffConfig, DyDiffGenerator

__all__ = ["GENERATORS", "DyDiffConfig", "DyDiffGenerator", "Generator", "check_generator", "generator_class"]
