"""Discover and describe the compressible weight matrices of a model.

The unit of compression is one weight *matrix* (a :class:`MatrixSpec`), for
example ``weight_ih_l0_reverse`` of the module at ``encoder.layers.2``. A
*layer* (a :class:`LayerSpec`) groups the matrices that one rank decision
covers at layer granularity:

* ``nn.LSTM``: one layer per layer index ``k`` (``num_layers > 1`` gives
  several layers per module); it holds ``weight_ih_lk``, ``weight_hh_lk`` and,
  when bidirectional, their ``_reverse`` twins.
* ``nn.LSTMCell``: one layer with ``weight_ih`` and ``weight_hh``.
* ``nn.Linear``: one layer with ``weight``.

Biases are never compressible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn

__all__ = [
    "LayerSpec",
    "MatrixKind",
    "MatrixSpec",
    "all_matrices",
    "describe_layers",
    "get_module",
    "layer_key",
    "matrix_key",
    "set_module",
]

MatrixKind = Literal["ih", "hh", "linear"]
_MODULE_TYPES = (nn.LSTM, nn.LSTMCell, nn.Linear)


def matrix_key(module_path: str, param_name: str) -> str:
    """The key of one matrix: its name in the model's ``state_dict``.

    Args:
        module_path: Dotted path of the owning module (``""`` for the root).
        param_name: Parameter name inside that module, e.g. ``"weight_hh_l1"``.

    Returns:
        ``"module_path.param_name"``, or ``param_name`` for the root module.
    """
    return f"{module_path}.{param_name}" if module_path else param_name


def layer_key(module_path: str, layer_index: int | None) -> str:
    """The key of one layer: the module path, plus ``[k]`` for ``num_layers > 1``."""
    return module_path if layer_index is None else f"{module_path}[{layer_index}]"


@dataclass(frozen=True)
class MatrixSpec:
    """One compressible weight matrix ``W`` of shape ``(rows, cols)`` = ``(m, n)``.

    Attributes:
        module_path: Dotted path of the owning module inside the model.
        param_name: Parameter name in the owning module (``"weight_ih_l0_reverse"``).
        rows: ``m``, the output dimension (``4 * hidden_size`` for LSTM matrices).
        cols: ``n``, the input dimension.
        layer_key: Key of the :class:`LayerSpec` this matrix belongs to.
        layer_index: LSTM layer index ``k`` (0 for cells and linear layers).
        direction: 0 forward, 1 reverse (always 0 for cells and linear layers).
        kind: ``"ih"`` (input-to-hidden), ``"hh"`` (hidden-to-hidden) or ``"linear"``.
    """

    module_path: str
    param_name: str
    rows: int
    cols: int
    layer_key: str
    layer_index: int
    direction: int
    kind: MatrixKind

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"matrix shape must be positive, got {self.rows}x{self.cols}")
        if self.direction not in (0, 1):
            raise ValueError(f"direction must be 0 or 1, got {self.direction}")
        if self.kind not in ("ih", "hh", "linear"):
            raise ValueError(f"kind must be 'ih', 'hh' or 'linear', got {self.kind!r}")

    @property
    def key(self) -> str:
        """Unique key of the matrix (its ``state_dict`` name)."""
        return matrix_key(self.module_path, self.param_name)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return (self.rows, self.cols)

    @property
    def full_rank(self) -> int:
        """``min(rows, cols)``: the largest meaningful rank."""
        return min(self.rows, self.cols)


@dataclass(frozen=True)
class LayerSpec:
    """A group of matrices that share one rank decision at layer granularity.

    Attributes:
        key: Unique layer key (module path, plus ``[k]`` for multi-layer LSTMs).
        module_path: Dotted path of the owning module.
        module_type: ``"lstm"``, ``"lstm_cell"`` or ``"linear"``.
        layer_index: LSTM layer index ``k`` (0 for cells and linear layers).
        matrices: The layer's matrices, forward direction first, ``ih`` before ``hh``.
    """

    key: str
    module_path: str
    module_type: Literal["lstm", "lstm_cell", "linear"]
    layer_index: int
    matrices: tuple[MatrixSpec, ...]

    def __post_init__(self) -> None:
        if not self.matrices:
            raise ValueError(f"layer {self.key!r} has no matrices")

    @property
    def dense_parameter_count(self) -> int:
        """Number of compressible parameters of the layer when dense."""
        return sum(m.rows * m.cols for m in self.matrices)


def get_module(model: nn.Module, path: str) -> nn.Module:
    """Return the submodule at a dotted ``path`` (``""`` is the model itself).

    Raises:
        ValueError: If no submodule has that path.
    """
    try:
        return model.get_submodule(path)
    except AttributeError as e:
        known = [name for name, m in model.named_modules() if isinstance(m, _MODULE_TYPES)]
        raise ValueError(
            f"unknown layer path {path!r}; compressible modules in this model: {known}"
        ) from e


def set_module(model: nn.Module, path: str, module: nn.Module) -> nn.Module:
    """Replace the submodule at ``path`` (``""``: the model itself); returns the root."""
    if not path:
        return module
    parent_path, _, name = path.rpartition(".")
    setattr(get_module(model, parent_path), name, module)
    return model


def _lstm_layers(path: str, lstm: nn.LSTM) -> list[LayerSpec]:
    if lstm.proj_size > 0:
        raise ValueError(
            f"nn.LSTM at {path!r} has proj_size={lstm.proj_size}; only proj_size=0 is supported"
        )
    directions = 2 if lstm.bidirectional else 1
    layers = []
    for k in range(lstm.num_layers):
        key = layer_key(path, k if lstm.num_layers > 1 else None)
        matrices = []
        for d in range(directions):
            suffix = f"_l{k}" + ("_reverse" if d == 1 else "")
            for kind in ("ih", "hh"):
                name = f"weight_{kind}{suffix}"
                rows, cols = getattr(lstm, name).shape
                matrices.append(MatrixSpec(path, name, rows, cols, key, k, d, kind))
        layers.append(LayerSpec(key, path, "lstm", k, tuple(matrices)))
    return layers


def _describe_module(path: str, module: nn.Module) -> list[LayerSpec]:
    if isinstance(module, nn.LSTM):
        return _lstm_layers(path, module)
    key = layer_key(path, None)
    if isinstance(module, nn.LSTMCell):
        matrices = tuple(
            MatrixSpec(path, f"weight_{kind}", *getattr(module, f"weight_{kind}").shape, key, 0, 0, kind)
            for kind in ("ih", "hh")
        )
        return [LayerSpec(key, path, "lstm_cell", 0, matrices)]
    if isinstance(module, nn.Linear):
        spec = MatrixSpec(path, "weight", *module.weight.shape, key, 0, 0, "linear")
        return [LayerSpec(key, path, "linear", 0, (spec,))]
    raise TypeError(
        f"module at {path!r} is {type(module).__name__}; compressible modules are "
        "nn.LSTM, nn.LSTMCell and nn.Linear"
    )


def describe_layers(model: nn.Module, layer_paths: Sequence[str]) -> tuple[LayerSpec, ...]:
    """Describe the compressible layers of ``model``, in the order given.

    Args:
        model: The model holding the layers.
        layer_paths: Dotted module paths, each naming an ``nn.LSTM``,
            ``nn.LSTMCell`` or ``nn.Linear``. An ``nn.LSTM`` with
            ``num_layers > 1`` contributes one layer per layer index.

    Returns:
        The layers, in ``layer_paths`` order (layer indices ascending within a module).

    Raises:
        ValueError: If ``layer_paths`` is empty, repeats a path, or names an unknown module.
        TypeError: If a path names a module of another type.
    """
    if isinstance(layer_paths, str):
        raise TypeError(f"layer_paths must be a sequence of paths, got the string {layer_paths!r}")
    if not layer_paths:
        raise ValueError("layer_paths is empty; name at least one nn.LSTM/nn.LSTMCell/nn.Linear")
    duplicates = sorted({p for p in layer_paths if list(layer_paths).count(p) > 1})
    if duplicates:
        raise ValueError(f"layer paths repeated: {duplicates}; name each module once")
    layers: list[LayerSpec] = []
    for path in layer_paths:
        layers.extend(_describe_module(path, get_module(model, path)))
    return tuple(layers)


def all_matrices(layers: Iterable[LayerSpec]) -> tuple[MatrixSpec, ...]:
    """Flatten layers into their matrices, in order."""
    return tuple(m for layer in layers for m in layer.matrices)
