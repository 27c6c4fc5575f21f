"""Stable-Baselines3 agents on ``ShrinkML-v0``, by name, with defaults suited to the problem.

The problem is unusual for RL libraries: episodes are short and of fixed length (one step
per layer), the only reward is terminal, and every new terminal state costs seconds of
decoding. Hence the defaults: ``gamma = 1`` (the terminal reward is the whole return),
rollouts of a few whole episodes, small networks, and for DQN a warm-up of random episodes
before learning. Every hyperparameter can be overridden (``SearchConfig.sb3``); learning
stops through :class:`BudgetCallback` the moment the evaluation budget is spent.

**Warm start** (``SearchConfig.warm_start``, on-policy agents): the greedy baseline's
sensitivity scan runs first (each layer alone at evenly spaced ranks; its evaluations count
against the budget), each step's measured score rise per menu action is appended to the
observation (:class:`SensitivityFeatures`), and the fresh policy is taught the allocation the
scan predicts best (a few gradient steps of behaviour cloning, until each of its actions has
probability 0.5) before it learns from rewards. The agent then starts where greedy starts
and explores around it, with the layer sensitivities in view. Written here because SB3 has
no pre-training hook for on-policy agents (its imitation library, ``imitation``, trains
from expert rollouts, not from one allocation).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from agents.budget import EvaluationRecorder, SearchLog
from agents.config import RL_AGENTS, SearchConfig

__all__ = ["BudgetCallback", "SensitivityFeatures", "algorithm_class", "check_hyperparameters",
           "hyperparameters", "run_rl"]

logger = logging.getLogger(__name__)

# Behaviour cloning of the warm start stops once every action of the allocation has this
# probability (geometric mean), or after this many gradient steps.
_IMITATION_PROBABILITY = 0.5
_IMITATION_STEPS = 500

# Set by the search itself, never by overrides.
_RESERVED = ("self", "env", "seed", "verbose", "tensorboard_log", "device", "_init_setup_model")


def algorithm_class(agent: str) -> type:
    """The SB3 (or sb3-contrib) class of an RL agent name."""
    if agent == "ppo":
        from stable_baselines3 import PPO

        return PPO
    if agent == "a2c":
        from stable_baselines3 import A2C

        return A2C
    if agent == "dqn":
        from stable_baselines3 import DQN

        return DQN
    if agent == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    raise ValueError(f"unknown RL agent {agent!r}; accepted: {', '.join(RL_AGENTS)}")


def check_hyperparameters(agent: str, overrides: dict[str, Any]) -> None:
    """Refuse override names the algorithm does not take (or that the search sets itself).

    Raises:
        ValueError: naming the unknown keys and the accepted ones.
    """
    accepted = [p for p in inspect.signature(algorithm_class(agent).__init__).parameters if p not in _RESERVED]
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ValueError(
            f"{agent} takes no hyperparameter(s) {unknown}; accepted: {', '.join(accepted)} "
            f"(seed, device and tensorboard have their own options)"
        )


def default_warmup(config: SearchConfig) -> int:
    """Random episodes before learning: DQN fills its replay buffer; on-policy agents none."""
    if config.warmup_episodes is not None:
        return config.warmup_episodes
    if config.agent == "dqn":
        return int(np.clip(config.evaluations // 5, 1, 50))
    return 0


def hyperparameters(config: SearchConfig, steps: int) -> dict[str, Any]:
    """Defaults for ``config.agent`` on episodes of ``steps`` steps, overridden by ``config.sb3``."""
    net = {"net_arch": [64, 64]}
    if config.agent in ("ppo", "maskable_ppo"):
        defaults: dict[str, Any] = {
            "policy": "MlpPolicy",
            "n_steps": 8 * steps,  # eight whole episodes per update
            "batch_size": 4 * steps,
            "n_epochs": 10,
            "gamma": 1.0,
            "gae_lambda": 0.95,
            "learning_rate": 1e-3,  # few updates fit in a budget of evaluations
            "ent_coef": 0.01,
            "policy_kwargs": net,
        }
    elif config.agent == "a2c":
        defaults = {
            "policy": "MlpPolicy",
            "n_steps": steps,  # one whole episode per update
            "gamma": 1.0,
            "gae_lambda": 1.0,
            "learning_rate": 1e-3,
            "ent_coef": 0.01,
            "policy_kwargs": net,
        }
    elif config.agent == "dqn":
        episodes = config.episode_limit
        defaults = {
            "policy": "MlpPolicy",
            "gamma": 1.0,
            "learning_rate": 1e-3,
            "buffer_size": 50_000,
            "learning_starts": default_warmup(config) * steps,
            "batch_size": 32,
            "train_freq": (1, "episode"),
            "gradient_steps": steps,
            "target_update_interval": 10 * steps,
            # Explore while the budget is being spent (about 2 episodes per evaluation),
            # not over the episode limit, which only bounds runs that stop finding anything.
            "exploration_fraction": min(1.0, 2.0 * config.evaluations / episodes),
            "exploration_final_eps": 0.05,
            "policy_kwargs": net,
        }
    else:
        raise ValueError(f"unknown RL agent {config.agent!r}; accepted: {', '.join(RL_AGENTS)}")
    overrides = dict(config.sb3)
    check_hyperparameters(config.agent, overrides)
    if isinstance(overrides.get("train_freq"), list):  # JSON has no tuples
        overrides["train_freq"] = tuple(overrides["train_freq"])
    return {**defaults, **overrides}


class BudgetCallback(BaseCallback):
    """Stops ``learn()`` as soon as the search log is exhausted; logs search scalars."""

    def __init__(self, log: SearchLog, episode_limit: int) -> None:
        super().__init__()
        self.search_log = log
        self.episode_limit = episode_limit
        self._seen = log.count

    def _on_step(self) -> bool:
        if self.search_log.count != self._seen:
            self._seen = self.search_log.count
            progress = self.search_log.progress()
            self.logger.record("search/evaluations", progress.evaluations)
            self.logger.record("search/cache_hits", progress.cache_hits)
            if progress.best_reward is not None:
                self.logger.record("search/best_reward", progress.best_reward)
            if progress.best_wer is not None:
                self.logger.record("search/best_wer_within_budget", progress.best_wer)
        return not self.search_log.exhausted and self.search_log.episodes < self.episode_limit


def run_rl(config: SearchConfig, env: EvaluationRecorder, log: SearchLog, rng: np.random.Generator) -> str:
    """Train ``config.agent`` on ``env`` until the budget or the episode limit is reached.

    Returns:
        ``"budget"``, or ``"episode_limit"`` when the agent kept revisiting known
        configurations.

    Raises:
        ValueError: TensorBoard logging asked for but ``tensorboard`` is not installed.
    """
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.baselines import random_episode

    if config.tensorboard is not None:
        _check_tensorboard()
    steps = env.unwrapped.steps
    params = hyperparameters(config, steps)
    allocation = None
    if config.warm_started:
        from agents.baselines import sensitivity_scan

        scan, reason = sensitivity_scan(config, env, log)
        if log.exhausted or reason is not None:
            return "budget" if log.exhausted else "episode_limit"
        menu_size = env.unwrapped.menu.size
        env = SensitivityFeatures(env, scan.rise if scan is not None else np.zeros((steps, menu_size)))
        allocation = scan.allocation if scan is not None else None
    if config.agent != "dqn":
        for _ in range(default_warmup(config)):
            if log.exhausted or log.episodes >= config.episode_limit:
                break
            random_episode(env, rng)
    pool = getattr(env, "pool", None)
    if pool is not None and pool.workers > 1:
        # One episode per worker at a time, their terminal evaluations decoded together;
        # the pooled env never evaluates beyond the remaining budget.
        from agents.workers import PooledVecEnv

        vec_env = PooledVecEnv(env, pool.workers, pool, log)
        if "n_steps" in params and "n_steps" not in dict(config.sb3):  # the same episodes per update
            params["n_steps"] = max(steps, params["n_steps"] // pool.workers // steps * steps)
    else:
        # One env: SB3 checks the callback after every step, so no evaluation overshoots the
        # budget (several envs would each finish an episode within one vector step).
        vec_env = DummyVecEnv([lambda: Monitor(env)])
    policy = params.pop("policy")
    model = algorithm_class(config.agent)(
        policy, vec_env, seed=config.seed, device=config.device, verbose=0,
        tensorboard_log=config.tensorboard, **params,
    )
    if config.tensorboard is None:
        # SB3's default logger makes an empty /tmp/SB3-<time> folder on every learn().
        model.set_logger(Logger(folder=None, output_formats=[]))
    if allocation is not None:
        _imitate(model, env, allocation)
    callback = BudgetCallback(log, config.episode_limit)
    remaining = max(config.episode_limit - log.episodes, 0) * steps
    if remaining and not log.exhausted:
        model.learn(total_timesteps=remaining, callback=callback, tb_log_name=config.agent)
    return "budget" if log.exhausted else "episode_limit"


def _check_tensorboard() -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as e:
        raise ValueError(
            "TensorBoard logging needs the `tensorboard` package, which is not installed; "
            "`pip install tensorboard`, or drop --tensorboard"
        ) from e


class SensitivityFeatures(gym.ObservationWrapper):
    """Appends the current step's measured sensitivity to the observation: the score rise of
    each of the ``K`` menu actions (that layer alone compressed), divided by the largest rise
    of any step and action, so ``K`` more features in ``[0, 1]``.

    Args:
        env: the (recorder-wrapped) ``ShrinkML-v0`` env.
        rise: ``(steps, K)`` score rises from :func:`~agents.baselines.sensitivity_scan`.
    """

    def __init__(self, env: gym.Env, rise: np.ndarray) -> None:
        super().__init__(env)
        base = env.unwrapped
        if rise.shape != (base.steps, base.menu.size):
            raise ValueError(f"sensitivity of shape {rise.shape}; the env has {base.steps} steps of "
                             f"{base.menu.size} actions")
        scale = max(float(np.nanmax(rise)), 1e-9)
        self.features = np.clip(np.nan_to_num(rise / scale), 0.0, 1.0).astype(np.float32)
        low, high = env.observation_space.low, env.observation_space.high
        self.observation_space = gym.spaces.Box(
            np.concatenate([low, np.zeros(base.menu.size, np.float32)]),
            np.concatenate([high, np.ones(base.menu.size, np.float32)]), dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        base = self.env.unwrapped
        t = min(base.steps - base.steps_left, base.steps - 1)
        return np.concatenate([observation, self.features[t]]).astype(np.float32)


def _imitate(model: Any, env: gym.Env, allocation: tuple[int, ...]) -> float:
    """Plays ``allocation`` (one evaluation, the warm start's starting point) and clones it
    into ``model``'s fresh policy (see the module docstring); returns the policy's probability
    of each of its actions afterwards (geometric mean)."""
    import torch

    observations = []
    obs, _ = env.reset()
    for t, action in enumerate(allocation):
        observations.append(obs)
        obs, _, terminated, _, _ = env.step(int(action))
        if t == len(allocation) - 1 and not terminated:
            raise AssertionError("an episode takes exactly one action per step")
    policy = model.policy
    obs_tensor, _ = policy.obs_to_tensor(np.stack(observations))
    actions = torch.as_tensor(np.asarray(allocation), device=policy.device)
    policy.set_training_mode(True)
    for _ in range(_IMITATION_STEPS + 1):
        _, log_prob, _ = policy.evaluate_actions(obs_tensor, actions)
        probability = float(log_prob.detach().mean().exp())
        if probability >= _IMITATION_PROBABILITY:
            break
        loss = -log_prob.mean()
        policy.optimizer.zero_grad()
        loss.backward()
        policy.optimizer.step()
    policy.set_training_mode(False)
    logger.info("warm start: the policy plays the scan's allocation with probability %.2f per step", probability)
    return probability
