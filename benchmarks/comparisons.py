"""Paired test-set comparisons of the configurations a search study found.

Each final configuration is set against **uniform compression at equal or larger size** (the
smallest common rank fraction whose size is at least the configuration's, so uniform never
has fewer parameters) and against the **best baseline**'s configuration of the same seed.
Both sides are exported truly factorised by the search's own factorisation method and decoded
on the test split; the WER difference comes with a paired bootstrap interval over test
utterances (:func:`asr.metrics.paired_wer_difference`).

The agent to recommend is chosen apart from all this, on the held-out dev pool
(:func:`choose_agent`); test is for the tables.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents.config import RL_AGENTS
from benchmarks.search_study import ScoreStore, memo_store, weights_fingerprint

__all__ = ["UniformComparison", "best_baseline", "choose_agent", "compare_with_best_baseline", "compare_with_uniform",
           "complete_median"]


class UniformComparison:
    """Paired test-set comparisons: against uniform at equal or larger size, or another configuration.

    Models are exported by :class:`shrinkml_env.plan.Exporter` and scored by ``evaluate``
    (which returns an object with ``utterance_errors()``, as :class:`asr.evaluate.Evaluation`).
    Per-utterance errors are memoised by method and rank map, so a uniform opponent that two
    seeds share is decoded once; with ``store`` (a folder) they are also kept there
    (:class:`benchmarks.search_study.ScoreStore`), so a resumed study does not decode them again.
    """

    def __init__(self, target: Any, evaluate: Callable[[Any], Any], resamples: int = 2000,
                 store: Path | None = None) -> None:
        from shrinkml_env.plan import Exporter

        self.exporter = Exporter(target)
        self.model, self.matrices = target.model, self.exporter.matrices
        self.evaluate, self.resamples = evaluate, resamples
        self._store = ScoreStore(store)
        self._errors: dict[str, tuple[list[int], list[int]]] = {}
        for key, record in self._store.load().items():
            try:
                self._errors[key] = (list(record["errors"]), list(record["words"]))
            except (KeyError, TypeError):
                continue  # not a record of this kind: decoded again

    @classmethod
    def on_test_set(cls, checkpoint: str, test_utterances: int | None,
                    runs_dir: str | os.PathLike[str] | None = None) -> UniformComparison:
        """For an ASR checkpoint (``"default"``: the shipped one), on the default test split;
        with ``runs_dir``, its decodes are kept in a store there named by model and test set."""
        from agents.targets import make_search_target

        kit = make_search_target(checkpoint, test_utterances=test_utterances)
        kind = f"paired-{weights_fingerprint(kit.target.model)[:12]}-{test_utterances or 'all'}"
        return cls(kit.target, kit.test_error.evaluate, store=memo_store(runs_dir, kind, kit.test_error))

    def _utterance_errors(self, ranks: dict[str, int], factorisation: str) -> tuple[list[int], list[int]]:
        key = json.dumps([factorisation, sorted(ranks.items())])
        if key not in self._errors:
            errors, words = self.evaluate(self.exporter.export(ranks, factorisation)).utterance_errors()
            self._errors[key] = (list(errors), list(words))
            self._store.add(key, errors=self._errors[key][0], words=self._errors[key][1])
        return self._errors[key]

    def _paired(self, a: dict[str, int], b: dict[str, int], factorisation: str) -> dict[str, Any]:
        from asr.metrics import paired_wer_difference

        errors, words = self._utterance_errors(a, factorisation)
        other, _ = self._utterance_errors(b, factorisation)
        diff = paired_wer_difference(errors, other, words, resamples=self.resamples)
        return {"difference": diff.difference, "low": diff.low, "high": diff.high, "confidence": diff.confidence,
                "utterances": diff.utterances, "wer_a": diff.wer_a, "wer_b": diff.wer_b}

    def __call__(self, ranks: Sequence[int], *, factorisation: str) -> dict[str, Any]:
        """``ranks`` (one per matrix) against uniform at equal or larger size (difference = ranks − uniform)."""
        from shrinkml_env.compression import size_ratio, uniform_ranks_at_size

        chosen = self.exporter.rank_map(ranks)
        size = size_ratio(self.matrices, chosen)
        uniform, uniform_size = uniform_ranks_at_size(self.matrices, size, at_least=True)
        p = self._paired(chosen, uniform, factorisation)
        return {"size_ratio": size, "uniform_size_ratio": uniform_size, "test_wer": p.pop("wer_a"),
                "uniform_test_wer": p.pop("wer_b"), **p}

    def versus(self, ranks: Sequence[int], other: Sequence[int], *, factorisation: str) -> dict[str, Any]:
        """``ranks`` against ``other`` (difference = ranks − other), paired over test utterances."""
        from shrinkml_env.compression import size_ratio

        a, b = self.exporter.rank_map(ranks), self.exporter.rank_map(other)
        p = self._paired(a, b, factorisation)
        return {"size_ratio": size_ratio(self.matrices, a), "other_size_ratio": size_ratio(self.matrices, b),
                "test_wer": p.pop("wer_a"), "other_test_wer": p.pop("wer_b"), **p}


def _factorisation(arm: dict[str, Any]) -> str:
    return arm.get("config", {}).get("factorisation", "plain")  # studies from before the option: plain SVD


def _tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"runs": rows, "median_difference": statistics.median(r["difference"] for r in rows),
            "seeds_better": sum(r["difference"] < 0 for r in rows),
            "seeds_better_beyond_interval": sum(r["high"] < 0 for r in rows), "seeds": len(rows)}


def compare_with_uniform(arms: dict[str, Any], agents: Sequence[str], compare: UniformComparison) -> dict[str, Any]:
    """Per agent of ``agents`` in ``arms``: each seed's final configuration against uniform at
    equal or larger size. Returns ``{agent: {"runs", "median_difference", "seeds_better",
    "seeds_better_beyond_interval", "seeds"}}``."""
    out: dict[str, Any] = {}
    for agent in agents:
        if agent not in arms:
            continue
        method = _factorisation(arms[agent])
        rows = [{"seed": run["seed"], **compare(run["best"]["ranks"], factorisation=method)}
                for run in arms[agent]["runs"] if run["best"]]
        if rows:
            out[agent] = _tally(rows)
    return out


def complete_median(spread: dict[str, Any] | None, runs: int) -> float | None:
    """A spread's median only when every one of ``runs`` runs is in it: a median over the
    seeds that found something would flatter an agent that mostly found nothing."""
    if not spread or spread.get("median") is None or spread.get("n") != runs:
        return None
    return spread["median"]


def _final_dev_spread(summary: dict[str, Any]) -> dict[str, Any] | None:
    dev = summary.get("dev_pool_wer") or {}
    return dev[max(dev, key=int)] if dev else None


def _agent_of(label: str, arm: dict[str, Any]) -> str:
    """The agent an arm ran: its recorded config's, else read off its label (``AGENT+warm:SCORE``)."""
    return (arm.get("config") or {}).get("agent") or label.partition(":")[0].partition("+")[0]


