"""DyDiff's world models: Gaussian dynamics ensemble with elites, reward model, termination rules.

See docs/world-models.md. Entry point: :func:`fit_world_model` (trains or loads from the cache).
"""

from augment.world.config import WorldModelConfig
from augment.world.dynamics import (
    GaussianDynamicsEnsemble,
    gaussian_nll,
    select_elites,
    soft_bound_log_variance,
)
from augment.world.model import WorldModel, cache_dir, fit_world_model, train_world_model
from augment.world.reward import RewardModel
from augment.world.termination import register_termination, termination_fn
from augment.world.training import FitReport, FitSettings, fit_ensemble, holdout_split

__all__ = [
    "FitReport", "FitSettings", "GaussianDynamicsEnsemble", "RewardModel", "WorldModel", "WorldModelConfig",
    "cache_dir", "fit_ensemble", "fit_world_model", "gaussian_nll", "holdout_split", "register_termination",
    "select_elites", "soft_bound_log_variance", "termination_fn", "train_world_model",
]
