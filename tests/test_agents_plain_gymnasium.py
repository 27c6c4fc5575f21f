"""The plain-Gymnasium example: a vector env and a policy loop without Stable-Baselines3."""

import importlib.util
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plain_gymnasium.py"


def load_example():
    spec = importlib.util.spec_from_file_location("plain_gymnasium", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vector_env_policy_loop_runs_and_respects_the_budget():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        history = load_example().run(episodes=12, num_envs=2, budget=0.4, seed=0)
    finally:
        torch.set_num_threads(threads)
    assert len(history) == 12
    assert all(e["size_ratio"] <= 0.4 + 1e-9 and 0 <= e["wer"] <= 1 for e in history)
    assert all(len(e["ranks"]) == 11 for e in history)
