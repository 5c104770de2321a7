"""Environment factory shared by every agent: ids, preprocessing, vector envs, episode batches."""

from envs.batch import EpisodeBatch
from envs.factory import (
    VectorMode,
    final_observations,
    finished_episodes,
    make_env,
    make_vector_env,
    numpy_batch_available,
    resolve_vector_mode,
    spaces_of,
)
from envs.spec import EnvConfig, check_env_id, ensure_registered, env_family

__all__ = [
    "EnvConfig",
    "EpisodeBatch",
    "VectorMode",
    "check_env_id",
    "ensure_registered",
    "env_family",
    "final_observations",
    "finished_episodes",
    "make_env",
    "make_vector_env",
    "numpy_batch_available",
    "resolve_vector_mode",
    "spaces_of",
]
