"""Searches whose terminal evaluations run on a real local Ray cluster (shared by the module)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from agents.config import SearchConfig  # noqa: E402
from agents.run_dir import RunDir  # noqa: E402
from agents.search import run_search  # noqa: E402
from agents.targets import SearchTarget, toy_search_target  # noqa: E402
from agents.workers import RayPool  # noqa: E402
from shrinkml_env.env import ShrinkMLEnv  # noqa: E402
from shrinkml_env.target import CompressionTarget, toy_target  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def cluster():
    # One cluster for the whole module: starting Ray costs seconds.
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _records(run_dir: Path) -> list[tuple[tuple[int, ...], float]]:
    return [(tuple(r.ranks), r.search_wer) for r in RunDir(run_dir).evaluations()]


@pytest.mark.parametrize("agent", ["random", "greedy"])
def test_batched_baselines_give_the_serial_result(tmp_path, agent):
    serial = run_search(SearchConfig(agent=agent, target="toy", budget=0.5, evaluations=12), tmp_path / "serial")
    pooled = run_search(SearchConfig(agent=agent, target="toy", budget=0.5, evaluations=12, workers=2),
                        tmp_path / "pooled")
    assert _records(tmp_path / "pooled") == _records(tmp_path / "serial")
    assert pooled.best.ranks == serial.best.ranks and pooled.best.test_wer == serial.best.test_wer


@pytest.mark.parametrize("agent", ["tpe", "ppo"])
def test_pooled_agents_spend_exactly_their_budget_on_unique_configurations(tmp_path, agent):
    result = run_search(SearchConfig(agent=agent, target="toy", budget=0.5, evaluations=10, workers=2),
                        tmp_path / "run")
    records = _records(tmp_path / "run")
    assert result.evaluations == len(records) == 10
    assert len({ranks for ranks, _ in records}) == 10
    # Every error is the one the driver's own model gives that configuration.
    env = ShrinkMLEnv(target=toy_target(), budget=0.5, factorisation="whitened")
    for ranks, error in records[:3]:
        assert env.plan.evaluate(ranks) == pytest.approx(error)


def test_a_resumed_pooled_search_decodes_nothing_twice(tmp_path, monkeypatch):
    evaluated = []
    original = RayPool.evaluate

    def counting(self, batch):
        evaluated.extend(tuple(r) for r in batch)
        return original(self, batch)

    monkeypatch.setattr(RayPool, "evaluate", counting)
    config = SearchConfig(agent="random", target="toy", budget=0.5, evaluations=6, workers=2)
    run_search(config, tmp_path / "run")
    first = list(evaluated)
    run_search(SearchConfig(**{**config.to_dict(), "evaluations": 10, "sb3": ()}), tmp_path / "run")
    assert len(first) == 6 and len(evaluated) == 10
    assert len(set(evaluated)) == 10  # the resumed part paid only for new configurations


class _DiesOnce:
    """A toy error function whose process exits the first time it is called (marker file)."""

    def __init__(self, evaluate, marker: str) -> None:
        self.evaluate, self.marker = evaluate, marker

    def __call__(self, model) -> float:
        if os.environ.get("SHRINKML_DRIVER") != "1" and not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os._exit(1)
        return self.evaluate(model)


def test_a_worker_that_dies_mid_search_costs_no_evaluation_and_no_duplicate(tmp_path, monkeypatch):
    monkeypatch.setenv("SHRINKML_DRIVER", "1")  # the driver's own baseline evaluation never dies
    kit = toy_search_target()
    dying = CompressionTarget(model=kit.target.model, layers=kit.target.layers,
                              evaluate=_DiesOnce(kit.target.evaluate, str(tmp_path / "marker")),
                              name=kit.target.name, data_fingerprint=kit.target.data_fingerprint,
                              roles=kit.target.roles, calibrate=kit.target.calibrate,
                              calibration_fingerprint=kit.target.calibration_fingerprint)
    config = SearchConfig(agent="random", target="toy", budget=0.5, evaluations=8, workers=2)
    run_search(config, tmp_path / "dying", SearchTarget(dying, kit.test_error, kit.save_model, kit.test_description))
    assert (tmp_path / "marker").read_text() == "died"  # a worker really died
    serial = run_search(SearchConfig(agent="random", target="toy", budget=0.5, evaluations=8), tmp_path / "serial")
    assert _records(tmp_path / "dying") == _records(tmp_path / "serial")
    assert serial.evaluations == 8


def test_workers_refuse_a_target_that_is_not_the_drivers_and_dqn(tmp_path):
    env = ShrinkMLEnv(target=toy_target(), budget=0.5)
    other = toy_target(seed=1)
    pool = RayPool(env.target, workers=1)
    try:
        assert pool.evaluate([env.plan.ranks([1] * env.steps)]) == [pytest.approx(env.plan.evaluate(env.plan.ranks([1] * env.steps)))]
    finally:
        pool.close()
    assert other.fingerprint != env.target.fingerprint
    with pytest.raises(ValueError, match="dqn learns from whole episodes one env at a time"):
        SearchConfig(agent="dqn", target="toy", workers=2)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        SearchConfig(target="toy", workers=0)
    with pytest.raises(ValueError, match="worker_gpus must be a number of GPUs >= 0"):
        SearchConfig(target="toy", workers=2, worker_gpus=-0.5)
    assert json.loads(json.dumps(SearchConfig(target="toy", workers=2).to_dict()))["workers"] == 2


def test_rllib_ppo_trains_on_the_toy_target_through_its_env_runners():
    import math

    pytest.importorskip("ray.rllib")
    from examples.rllib_ppo import build_algorithm

    algo = build_algorithm({"target": "toy", "budget": 0.5}, runners=1, episodes_per_iteration=4)
    try:
        results = [algo.train() for _ in range(2)]
    finally:
        algo.stop()
    runners = results[-1]["env_runners"]
    assert runners["num_episodes_lifetime"] == 8  # whole episodes of ShrinkML-v0, 4 per iteration
    assert math.isfinite(runners["episode_return_mean"])
    assert runners["episode_len_mean"] == 4  # the toy target's four compressible layers
