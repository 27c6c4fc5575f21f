"""``ShrinkML-v0`` through the plain Gymnasium API: a vector env and a minimal policy loop.

No Stable-Baselines3 here: a synchronous vector env runs several copies of the env, and the
"policy" is one softmax over the rank menu per step (a table of logits), sampled only over
the actions the env marks feasible (``action_masks()``) and updated by REINFORCE with a
running-mean baseline. Any RL library that speaks Gymnasium plugs in the same way: make the
env by id, step it, read ``info`` at the end of an episode.

Run it (the toy target takes seconds; ``--target default`` searches the shipped recogniser)::

    python examples/plain_gymnasium.py --episodes 200
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import shrinkml_env  # noqa: F401  (registers ShrinkML-v0)


def run(
    episodes: int = 64,
    num_envs: int = 2,
    budget: float = 0.4,
    target: str = "toy",
    learning_rate: float = 0.5,
    seed: int = 0,
) -> list[dict]:
    """Train the tabular policy for ``episodes`` episodes; returns each finished episode.

    Returns:
        One dict per finished episode: ``ranks``, ``wer``, ``size_ratio`` and ``reward``.
    """
    envs = gym.make_vec(
        "ShrinkML-v0",
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        target=target,
        budget=budget,
    )
    steps = envs.get_attr("steps")[0]
    logits = np.zeros((steps, envs.single_action_space.n))
    rng = np.random.default_rng(seed)
    baseline = None
    envs.reset(seed=seed)
    position = np.zeros(num_envs, dtype=int)  # step index within each env's episode
    trajectories: list[list[tuple[int, int, np.ndarray]]] = [[] for _ in range(num_envs)]
    finished: list[dict] = []
    while len(finished) < episodes:
        masks = envs.call("action_masks")
        actions = np.zeros(num_envs, dtype=int)
        for i in range(num_envs):
            probs = _masked_softmax(logits[position[i]], masks[i])
            actions[i] = rng.choice(len(probs), p=probs)
            trajectories[i].append((position[i], actions[i], probs))
        _, rewards, terminated, _, infos = envs.step(actions)
        position += 1
        for i in np.flatnonzero(terminated):
            final = infos["final_info"]  # vector infos: one array per key, indexed by env
            baseline = rewards[i] if baseline is None else 0.9 * baseline + 0.1 * rewards[i]
            advantage = rewards[i] - baseline
            for t, action, probs in trajectories[i]:  # REINFORCE on a softmax table
                grad = -probs
                grad[action] += 1.0
                logits[t] += learning_rate * advantage * grad
            finished.append({"ranks": list(final["ranks"][i]), "wer": float(final["wer"][i]),
                             "size_ratio": float(final["size_ratio"][i]), "reward": float(rewards[i])})
            trajectories[i], position[i] = [], 0
    envs.close()
    return finished[:episodes]


def _masked_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    z = np.where(mask, logits, -np.inf)
    z = np.exp(z - z[mask].max())
    return z / z.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--envs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.4)
    parser.add_argument("--target", default="toy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    history = run(args.episodes, args.envs, args.budget, args.target, seed=args.seed)
    best = max(history, key=lambda e: e["reward"])
    first = np.mean([e["reward"] for e in history[: len(history) // 4]])
    last = np.mean([e["reward"] for e in history[-len(history) // 4 :]])
    print(f"{len(history)} episodes; mean reward first quarter {first:.3f}, last quarter {last:.3f}")
    print(f"best: reward {best['reward']:.3f}, WER {best['wer']:.4f}, size ratio {best['size_ratio']:.3f}")


if __name__ == "__main__":
    main()
