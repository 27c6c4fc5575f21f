"""Export a truly factorised model, and save / load it.

Design: the checkpoint holds the factorised model's ``state_dict`` plus a
*structure* record: for every replaced submodule its path, class name and
``config()`` (ranks included). It does not pickle code. How to build the
*un-compressed* architecture is model-specific, so :func:`load_factorised`
takes a ``build_dense`` callable from the caller (e.g. the ASR package's model
builder with the config stored in ``meta``); the loader builds the dense
model, swaps the recorded submodules for freshly built factorised ones and
loads the weights strictly. Any model whose factorised submodules are the
classes of this package round-trips; nothing else needs registering.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from shrinkml_env.atomic import atomic_file
from shrinkml_env.compression.factorised import (
    FactorisedLinear,
    FactorisedLSTMCell,
    FactorisedModule,
)
from shrinkml_env.compression.factorised_lstm import FactorisedLSTM
from shrinkml_env.compression.layers import LayerSpec, all_matrices, get_module, set_module
from shrinkml_env.compression.ranks import validate_ranks
from shrinkml_env.compression.size import keeps_dense
from shrinkml_env.compression.svd import SVDBank

__all__ = ["CHECKPOINT_FORMAT", "LoadedFactorised", "export_factorised", "factorised_structure",
           "factorised_twin", "load_factorised", "save_factorised"]

CHECKPOINT_FORMAT = "shrinkml-factorised/1"
_CLASSES: dict[str, type[FactorisedModule]] = {
    cls.__name__: cls for cls in (FactorisedLSTM, FactorisedLSTMCell, FactorisedLinear)
}
_STOCK_TO_FACTORISED = {nn.LSTM: FactorisedLSTM, nn.LSTMCell: FactorisedLSTMCell,
                        nn.Linear: FactorisedLinear}


class LoadedFactorised(NamedTuple):
    """What :func:`load_factorised` returns."""

    model: nn.Module
    meta: dict[str, Any]


def export_factorised(
    model: nn.Module,
    layers: Sequence[LayerSpec],
    ranks: Mapping[str, int],
    bank: SVDBank | None = None,
) -> nn.Module:
    """A deep copy of ``model`` with the ranked matrices truly factorised.

    A module is replaced by its factorised twin (:class:`FactorisedLSTM`,
    :class:`FactorisedLSTMCell`, :class:`FactorisedLinear`) only when at least
    one of its matrices has a rank below break-even; matrices at or above it stay
    dense inside the twin, and modules with nothing to factorise stay stock.

    Args:
        model: The dense model (not modified).
        layers: From :func:`~shrinkml_env.compression.layers.describe_layers` on ``model``.
        ranks: Rank per matrix key; matrices not named stay dense.
        bank: SVDs of ``model`` (computed here for the needed matrices if None).

    Returns:
        The factorised model, in the same train/eval mode as ``model``.

    Raises:
        ValueError: On unknown matrix keys or ranks outside ``[1, min(m, n)]``.
    """
    matrices = all_matrices(layers)
    resolved = validate_ranks(matrices, ranks)
    if bank is None:
        bank = SVDBank.compute(model, layers)
    exported = copy.deepcopy(model)
    by_module: dict[str, dict[str, tuple]] = {}
    for spec in matrices:
        by_module.setdefault(spec.module_path, {})
        rank = resolved[spec.key]
        if not keeps_dense(spec.rows, spec.cols, rank):
            by_module[spec.module_path][spec.param_name] = bank.factors(spec.key, rank)
    for path, factors in by_module.items():
        if not factors:
            continue
        exported = set_module(exported, path, factorised_twin(get_module(exported, path), factors))
    return exported


def factorised_twin(stock: nn.Module, factors: Mapping[str, tuple]) -> FactorisedModule:
    """The factorised replacement of one stock module (``nn.LSTM``, ``nn.LSTMCell``,
    ``nn.Linear``) with ``{param_name: (u, v)}`` factors, in the stock module's mode."""
    cls = _STOCK_TO_FACTORISED[type(stock)]
    replacement = cls.from_dense(stock, factors)
    replacement.train(stock.training)
    return replacement


def factorised_structure(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module_path: {"class": name, "config": {...}}}`` of every factorised submodule."""
    return {
        path: {"class": type(module).__name__, "config": module.config()}
        for path, module in model.named_modules()
        if isinstance(module, FactorisedModule)
    }


def save_factorised(path: str | os.PathLike, model: nn.Module, meta: Mapping[str, Any] | None = None
                    ) -> None:
    """Write ``model`` with its factorised structure and ``meta`` (atomically).

    Args:
        path: Destination file.
        model: A model from :func:`export_factorised` (or loaded by :func:`load_factorised`).
        meta: Caller data needed to rebuild the dense architecture (e.g. its config)
            plus anything else worth recording (ranks, size ratio, WER). Must hold
            only plain Python values and tensors so it loads with ``weights_only``.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "structure": factorised_structure(model),
        "state_dict": model.state_dict(),
        "meta": dict(meta or {}),
    }
    with atomic_file(path) as f:
        torch.save(payload, f)


def load_factorised(
    path: str | os.PathLike,
    build_dense: Callable[[], nn.Module] | Callable[[Mapping[str, Any]], nn.Module],
    *,
    map_location: str | torch.device = "cpu",
) -> LoadedFactorised:
    """Rebuild a factorised model from :func:`save_factorised`'s file.

    Args:
        path: The checkpoint.
        build_dense: Builds the un-compressed architecture (weights are overwritten).
            Called with the checkpoint's ``meta`` if it accepts one argument, else
            with none.
        map_location: Where to load tensors.

    Returns:
        ``(model, meta)``; the model is in eval mode.

    Raises:
        ValueError: If the file is not a factorised checkpoint, or the dense model
            lacks a recorded submodule.
    """
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{str(path)!r} is not a {CHECKPOINT_FORMAT!r} checkpoint (format: {found!r})")
    meta = payload["meta"]
    model = build_dense(meta) if _takes_argument(build_dense) else build_dense()
    for module_path, record in payload["structure"].items():
        get_module(model, module_path)  # raises a clear error if the path is missing
        cls = _CLASSES.get(record["class"])
        if cls is None:
            raise ValueError(f"unknown factorised class {record['class']!r} at {module_path!r}; "
                             f"known: {sorted(_CLASSES)}")
        model = set_module(model, module_path, cls(**record["config"]))
    model.load_state_dict(payload["state_dict"], strict=True)
    return LoadedFactorised(model.to(map_location).eval(), meta)


def _takes_argument(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    return bool(positional) or any(p.kind is p.VAR_POSITIONAL for p in params)
