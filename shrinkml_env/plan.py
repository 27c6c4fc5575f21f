"""The decision plan of an episode: which matrices each step sets, what each choice costs.

Everything an episode needs that does not depend on the agent is computed here once per
target: the SVD of every compressible matrix, the parameters each menu choice leaves at each
step, and the static observation features. Steps then cost a table lookup, and a terminal
evaluation a slice of precomputed factors written into a reusable model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from shrinkml_env.compression import (
    LayerSpec,
    MatrixSpec,
    SearchModel,
    SVDBank,
    all_matrices,
    compressible_parameter_count,
    describe_layers,
    export_factorised,
    keeps_dense,
    matrix_parameter_count,
    rank_for_fraction,
)
from shrinkml_env.compression.calibration import input_moments
from shrinkml_env.compression.latency import LatencyTable, current_key, load_or_measure
from shrinkml_env.compression.sequential import fit_sequential
from shrinkml_env.compression.svd import FACTORISATIONS
from shrinkml_env.search_space import RankMenu
from shrinkml_env.target import CompressionTarget

__all__ = ["STATIC_FEATURES", "CompressionPlan", "Exporter", "export_bank", "factorisation_bank"]

STATIC_FEATURES = (
    "position",
    "is_decoder",
    "bidirectional",
    "input_size",
    "hidden_size",
    "param_share",
    "break_even",
    "energy_1_8",
    "energy_1_4",
    "energy_1_2",
    "recurrent_share",
)
_ENERGY_FRACTIONS = (0.125, 0.25, 0.5)


class CompressionPlan:
    """Steps, costs and features of compressing ``target`` with ``menu``.

    Attributes:
        matrices: every compressible matrix, in episode order.
        units: per step, the indices (into ``matrices``) of the matrices it sets.
        unit_params: ``(steps, K)`` compressible parameters each action leaves at each step.
        unit_dense: ``(steps,)`` dense parameters per step.
        dense_total: all compressible parameters when dense.
        static_features: ``(steps, len(STATIC_FEATURES))`` in [0, 1].
    """

    def __init__(
        self,
        target: CompressionTarget,
        menu: RankMenu,
        granularity: str,
        device: torch.device | None = None,
        factorisation: str = "plain",
    ) -> None:
        self.target = target
        self.menu = menu
        layers = describe_layers(target.model, target.layers)
        self.matrices: tuple[MatrixSpec, ...] = all_matrices(layers)
        index = {m.key: i for i, m in enumerate(self.matrices)}
        if granularity == "layer":
            self.units = [[index[m.key] for m in layer.matrices] for layer in layers]
        else:
            self.units = [[i] for i in range(len(self.matrices))]
        self.factorisation = factorisation
        self._layers = layers
        self.bank = factorisation_bank(target, layers, factorisation)
        self.device = device
        self._search: SearchModel | None = None
        # rank_table[i, a]: rank of matrix i under action a (full rank when dense).
        self.rank_table = np.array(
            [[self._rank(m, menu.fraction(a)) for a in range(menu.size)] for m in self.matrices],
            dtype=np.int64,
        )
        matrix_params = np.array(
            [[matrix_parameter_count(m.rows, m.cols, int(r)) for r in row] for m, row in zip(self.matrices, self.rank_table)],
            dtype=np.float64,
        )
        self.unit_params = np.stack([matrix_params[u].sum(axis=0) for u in self.units])
        self.unit_dense = self.unit_params[:, -1].copy()
        self.dense_total = float(self.unit_dense.sum())
        self.static_features = self._static_features()

    @property
    def n_units(self) -> int:
        return len(self.units)

    @staticmethod
    def _rank(matrix: MatrixSpec, fraction: float | None) -> int:
        if fraction is None:
            return matrix.full_rank
        rank = rank_for_fraction(matrix, fraction)
        return matrix.full_rank if keeps_dense(matrix.rows, matrix.cols, rank) else rank

    def ranks(self, actions: Sequence[int]) -> tuple[int, ...]:
        """Rank of every matrix (full rank = dense) for one action per step."""
        if len(actions) != self.n_units:
            raise ValueError(f"need {self.n_units} actions, one per step; got {len(actions)}")
        ranks = [0] * len(self.matrices)
        for unit, action in zip(self.units, actions):
            for i in unit:
                ranks[i] = int(self.rank_table[i, action])
        return tuple(ranks)

    def rank_map(self, ranks: Sequence[int]) -> dict[str, int]:
        """Rank per matrix key, as the compression functions take it."""
        return {m.key: int(r) for m, r in zip(self.matrices, ranks)}

    def params(self, ranks: Sequence[int]) -> int:
        return compressible_parameter_count(self.matrices, self.rank_map(ranks))

    def export_bank(self, ranks: Sequence[int]) -> SVDBank:
        """The bank to export ``ranks`` (one per matrix) from: :attr:`bank`, except for
        ``sequential``, whose factors are refitted for this configuration on the target's
        calibration data (:func:`~shrinkml_env.compression.sequential.fit_sequential`)."""
        return export_bank(self.target, self._layers, self.rank_map(ranks), self.factorisation, self.bank)

    def export(self, ranks: Sequence[int]) -> torch.nn.Module:
        """The target model truly factorised at ``ranks`` (one per matrix) by this plan's method."""
        return export_factorised(self.target.model, self._layers, self.rank_map(ranks), self.export_bank(ranks))

    @property
    def search_model(self) -> SearchModel:
        """A reusable copy of the target model that takes truncated weights (built once)."""
        if self._search is None:
            self._search = SearchModel(self.target.model, self.bank)
            if self.device is not None:
                self._search.model.to(self.device)
        return self._search

    def evaluate(self, ranks: Sequence[int]) -> float:
        """Target error with ``ranks`` applied; only changed matrices are rewritten."""
        search = self.search_model
        search.apply(self.rank_map(ranks))
        return self.target.checked_error(search.model)

    def latency_options(self) -> dict[str, list[dict[str, int]]]:
        """Module path → the ranks (param name → rank) each action gives it, in action order.

        Needs one step per module (``granularity="layer"``, one LSTM layer per module): a
        module's latency depends on all its matrices together.
        """
        options: dict[str, list[dict[str, int]]] = {}
        for unit in self.units:
            paths = {self.matrices[i].module_path for i in unit}
            whole = [i for i, m in enumerate(self.matrices) if m.module_path in paths]
            if len(paths) != 1 or sorted(whole) != sorted(unit):
                raise ValueError(
                    "a latency budget needs one step per whole module (granularity='layer', one LSTM "
                    "layer per module): a module's latency depends on all its matrices together"
                )
            path = paths.pop()
            options[path] = [
                {self.matrices[i].param_name: int(self.rank_table[i, a]) for i in unit}
                for a in range(self.menu.size)
            ]
        return options

    def latency_table(self, batch_size: int, path: str | None = None, repeats: int = 5) -> LatencyTable:
        """The target's latency table at ``batch_size`` for this menu: read from ``path`` (or
        the default cache) when it was measured under today's conditions, else measured."""
        inference = self.target.inference
        if inference is None:
            raise ValueError(
                f"a latency budget needs an inference workload, and target {self.target.name!r} has "
                "none (CompressionTarget.inference); use the size budget or give it one"
            )
        key = current_key(batch_size=batch_size, model=self.target.fingerprint,
                          workload=self.target.inference_fingerprint,
                          device=str(self.device or "cpu"))
        layers = describe_layers(self.target.model, self.target.layers)
        return load_or_measure(self.target.model, layers, self.latency_options(),
                               lambda model: inference(model, batch_size), key, bank=self.bank, path=path,
                               repeats=repeats)

    def latency_costs(self, table: LatencyTable) -> np.ndarray:
        """``(steps, K)`` milliseconds each action gives each step's module, from ``table``."""
        options = self.latency_options()
        return np.array([[table.entry(path, ranks) for ranks in rows] for path, rows in options.items()])

    def predicted_latency_ms(self, table: LatencyTable, ranks: Sequence[int]) -> float:
        """``table``'s predicted latency of the model at ``ranks`` (one per matrix)."""
        rank_map: dict[str, dict[str, int]] = {}
        for m, r in zip(self.matrices, ranks):
            rank_map.setdefault(m.module_path, {})[m.param_name] = int(r)
        return table.rest_ms + sum(table.entry(path, module) for path, module in rank_map.items())

    def _static_features(self) -> np.ndarray:
        n = self.n_units
        features = np.zeros((n, len(STATIC_FEATURES)))
        inputs, hiddens = np.zeros(n), np.zeros(n)
        for t, unit in enumerate(self.units):
            mats = [self.matrices[i] for i in unit]
            recurrent = [m for m in mats if m.kind == "hh"]
            inputs[t] = max(m.cols for m in mats if m.kind != "hh") if len(recurrent) < len(mats) else 0
            hiddens[t] = recurrent[0].cols if recurrent else max(m.rows for m in mats)
            dense = sum(m.rows * m.cols for m in mats)
            weight = np.array([m.rows * m.cols for m in mats], dtype=np.float64) / dense
            energies = [
                float(sum(w * self._energy(m, f) for w, m in zip(weight, mats)))
                for f in _ENERGY_FRACTIONS
            ]
            break_even = sum(w * m.rows * m.cols / (m.rows + m.cols) / m.full_rank for w, m in zip(weight, mats))
            role = self.target.roles.get(mats[0].module_path, "")
            features[t] = [
                t / max(n - 1, 1),
                1.0 if role == "decoder" else 0.0,
                1.0 if any(m.direction == 1 for m in mats) else 0.0,
                0.0,  # input size, normalised below
                0.0,  # hidden size, normalised below
                dense / self.dense_total,
                break_even,
                *energies,
                sum(m.rows * m.cols for m in recurrent) / dense,
            ]
        features[:, 3] = inputs / max(inputs.max(), 1)
        features[:, 4] = hiddens / max(hiddens.max(), 1)
        return np.clip(features, 0.0, 1.0)

    def _energy(self, matrix: MatrixSpec, fraction: float) -> float:
        """Share of the squared singular values kept at ``fraction`` of full rank."""
        s2 = self.bank.singular_values(matrix.key).double() ** 2
        return float(s2[: rank_for_fraction(matrix, fraction)].sum() / s2.sum().clamp(min=1e-30))


