"""Learning and judging: d3rlpy learners, mixed-batch sampler, training loop, evaluation, comparisons."""