def best_baseline(arms: dict[str, Any], agent: str) -> tuple[str, str] | None:
    """The opponent an RL agent has to beat: the arm other than ``agent``, uniform, the
    long-evolution reference and the RL agents with the lowest median WER over all its seeds,
    on the dev pool at the last scored count where the study scored one, else on test.

    Returns:
        ``(label, "dev pool" or "test")``, or None when no arm qualifies.
    """
    candidates = {label: arm for label, arm in arms.items()
                  if label not in (agent, "uniform", "reference") and _agent_of(label, arm) not in RL_AGENTS}
    on_dev = all(_final_dev_spread(a["summary"]) for a in candidates.values()) and candidates
    scored = []
    for label, arm in candidates.items():
        s = arm["summary"]
        value = complete_median(_final_dev_spread(s) if on_dev else s["test_wer"], s["runs"])
        if value is not None:
            scored.append((value, label))
    return (min(scored)[1], "dev pool" if on_dev else "test") if scored else None


def compare_with_best_baseline(arms: dict[str, Any], agent: str, compare: UniformComparison) -> dict[str, Any] | None:
    """Each seed's final configuration of ``agent`` against the best baseline's of the same
    seed (a baseline that ran once, being deterministic, stands for every seed), paired on
    the test set. Seeds without a partner are listed in ``unpaired_seeds``."""
    chosen = best_baseline(arms, agent)
    if agent not in arms or chosen is None:
        return None
    opponent, chosen_on = chosen
    their_runs = arms[opponent]["runs"]
    theirs = {run["seed"]: run["best"] for run in their_runs if run["best"]}
    rows, unpaired = [], []
    for run in arms[agent]["runs"]:
        other = theirs.get(run["seed"]) if len(their_runs) > 1 else next(iter(theirs.values()), None)
        if run["best"] and other:
            rows.append({"seed": run["seed"], **compare.versus(run["best"]["ranks"], other["ranks"],
                                                               factorisation=_factorisation(arms[agent]))})
        else:
            unpaired.append(run["seed"])
    if not rows:
        return None
    return {"baseline": opponent, "baseline_chosen_on": chosen_on, "unpaired_seeds": unpaired, **_tally(rows)}


def choose_agent(payload: dict[str, Any]) -> dict[str, Any]:
    """The agent to recommend, on the held-out dev pool, at each dev-pool evaluation count:
    the lowest mean over budgets of the median over seeds (all of an agent's seeds must have
    a configuration within the budget); a tie (two agents' medians are often the very same
    configuration) goes to the lower mean over budgets of the mean over seeds, then the name.
    Only agents that ran at every budget compete (uniform and the reference do not).
    Returns ``{count: {"chosen", "mean_dev_pool_wer", "mean_of_seed_means", "budgets"}}``;
    empty when the study scored no dev pool."""
    budgets = payload.get("budgets") or {}
    counts = payload.get("settings", {}).get("dev_pool_at") or []
    if not budgets or not counts:
        return {}
    labels = set.intersection(*(set(block["arms"]) for block in budgets.values())) - {"uniform", "reference"}
    out: dict[str, Any] = {}
    for count in counts:
        means, seed_means = {}, {}
        for label in labels:
            medians, averages = [], []
            for block in budgets.values():
                arm = block["arms"][label]
                s = arm["summary"]
                medians.append(complete_median((s.get("dev_pool_wer") or {}).get(str(count)), s["runs"]))
                scores = [(run.get("dev_pool") or {}).get(str(count)) for run in arm.get("runs", [])]
                averages.append(statistics.mean(x["dev_pool_wer"] for x in scores)
                                if scores and all(scores) else medians[-1])
            if all(m is not None for m in medians):
                means[label], seed_means[label] = statistics.mean(medians), statistics.mean(averages)
        if means:
            ranking = sorted(means, key=lambda k: (means[k], seed_means[k], k))
            out[str(count)] = {"chosen": ranking[0], "mean_dev_pool_wer": {k: means[k] for k in ranking},
                               "mean_of_seed_means": {k: seed_means[k] for k in ranking},
                               "budgets": sorted(budgets, key=float)}
    return out
