"""Environment factory shared by every agent: ids, preprocessing, vector envs."""

from envs.atari import answered_env_ids
from envs.factory import finished_episodes, make_env, make_vector_env, spaces_of
from envs.spec import EnvConfig, check_env_id, ensure_registered, env_family

__all__ = [
    "answered_env_ids",
    "EnvConfig",
    "finished_episodes",
    "check_env_id",
    "ensure_registered",
    "env_family",
    "make_env",
    "make_vector_env",
    "spaces_of",
]
