"""RLlib's PPO as the agent on ``ShrinkML-v0``: a second RL library, through the Gymnasium API.

RLlib builds its own copies of the environment on its env runners (Ray actors), so the
runners are the parallel workers here: each holds the target once and decodes the
configurations its episodes end on. The environment is registered with RLlib's registry
under a name; everything else is the plain Gymnasium interface ShrinkML already speaks.

    python examples/rllib_ppo.py --target toy --iterations 2          # seconds
    python examples/rllib_ppo.py --target default --budget 0.3 --iterations 5 --runners 2

Needs the ``ray`` extra (``pip install 'shrinkml[ray]'``). Prints one line per training
iteration: episodes so far, mean return, and the best configuration seen within the budget.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def make_env(env_config: dict[str, Any]):
    """RLlib's env creator: one ``ShrinkML-v0`` per env-runner copy."""
    import gymnasium as gym

    import shrinkml_env  # noqa: F401  (registers ShrinkML-v0 in the runner's process)

    return gym.make("ShrinkML-v0", **env_config)


def build_algorithm(env_config: dict[str, Any], *, runners: int = 0, episodes_per_iteration: int = 8,
                    seed: int = 0):
    """An RLlib PPO algorithm on ShrinkML-v0 (``runners`` remote env runners; 0: local)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.registry import register_env

    register_env("shrinkml", make_env)
    steps = make_env(env_config).unwrapped.steps
    batch = episodes_per_iteration * steps
    config = (
        PPOConfig()
        .environment("shrinkml", env_config=env_config)
        .framework("torch")
        .env_runners(num_env_runners=runners, num_envs_per_env_runner=1, rollout_fragment_length=steps,
                     batch_mode="complete_episodes")
        .training(train_batch_size=batch, minibatch_size=max(steps, batch // 2), num_epochs=4, gamma=1.0,
                  lr=1e-3)
        .debugging(seed=seed)
    )
    return config.build_algo()


def main(argv: list[str] | None = None) -> int:
    import ray

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="toy", help="'toy', 'default' or an ASR checkpoint path")
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--runners", type=int, default=0, help="remote env runners (0: sample in the driver)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ray.init(num_cpus=max(2, args.runners + 1), include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True)
    algo = build_algorithm({"target": args.target, "budget": args.budget}, runners=args.runners, seed=args.seed)
    try:
        for i in range(args.iterations):
            result = algo.train()
            runners = result["env_runners"]
            print(f"iteration {i + 1}: episodes {runners.get('num_episodes_lifetime')}, "
                  f"mean return {runners.get('episode_return_mean', float('nan')):.3f}")
    finally:
        algo.stop()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
