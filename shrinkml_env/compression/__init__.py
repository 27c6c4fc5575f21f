"""Model-agnostic SVD low-rank factorisation of LSTM / LSTMCell / Linear layers.

Pipeline: :func:`describe_layers` (what can be compressed) -> :class:`SVDBank`
(every SVD once) -> :class:`SearchModel` (truncated reconstructions in the stock
modules, for fast evaluation during the search) -> :func:`export_factorised`
(truly factorised modules) -> :func:`save_factorised` / :func:`load_factorised`.
Sizes are counted only by :mod:`~shrinkml_env.compression.size`.
"""

from shrinkml_env.compression.export import (
    CHECKPOINT_FORMAT,
    LoadedFactorised,
    export_factorised,
    factorised_structure,
    load_factorised,
    save_factorised,
)
from shrinkml_env.compression.factorised import FactorisedLinear, FactorisedLSTMCell
from shrinkml_env.compression.factorised_lstm import FactorisedLSTM
from shrinkml_env.compression.layers import LayerSpec, MatrixSpec, all_matrices, describe_layers
from shrinkml_env.compression.ranks import (
    rank_for_fraction,
    ranks_from_layer_fractions,
    uniform_fraction_at_size,
    uniform_ranks_at_size,
    validate_ranks,
)
from shrinkml_env.compression.report import LatencyConfig, LayerReportRow, layer_report
from shrinkml_env.compression.routes import fastest_routes, stock_module
from shrinkml_env.compression.search_model import SearchModel
from shrinkml_env.compression.size import (
    break_even_rank,
    compressible_parameter_count,
    keeps_dense,
    matrix_parameter_count,
    size_ratio,
)
from shrinkml_env.compression.svd import SVDBank

__all__ = [
    "fastest_routes",
    "stock_module",
    "CHECKPOINT_FORMAT",
    "FactorisedLSTM",
    "FactorisedLSTMCell",
    "FactorisedLinear",
    "LatencyConfig",
    "LayerReportRow",
    "LayerSpec",
    "LoadedFactorised",
    "MatrixSpec",
    "SVDBank",
    "SearchModel",
    "all_matrices",
    "break_even_rank",
    "compressible_parameter_count",
    "describe_layers",
    "export_factorised",
    "factorised_structure",
    "keeps_dense",
    "layer_report",
    "load_factorised",
    "matrix_parameter_count",
    "rank_for_fraction",
    "ranks_from_layer_fractions",
    "uniform_fraction_at_size",
    "uniform_ranks_at_size",
    "save_factorised",
    "size_ratio",
    "validate_ranks",
]
