"""Diffusion planners: each is a Policy (evaluated by the shared harness) and a Generator (planned
trajectories into replay stores). See docs/planners.md.

* :mod:`augment.planners.base` - the Planner base class, the registry ``PLANNERS`` (name -> class),
  config overrides and variants, the planner cache.
* :mod:`augment.planners.run` - one run: fit (cached), evaluate, results.json, optional store.
* :mod:`augment.planners.commands` - ``augment plan NAME``; :mod:`augment.planners.arms` - compare arms.
* :mod:`augment.planners.dmemm` - DMEMM (Diffusion Modulation via Environment Mechanism Modeling).
* :mod:`augment.planners.trajectory_diffuser` - Trajectory Diffuser (a causal GPT proposes, the last k
  diffusion steps refine, inverse dynamics acts).
* :mod:`augment.planners.aepo` - AEPO (action diffusion guided by an analytic intermediate energy).

Importing this package imports nothing heavy; each planner module is imported when it is named.
"""