class Exporter:
    """Exports ``target`` truly factorised at any ranks by any factorisation method, as
    :meth:`CompressionPlan.export` does, without a menu: for scoring configurations that
    searches chose. Banks are computed once per method; the last export is kept, so asking
    again for the same configuration (a running best that did not change) costs nothing,
    which matters for ``sequential``, whose every export is a refit. Exported models are
    shared with that cache: evaluate them, do not train them in place."""

    def __init__(self, target: CompressionTarget) -> None:
        self.target = target
        self.layers = describe_layers(target.model, target.layers)
        self.matrices: tuple[MatrixSpec, ...] = all_matrices(self.layers)
        self._banks: dict[str, SVDBank] = {}
        self._last: tuple[tuple, torch.nn.Module] | None = None

    def rank_map(self, ranks: Sequence[int] | Mapping[str, int]) -> dict[str, int]:
        """Rank per matrix key, from one rank per matrix (episode order) or a mapping."""
        if isinstance(ranks, Mapping):
            return {str(k): int(r) for k, r in ranks.items()}
        if len(ranks) != len(self.matrices):
            raise ValueError(f"need one rank per matrix ({len(self.matrices)}); got {len(ranks)}")
        return {m.key: int(r) for m, r in zip(self.matrices, ranks)}

    def export(self, ranks: Sequence[int] | Mapping[str, int], factorisation: str) -> torch.nn.Module:
        """The model at ``ranks`` by ``factorisation`` (one of ``FACTORISATIONS``)."""
        rank_map = self.rank_map(ranks)
        key = (factorisation, *sorted(rank_map.items()))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        if factorisation not in self._banks:
            self._banks[factorisation] = factorisation_bank(self.target, self.layers, factorisation)
        bank = export_bank(self.target, self.layers, rank_map, factorisation, self._banks[factorisation])
        model = export_factorised(self.target.model, self.layers, rank_map, bank)
        self._last = (key, model)
        return model


