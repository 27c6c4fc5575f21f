"""Execution routes of an exported model: factorised where that runs faster, multiplied back where not.

Two thin factors are smaller than their matrix, but not always faster: at the shipped model's
hidden sizes a factorised LSTM near the break-even rank runs slower than oneDNN's fused dense
kernel (``benchmarks/results/lowrank.json``: hidden 256 at rank 1/4 runs 0.85× as fast), so a
model searched under a size budget can decode more slowly than the dense one. For a user who
wants the small checkpoint *and* the speed, :func:`fastest_routes` reads a latency table
measured on the deployment machine (:mod:`~shrinkml_env.compression.latency`) and replaces each
factorised module that the table prices above its dense form with the stock module holding
``U @ V``. The checkpoint on disk stays factorised; in memory those layers are dense again,
which is the price of their speed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from shrinkml_env.compression.factorised import (
    FactorisedLinear,
    FactorisedLSTMCell,
    FactorisedModule,
)
from shrinkml_env.compression.factorised_lstm import FactorisedLSTM
from shrinkml_env.compression.latency import LatencyTable
from shrinkml_env.compression.layers import get_module, set_module

__all__ = ["ROUTES", "fastest_routes", "stock_module"]

ROUTES = ("dense", "factorised", "dense product")


def stock_module(module: FactorisedModule) -> nn.Module:
    """The stock ``nn.LSTM`` / ``nn.LSTMCell`` / ``nn.Linear`` computing the same function, every
    factorised matrix multiplied back (``U @ V``)."""
    config = {k: v for k, v in module.config().items() if k != "ranks"}
    if isinstance(module, FactorisedLSTM):
        stock: nn.Module = nn.LSTM(**config)
    elif isinstance(module, FactorisedLSTMCell):
        stock = nn.LSTMCell(**config)
    elif isinstance(module, FactorisedLinear):
        stock = nn.Linear(**config)
    else:
        raise TypeError(f"no stock module for {type(module).__name__}; known: FactorisedLSTM, "
                        "FactorisedLSTMCell, FactorisedLinear")
    reference = next(module.parameters())
    stock = stock.to(reference.device, reference.dtype)
    with torch.no_grad():
        for name, param in stock.named_parameters():
            param.copy_(module.dense_matrix(name) if name.startswith("weight") else getattr(module, name))
    if isinstance(stock, nn.LSTM):
        stock.flatten_parameters()
    return stock.train(module.training)


def fastest_routes(model: nn.Module, table: LatencyTable) -> tuple[nn.Module, dict[str, str]]:
    """A copy of an exported ``model`` whose slower-than-dense factorised modules are multiplied back.

    Args:
        model: an exported model (:func:`~shrinkml_env.compression.export.export_factorised`
            or :func:`~shrinkml_env.compression.export.load_factorised`); not modified.
        table: a latency table of the *dense* model this one was exported from, measured
            where it will run (:meth:`shrinkml_env.plan.CompressionPlan.latency_table`), with
            an entry for each module's ranks.

    Returns:
        ``(routed copy, {module path: route})``, route ``"dense"`` (never factorised),
        ``"factorised"`` or ``"dense product"`` (factorised on disk, multiplied back here).

    Raises:
        KeyError: the table has no entry for a module's ranks (a table of another rank menu).
    """
    routed = copy.deepcopy(model)
    routes: dict[str, str] = {}
    for path in table.entries:
        module = get_module(routed, path)
        if not isinstance(module, FactorisedModule):
            routes[path] = "dense"
            continue
        stock = stock_module(module)
        full = {name: min(p.shape) for name, p in stock.named_parameters() if name.startswith("weight")}
        if table.entry(path, {**full, **module.ranks}) > table.entry(path, full):
            set_module(routed, path, stock)
            routes[path] = "dense product"
        else:
            routes[path] = "factorised"
    return routed, routes
