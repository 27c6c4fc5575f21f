"""``FactorisedLSTM``: a drop-in ``nn.LSTM`` whose matrices may be factorised.

How it runs (shape legend: T frames, B batch, D directions, H hidden size, r rank):

1. Input projections of all frames at once, per direction: ``(x @ V^T) @ U^T + b``
   (two GEMMs over ``T*B`` rows) or ``x @ W^T + b`` when dense.
2. The reverse direction's projections are reversed within each sequence's length.
3. One TorchScript loop runs both directions together: per step a batched
   ``h @ V_hh^T`` and a ``baddbmm`` that adds ``@ U_hh^T`` to the input gates,
   then fused-as-far-as-possible gate math (see ``_recurrence``).

Inference caches the transposed/reordered weights and rebuilds them only when
a parameter changes (its version counter moves); with autograd on they are
rebuilt every call so gradients flow to the factors.

Training on a GPU takes another route (``train_through_dense``): each matrix is
materialised as ``U @ V`` and the stock fused LSTM kernel (cuDNN) runs on those
weights, so gradients still reach only the factors and the ranks stay fixed. A
per-step loop launches kernels for every frame, which a GPU pays for dearly; the
low-rank saving is an inference matter, and a training step gains nothing from it
there. On the CPU the factorised loop is the faster of the two and stays.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from shrinkml_env.compression._recurrence import scripted_recurrence
from shrinkml_env.compression.factorised import FactorisedModule

__all__ = ["FactorisedLSTM"]


def _gate_rows(t: Tensor) -> Tensor:
    """Reorder the leading ``4H`` rows from ``[i, f, g, o]`` to ``[i, f, o, 2g]``."""
    i, f, g, o = t.chunk(4, 0)
    return torch.cat([i, f, o, 2.0 * g], 0)


class FactorisedLSTM(FactorisedModule):
    """``nn.LSTM`` (``proj_size=0``) with per-matrix optional factorisation.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional:
            As in ``nn.LSTM``.
        ranks: Rank per factorised stock parameter name (``"weight_hh_l0_reverse"``).

    Forward: ``lstm(input, hx=None, lengths=None)`` with ``input`` a
    ``PackedSequence``, or a tensor ``(B, T, D_in)`` (``batch_first``) /
    ``(T, B, D_in)`` / unbatched ``(T, D_in)``; ``lengths`` ``(B,)`` marks
    padded input (each sequence, and its reverse direction, runs over its own
    length). Returns ``(output, (h_n, c_n))`` exactly like ``nn.LSTM``:
    ``output`` of the input's type with ``D*H`` features, zeros at padded
    steps; ``h_n``, ``c_n`` ``(num_layers*D, B, H)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 ranks: Mapping[str, int] | None = None):
        super().__init__(ranks)
        if num_layers < 1 or hidden_size < 1 or input_size < 1:
            raise ValueError(
                f"input_size, hidden_size and num_layers must be >= 1, got "
                f"{input_size}, {hidden_size}, {num_layers}"
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        directions = 2 if bidirectional else 1
        known = set()
        for k in range(num_layers):
            layer_input = input_size if k == 0 else directions * hidden_size
            for d in range(directions):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                self._add_matrix(f"weight_ih{sfx}", 4 * hidden_size, layer_input)
                self._add_matrix(f"weight_hh{sfx}", 4 * hidden_size, hidden_size)
                known.update((f"weight_ih{sfx}", f"weight_hh{sfx}"))
                if bias:
                    for kind in ("ih", "hh"):
                        self.register_parameter(
                            f"bias_{kind}{sfx}", nn.Parameter(torch.zeros(4 * hidden_size))
                        )
        unknown = sorted(set(self.ranks) - known)
        if unknown:
            raise ValueError(f"ranks name matrices {unknown} that this LSTM does not have; known: {sorted(known)}")
        self._cache: dict[int, tuple[tuple, list]] = {}

    @classmethod
    def from_dense(cls, lstm: nn.LSTM, factors: Mapping[str, tuple[Tensor, Tensor]]
                   ) -> FactorisedLSTM:
        """Build from a stock ``nn.LSTM`` and ``{param_name: (u, v)}`` factors."""
        if lstm.proj_size:
            raise ValueError(f"nn.LSTM with proj_size={lstm.proj_size} is not supported; use proj_size=0")
        ranks = {name: u.shape[1] for name, (u, _) in factors.items()}
        module = cls(lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bias,
                     lstm.batch_first, lstm.dropout, lstm.bidirectional, ranks)
        module._load_from(lstm, factors)
        return module.to(lstm.weight_ih_l0.device)

    proj_size = 0  # stock attribute read by some model code; projections are not supported
    # None: train through the dense product on CUDA only (see the module docstring); True/False force it
    train_through_dense: bool | None = None

    def flatten_parameters(self) -> None:
        """No-op, for model code that calls ``nn.LSTM.flatten_parameters`` (no flat buffer here)."""

    def config(self) -> dict:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias, "batch_first": self.batch_first,
                "dropout": self.dropout, "bidirectional": self.bidirectional,
                "ranks": dict(self.ranks)}

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"batch_first={self.batch_first}, bidirectional={self.bidirectional}, ranks={self.ranks}")

    # ----------------------------------------------------------------- forward
    def forward(self, input, hx: tuple[Tensor, Tensor] | None = None, lengths: Tensor | None = None):
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("pass either a PackedSequence or lengths with a padded tensor, not both")
            order = input.sorted_indices
            padded, sorted_lengths = pad_packed_sequence(
                PackedSequence(input.data, input.batch_sizes), batch_first=False
            )
            if hx is not None and order is not None:
                hx = (hx[0].index_select(1, order), hx[1].index_select(1, order))
            out, (h, c) = self._run(padded, sorted_lengths, hx)
            data = pack_padded_sequence(out, sorted_lengths, enforce_sorted=True).data
            if input.unsorted_indices is not None:
                h, c = h.index_select(1, input.unsorted_indices), c.index_select(1, input.unsorted_indices)
            return PackedSequence(data, input.batch_sizes, input.sorted_indices,
                                  input.unsorted_indices), (h, c)
        if input.dim() not in (2, 3):
            raise ValueError(f"FactorisedLSTM expects 2-D or 3-D input, got shape {tuple(input.shape)}")
        unbatched = input.dim() == 2
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        if unbatched and hx is not None:
            hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        order = None
        if lengths is not None:
            lengths = self._check_lengths(lengths, x.size(1), x.size(0))
            lengths, order = torch.sort(lengths, descending=True)
            x = x.index_select(1, order.to(x.device))
            if hx is not None:
                hx = (hx[0].index_select(1, order.to(hx[0].device)),
                      hx[1].index_select(1, order.to(hx[1].device)))
        out, (h, c) = self._run(x, lengths, hx)
        if order is not None:
            inverse = torch.argsort(order).to(out.device)
            out, h, c = out.index_select(1, inverse), h.index_select(1, inverse), c.index_select(1, inverse)
        if unbatched:
            return out.squeeze(1), (h.squeeze(1), c.squeeze(1))
        return (out.transpose(0, 1) if self.batch_first else out), (h, c)

    @staticmethod
    def _check_lengths(lengths: Tensor, batch: int, frames: int) -> Tensor:
        lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
        if lengths.numel() and (lengths.min() < 1 or lengths.max() > frames):
            raise ValueError(f"lengths must lie in [1, {frames}], got {lengths.tolist()}")
        return lengths

    def _through_dense(self, x: Tensor) -> bool:
        if not (self.training and torch.is_grad_enabled()):
            return False
        return x.is_cuda if self.train_through_dense is None else bool(self.train_through_dense)

    def _run_dense_product(self, x: Tensor, lengths: Tensor | None, hx: tuple[Tensor, Tensor]
                           ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The stock LSTM kernel on the materialised matrices ``U @ V`` (training on a GPU);
        ``lengths`` None when every sequence has all ``T`` frames."""
        directions = 2 if self.bidirectional else 1
        weights: list[Tensor] = []
        for k in range(self.num_layers):
            for d in range(directions):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                weights += [self.dense_matrix(f"weight_ih{sfx}"), self.dense_matrix(f"weight_hh{sfx}")]
                if self.bias:
                    weights += [getattr(self, f"bias_ih{sfx}"), getattr(self, f"bias_hh{sfx}")]
        hx = (hx[0].contiguous(), hx[1].contiguous())
        with warnings.catch_warnings():  # cuDNN notes that fresh weights are not one flat buffer
            warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
            if lengths is None:
                out, h, c = torch.lstm(x, hx, weights, self.bias, self.num_layers, self.dropout, self.training,
                                       self.bidirectional, False)
                return out, (h, c)
            packed = pack_padded_sequence(x, lengths, enforce_sorted=True)
            data, h, c = torch.lstm(packed.data, packed.batch_sizes, hx, weights, self.bias, self.num_layers,
                                    self.dropout, self.training, self.bidirectional)
        out, _ = pad_packed_sequence(PackedSequence(data, packed.batch_sizes), total_length=x.size(0))
        return out, (h, c)

    def _run(self, x: Tensor, lengths: Tensor | None, hx: tuple[Tensor, Tensor] | None
             ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Time-major core. ``x`` ``(T, B, D_in)``; ``lengths`` sorted descending or None."""
        frames, batch = x.size(0), x.size(1)
        directions = 2 if self.bidirectional else 1
        if hx is None:
            zeros = x.new_zeros(self.num_layers * directions, batch, self.hidden_size)
            hx = (zeros, zeros)
        if lengths is not None and bool((lengths == frames).all()):
            lengths = None  # every sequence is full length: nothing to pack or reverse
        if self._through_dense(x):
            return self._run_dense_product(x, lengths, hx)
        if lengths is None:
            batch_sizes, reverse_index = [batch] * frames, None
        else:
            steps = torch.arange(frames)
            active = steps[:, None] < lengths[None, :]  # (T, B)
            batch_sizes = [int(n) for n in active.sum(1).tolist() if n > 0]
            reverse_index = torch.where(active, lengths[None, :] - 1 - steps[:, None], steps[:, None])
            reverse_index = reverse_index.to(x.device)
        h_n, c_n = [], []
        for k in range(self.num_layers):
            if k > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)
            ih, groups = self._prepared(k)
            gates = [self._project(x, *ih[d]) for d in range(directions)]
            if directions == 2:
                gates[1] = _reverse(gates[1], reverse_index)
            outs: list[Tensor] = [x] * directions
            for dirs, first, second in groups:
                g = torch.stack([gates[d] for d in dirs], 1)  # (T, D', B, 4H)
                rows = [k * directions + d for d in dirs]
                h0, c0 = hx[0][rows], hx[1][rows]
                out, h, c = scripted_recurrence()(g, h0, c0, first, second, batch_sizes)
                for j, d in enumerate(dirs):
                    outs[d] = out[:, j]
                    h_n.append((k * directions + d, h[j]))
                    c_n.append((k * directions + d, c[j]))
            if directions == 2:
                outs[1] = _reverse(outs[1], reverse_index)
            x = torch.cat(outs, -1) if directions == 2 else outs[0]
        h_final = torch.stack([h for _, h in sorted(h_n, key=lambda item: item[0])])
        c_final = torch.stack([c for _, c in sorted(c_n, key=lambda item: item[0])])
        return x, (h_final, c_final)

    @staticmethod
    def _project(x: Tensor, first: Tensor, second: Tensor | None, bias: Tensor | None) -> Tensor:
        """Input gates of all frames ``(T, B, 4H)``: ``x @ first [@ second] + bias``."""
        flat = x.reshape(-1, x.size(-1))
        if second is not None:
            flat = flat @ first
            first = second
        out = torch.addmm(bias, flat, first) if bias is not None else flat @ first
        return out.view(x.size(0), x.size(1), -1)

    # ----------------------------------------------------------------- weights
    def _prepared(self, k: int) -> tuple[list, list]:
        """Transposed, gate-reordered weights of layer ``k`` (cached for inference)."""
        names = self._layer_param_names(k)
        params = [getattr(self, n) for n in names]
        cacheable = not (torch.is_grad_enabled() and any(p.requires_grad for p in params))
        key = None
        if cacheable:
            try:
                key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
            except RuntimeError:  # inference tensors carry no version counter
                key = None
            if key is not None and k in self._cache and self._cache[k][0] == key:
                return self._cache[k][1]
        prepared = self._prepare(k)
        if key is not None:
            self._cache[k] = (key, prepared)
        return prepared

    def _layer_param_names(self, k: int) -> list[str]:
        return [n for n, _ in self.named_parameters(recurse=False)
                if n.split("_l")[-1].split("_")[0] == str(k)]

    def _prepare(self, k: int) -> tuple[list, list]:
        directions = 2 if self.bidirectional else 1
        ih, hh = [], []
        for d in range(directions):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            bias = None
            if self.bias:
                bias = _gate_rows(getattr(self, f"bias_ih{sfx}") + getattr(self, f"bias_hh{sfx}"))
            u, v = self.matrix(f"weight_ih{sfx}")
            ih.append((_gate_rows(u).t(), None, bias) if v is None
                      else (v.t(), _gate_rows(u).t(), bias))
            hh.append(self.matrix(f"weight_hh{sfx}"))
        dense = [v is None for _, v in hh]
        if all(dense):
            groups = [(tuple(range(directions)),
                       torch.stack([_gate_rows(u).t() for u, _ in hh]).contiguous(), None)]
        elif not any(dense):
            # Pad the smaller rank with zeros so both directions share one bmm.
            rank = max(u.shape[1] for u, _ in hh)
            firsts = [F.pad(v.t(), (0, rank - v.shape[0])) for _, v in hh]
            seconds = [F.pad(_gate_rows(u).t(), (0, 0, 0, rank - u.shape[1])) for u, _ in hh]
            groups = [(tuple(range(directions)), torch.stack(firsts).contiguous(),
                       torch.stack(seconds).contiguous())]
        else:
            groups = []
            for d, (u, v) in enumerate(hh):
                if v is None:
                    groups.append(((d,), _gate_rows(u).t().unsqueeze(0).contiguous(), None))
                else:
                    groups.append(((d,), v.t().unsqueeze(0).contiguous(),
                                   _gate_rows(u).t().unsqueeze(0).contiguous()))
        return ih, groups


def _reverse(t: Tensor, reverse_index: Tensor | None) -> Tensor:
    """Reverse ``(T, B, F)`` in time within each sequence's length (an involution)."""
    if reverse_index is None:
        return t.flip(0)
    return t.gather(0, reverse_index[:, :, None].expand_as(t))
