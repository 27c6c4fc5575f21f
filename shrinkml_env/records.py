"""Episode records: what was chosen, what it scored, and enough context to replay it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shrinkml_env.env import ShrinkMLEnv

__all__ = ["EpisodeRecord"]


@dataclass(frozen=True)
class EpisodeRecord:
    """One finished episode, serialisable to JSON and replayable with ``env.apply``/``validate``."""

    target: str
    target_fingerprint: str
    data_fingerprint: str
    granularity: str
    menu: tuple[float, ...]
    budget: float
    constraint: str
    reward_name: str
    actions: tuple[int, ...]
    ranks: tuple[int, ...]
    wer: float
    size_ratio: float
    reward: float

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("menu", "actions", "ranks"):
            data[key] = list(data[key])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeRecord:
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(data))
        if missing:
            raise ValueError(f"episode record lacks the fields {missing}")
        values = {k: data[k] for k in names}
        for key in ("menu", "actions", "ranks"):
            values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> EpisodeRecord:
        return cls.from_dict(json.loads(text))

    def mismatches(self, env: ShrinkMLEnv) -> list[str]:
        """Why this record cannot be replayed on ``env`` (empty when it can)."""
        expected = {
            "target_fingerprint": env.target.fingerprint,
            "data_fingerprint": env.evaluation_fingerprint,
            "granularity": env.granularity,
            "menu": env.menu.fractions,
            "budget": env.budget,
            "constraint": env.constraint,
            "reward_name": env.reward_fn.name,
        }
        problems = [
            f"{key} is {getattr(self, key)!r} in the record but {value!r} in the env"
            for key, value in expected.items()
            if getattr(self, key) != value
        ]
        if len(self.actions) != env.steps:
            problems.append(f"the record has {len(self.actions)} actions; the env takes {env.steps}")
        return problems
