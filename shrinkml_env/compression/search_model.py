"""Search-time model: truncated reconstructions written into the stock modules.

During the search the model keeps its stock modules (fused ``nn.LSTM``
kernels, same function as the exported factorised model up to float32
rounding); only the weight values change. :class:`SearchModel` owns one deep
copy of the dense model, made once, and rewrites in place only the matrices
whose effective rank changed since the previous call: a matrix at or above its
break-even rank holds the original weight, so moving between two such ranks
costs nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from shrinkml_env.compression.layers import get_module
from shrinkml_env.compression.ranks import validate_ranks
from shrinkml_env.compression.size import keeps_dense
from shrinkml_env.compression.svd import SVDBank

__all__ = ["SearchModel"]


class SearchModel:
    """A reusable model whose compressible weights follow a rank assignment.

    Args:
        model: The dense model. It is deep-copied once (unless ``copy=False``);
            the original is never modified.
        bank: SVDs of the matrices to control, from :meth:`SVDBank.compute` on ``model``.
        copy: Deep-copy ``model`` (default). ``False`` modifies ``model`` itself.

    Attributes:
        model: The model to evaluate; its weights reflect the last :meth:`apply`.

    Example:
        >>> search = SearchModel(model, bank)
        >>> search.apply({"encoder.0.weight_hh_l0": 64})  # others dense
        >>> error = evaluate(search.model)
    """

    def __init__(self, model: nn.Module, bank: SVDBank, *, copy: bool = True):
        self.model = _deepcopy(model) if copy else model
        self.bank = bank
        self._params: dict[str, Tensor] = {}
        for spec in bank.matrices:
            param = getattr(get_module(self.model, spec.module_path), spec.param_name)
            if tuple(param.shape) != spec.shape:
                raise ValueError(
                    f"matrix {spec.key!r} has shape {tuple(param.shape)} in the model but "
                    f"{spec.shape} in the SVD bank; compute the bank from this model"
                )
            self._params[spec.key] = param
        self._full = {m.key: m.full_rank for m in bank.matrices}
        self._applied: dict[str, int | None] = dict.fromkeys(self._full)  # None = dense original
        self.restore_dense()

    @property
    def ranks(self) -> dict[str, int]:
        """Effective rank per matrix key (full rank where the matrix is dense)."""
        return {k: self._full[k] if r is None else r for k, r in self._applied.items()}

    def apply(self, ranks: Mapping[str, int]) -> list[str]:
        """Write the rank-truncated reconstructions into the model, in place.

        Args:
            ranks: Rank per matrix key; matrices not named go back to dense.

        Returns:
            Keys of the matrices that were rewritten (empty when nothing changed).

        Raises:
            ValueError: On an unknown key or a rank outside ``[1, min(m, n)]``.
        """
        resolved = validate_ranks(self.bank.matrices, ranks)
        changed = []
        with torch.no_grad():
            for key, rank in resolved.items():
                spec = self.bank.spec(key)
                target = None if keeps_dense(spec.rows, spec.cols, rank) else rank
                if target == self._applied[key]:
                    continue
                self._write(key, rank)
                self._applied[key] = target
                changed.append(key)
        return changed

    def restore_dense(self) -> None:
        """Put every controlled matrix back to its original dense weight."""
        with torch.no_grad():
            for key, full in self._full.items():
                self._write(key, full)
                self._applied[key] = None

    def _write(self, key: str, rank: int) -> None:
        param = self._params[key].detach()
        if param.device.type == "cpu" and param.dtype == torch.float32:
            self.bank.reconstruct(key, rank, out=param)
        else:
            param.copy_(self.bank.reconstruct(key, rank))


def _deepcopy(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    # nn.RNNBase keeps a list of flat weights; deepcopy keeps it consistent, but
    # re-flattening is what the stock modules do after any weight swap.
    for module in clone.modules():
        if isinstance(module, nn.RNNBase):
            module.flatten_parameters()
    return clone
