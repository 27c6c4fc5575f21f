"""Truly factorised drop-in replacements for ``nn.LSTM``, ``nn.LSTMCell`` and ``nn.Linear``.

Each compressible matrix ``W`` (``m x n``) is stored either dense, under its
stock name (``weight_hh_l0``), or as two factors ``W ~= U @ V`` named
``<name>_u`` (``m x r``) and ``<name>_v`` (``r x n``): ``r * (m + n)``
parameters. Biases keep their stock names and values. Every module records
its structure in :meth:`config`, from which ``cls(**config)`` rebuilds it
(the checkpoint format of :mod:`shrinkml_env.compression.export`).

The replacements accept and return the same types as the stock modules,
``PackedSequence`` included; :class:`FactorisedLSTM` additionally accepts a
``lengths`` tensor with padded input.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FactorisedLSTMCell", "FactorisedLinear", "FactorisedModule", "lowrank_linear"]


def lowrank_linear(x: Tensor, u: Tensor, v: Tensor | None, bias: Tensor | None = None) -> Tensor:
    """``x @ (u @ v)^T + bias`` without forming ``u @ v``; ``v=None`` means ``u`` is dense.

    Args:
        x: ``(*, n)``.
        u: ``(m, r)`` left factor, or the dense ``(m, n)`` weight when ``v`` is None.
        v: ``(r, n)`` right factor or None.
        bias: ``(m,)`` or None.

    Returns:
        ``(*, m)``.
    """
    if v is None:
        return F.linear(x, u, bias)
    return F.linear(F.linear(x, v), u, bias)


class FactorisedModule(nn.Module):
    """Base class: matrices stored dense or as ``(u, v)`` factors, plus a rebuildable config.

    Args:
        ranks: Rank per stock parameter name for the matrices that are factorised;
            names not present are dense.
    """

    def __init__(self, ranks: Mapping[str, int] | None = None):
        super().__init__()
        self.ranks: dict[str, int] = {str(k): int(v) for k, v in (ranks or {}).items()}

    def _add_matrix(self, name: str, rows: int, cols: int) -> None:
        rank = self.ranks.get(name)
        if rank is None:
            self.register_parameter(name, nn.Parameter(torch.zeros(rows, cols)))
            return
        if not 1 <= rank <= min(rows, cols):
            raise ValueError(
                f"rank {rank} for matrix {name!r} ({rows}x{cols}) outside [1, {min(rows, cols)}]"
            )
        self.register_parameter(f"{name}_u", nn.Parameter(torch.zeros(rows, rank)))
        self.register_parameter(f"{name}_v", nn.Parameter(torch.zeros(rank, cols)))

    def matrix(self, name: str) -> tuple[Tensor, Tensor | None]:
        """``(u, v)`` of a factorised matrix, or ``(W, None)`` of a dense one."""
        if name in self.ranks:
            return getattr(self, f"{name}_u"), getattr(self, f"{name}_v")
        return getattr(self, name), None

    def dense_matrix(self, name: str) -> Tensor:
        """The matrix as one dense tensor ``(m, n)`` (``u @ v`` when factorised)."""
        u, v = self.matrix(name)
        return u if v is None else u @ v

    def _load_from(self, dense: nn.Module, factors: Mapping[str, tuple[Tensor, Tensor]]) -> None:
        unknown = sorted(set(factors) - set(self.ranks))
        if unknown:
            raise ValueError(f"factors given for matrices {unknown} that this module keeps dense")
        with torch.no_grad():
            for name, param in self.named_parameters(recurse=False):
                base, _, part = name.rpartition("_")
                if base in self.ranks and part in ("u", "v"):
                    param.copy_(factors[base][0 if part == "u" else 1])
                else:
                    param.copy_(getattr(dense, name))

    def config(self) -> dict:
        """Keyword arguments that rebuild this module's structure (JSON-serialisable)."""
        raise NotImplementedError


class FactorisedLinear(FactorisedModule):
    """``nn.Linear`` with ``weight`` optionally factorised as ``weight_u @ weight_v``.

    Args:
        in_features: ``n``.
        out_features: ``m``.
        bias: Whether the layer has a bias.
        ranks: ``{"weight": r}`` to factorise, ``{}`` for dense.

    Shapes: input ``(*, n)``, output ``(*, m)``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 ranks: Mapping[str, int] | None = None):
        super().__init__(ranks)
        self.in_features, self.out_features = in_features, out_features
        self._add_matrix("weight", out_features, in_features)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_dense(cls, linear: nn.Linear, factors: Mapping[str, tuple[Tensor, Tensor]]
                   ) -> FactorisedLinear:
        """Build from a stock ``nn.Linear`` and ``{"weight": (u, v)}``."""
        ranks = {name: u.shape[1] for name, (u, _) in factors.items()}
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, ranks)
        module._load_from(linear, factors)
        return module.to(linear.weight.device)

    def forward(self, input: Tensor) -> Tensor:
        return lowrank_linear(input, *self.matrix("weight"), self.bias)

    def config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "ranks": dict(self.ranks)}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, ranks={self.ranks}"


class FactorisedLSTMCell(FactorisedModule):
    """``nn.LSTMCell`` with ``weight_ih`` / ``weight_hh`` optionally factorised.

    Args:
        input_size: ``D``.
        hidden_size: ``H``.
        bias: Whether the cell has biases.
        ranks: Rank per factorised matrix (``"weight_ih"``, ``"weight_hh"``).

    Call as ``cell(x, (h, c))`` with ``x`` ``(B, D)`` or ``(D,)`` and ``h``, ``c``
    ``(B, H)`` or ``(H,)`` (or ``hx=None`` for zeros); returns ``(h, c)``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 ranks: Mapping[str, int] | None = None):
        super().__init__(ranks)
        self.input_size, self.hidden_size = input_size, hidden_size
        self._add_matrix("weight_ih", 4 * hidden_size, input_size)
        self._add_matrix("weight_hh", 4 * hidden_size, hidden_size)
        self.bias_ih = nn.Parameter(torch.zeros(4 * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.zeros(4 * hidden_size)) if bias else None

    @classmethod
    def from_dense(cls, cell: nn.LSTMCell, factors: Mapping[str, tuple[Tensor, Tensor]]
                   ) -> FactorisedLSTMCell:
        """Build from a stock ``nn.LSTMCell`` and ``{name: (u, v)}`` factors."""
        ranks = {name: u.shape[1] for name, (u, _) in factors.items()}
        module = cls(cell.input_size, cell.hidden_size, cell.bias, ranks)
        module._load_from(cell, factors)
        return module.to(cell.weight_ih.device)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        if input.dim() not in (1, 2):
            raise ValueError(f"FactorisedLSTMCell expects 1-D or 2-D input, got shape {tuple(input.shape)}")
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        if hx is None:
            zeros = x.new_zeros(x.size(0), self.hidden_size)
            h, c = zeros, zeros
        else:
            h, c = (s.unsqueeze(0) for s in hx) if unbatched else hx
        gates = lowrank_linear(x, *self.matrix("weight_ih"), self.bias_ih)
        gates = gates + lowrank_linear(h, *self.matrix("weight_hh"), self.bias_hh)
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)

    def config(self) -> dict:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "bias": self.bias_ih is not None, "ranks": dict(self.ranks)}

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, ranks={self.ranks}"
