"""dreamworld: reinforcement learning through learned world models.

World Models (Ha & Schmidhuber 2018) and Dreamer V1/V2/V3 (Hafner et al.) in PyTorch, sharing one
set of parts: environments with one observation contract, an episode store and sequence replay, a
typed configuration, a logger, checkpoints and seeding.

Importing this package runs nothing and imports no simulator; each part is imported where used.
"""

__version__ = "0.1.0"
