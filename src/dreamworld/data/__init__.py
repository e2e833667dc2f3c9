"""Experience on disk and in memory: the episode store and the sequence replay."""

from dreamworld.data.replay import Replay
from dreamworld.data.store import EPISODE_DIR, EpisodeStore

__all__ = ["EPISODE_DIR", "EpisodeStore", "Replay"]
