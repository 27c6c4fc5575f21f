"""ShrinkML's Gymnasium environment and compression mechanics.

Importing this package registers ``ShrinkML-v0`` and nothing heavier: the environment module
(and torch) load when the environment is made.

>>> import gymnasium as gym
>>> import shrinkml_env
>>> env = gym.make("ShrinkML-v0", target="toy")  # doctest: +SKIP
"""

from gymnasium.envs.registration import register, registry

__all__ = ["ENV_ID"]

ENV_ID = "ShrinkML-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="shrinkml_env.env:ShrinkMLEnv")