def export_bank(target: CompressionTarget, layers: Sequence[LayerSpec], ranks: Mapping[str, int],
                factorisation: str, bank: SVDBank | None = None) -> SVDBank:
    """The bank to export ``target`` at ``ranks`` (rank per matrix key) by ``factorisation``:
    its search bank (``bank``, computed when None), refitted for these ranks when
    ``sequential``."""
    bank = bank if bank is not None else factorisation_bank(target, layers, factorisation)
    if factorisation != "sequential":
        return bank
    return fit_sequential(target.model, layers, ranks, target.calibrate, bank)


def factorisation_bank(target: CompressionTarget, layers: Sequence[LayerSpec], factorisation: str) -> SVDBank:
    """The SVD bank of ``target`` by ``factorisation`` (``whitened`` runs its calibration;
    ``sequential`` searches with the ``whitened`` bank and refits at export)."""
    if factorisation not in FACTORISATIONS:
        raise ValueError(f"unknown factorisation {factorisation!r}; accepted: {', '.join(FACTORISATIONS)}")
    if factorisation == "plain":
        return SVDBank.compute(target.model, layers)
    if target.calibrate is None:
        raise ValueError(
            f"factorisation {factorisation!r} needs calibration data, and target "
            f"{target.name!r} has none (CompressionTarget.calibrate); use 'plain' or give it one"
        )
    if target._moments is None:  # calibrated once per target, whichever env asks first
        target._moments = input_moments(target.model, layers, target.calibrate)
    moments = target._moments
    return SVDBank.compute(target.model, layers, method="whitened", moments=moments)
