"""Per-layer latency tables: what each compressible module costs at each rank, on this machine.

A latency budget needs the latency of every configuration the search may try; decoding each
one end to end would cost as much as scoring it. As in hardware-aware search (HAQ's per-layer
tables, AMC's measured latency), the cost is measured per module and added up, each module
timed *in the place it runs*:

1. Every rank option of a module is built once: the stock module when every matrix stays dense
   (oneDNN's fused kernels), otherwise its truly factorised twin (what
   :func:`~shrinkml_env.compression.export.export_factorised` builds).
2. The target's *inference workload* (``workload(model)``: e.g. batch-1 greedy decoding of a
   few dev utterances) runs end to end on a copy of the model whose modules are swapped pass
   by pass, with a clock (forward pre- and post-hooks) around every compressible module. In
   each round every module visits each of its options once, in a random pairing with the
   other modules' options, and one more pass runs all dense. A module's entry is the median
   over rounds of its summed call time, scaled to the dense model's number of calls (a
   compressed decoder may stop a step earlier or later).
3. The rest (frontend, attention, output layers, the decoding loop itself, the clocks' own
   overhead of a few microseconds per call) is the all-dense passes' end-to-end time minus
   their modules' time.

Predicted latency of a configuration = rest + the sum of its modules' entries.

Why in place rather than replaying each module's recorded calls on their own (the first
version): at batch 1 a decoder step reads megabytes of weights to do little arithmetic, so a
module's cost depends on what else ran between its calls. Replayed alone, a dense decoder cell
found its weights in cache and looked about as fast as a factorised one; in the decoding loop
it is not, and replayed tables missed end-to-end latency by a median 34 %
(``benchmarks/results/latency.json`` keeps the current method's figures).

A table holds the conditions it was measured under (:class:`LatencyKey`: machine, processor,
torch version, threads, batch size, device, the model's and the workload's fingerprints).
:func:`load_or_measure` reuses a cached table only when every field matches, and otherwise
measures again, logging which field changed; :func:`read_table` with ``expect`` refuses a
table of other conditions, naming each difference.

Written by hand because no maintained library times a module in the place it runs across the
rank options of a search (PyTorch's profiler attributes time to operators, not to modules'
options, and ``torch.utils.benchmark`` times one statement at a time).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shrinkml_env.atomic import atomic_write_text
from shrinkml_env.compression.export import factorised_twin
from shrinkml_env.compression.layers import LayerSpec, get_module, set_module
from shrinkml_env.compression.size import keeps_dense
from shrinkml_env.compression.svd import SVDBank

__all__ = [
    "LATENCY_FORMAT",
    "LatencyKey",
    "LatencyTable",
    "current_key",
    "default_table_path",
    "load_or_measure",
    "measure_latency",
    "options_key",
    "read_table",
]

LATENCY_FORMAT = "shrinkml-latency/2"  # 2: measured in place (1: replayed alone)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatencyKey:
    """The conditions a latency table holds for; a table is valid only where all match.

    Attributes:
        machine: CPU architecture (``platform.machine()``).
        processor: processor model (``/proc/cpuinfo``'s model name where it exists).
        cpus: logical CPUs of the machine.
        torch: torch version.
        threads: torch intra-op threads while measuring.
        batch_size: utterances (sequences) per call of the workload.
        device: where the model ran.
        model: the target's weight fingerprint.
        workload: the inference workload's fingerprint (its data and decoder).
    """

    machine: str
    processor: str
    cpus: int
    torch: str
    threads: int
    batch_size: int
    device: str
    model: str
    workload: str

    def mismatches(self, other: LatencyKey) -> list[str]:
        """``field: this != other`` for every field that differs."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def current_key(*, batch_size: int, model: str, workload: str, device: str = "cpu") -> LatencyKey:
    """The key of a table measured here, now, with torch's current thread count."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    return LatencyKey(
        machine=platform.machine(),
        processor=_processor(),
        cpus=os.cpu_count() or 1,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        batch_size=batch_size,
        device=str(device),
        model=model,
        workload=workload,
    )


def options_key(ranks: Mapping[str, int]) -> str:
    """Canonical text of one module's rank option (``param=rank`` pairs, sorted)."""
    return ",".join(f"{name}={int(rank)}" for name, rank in sorted(ranks.items()))


@dataclass(frozen=True)
class LatencyTable:
    """Measured costs of one model's compressible modules under one :class:`LatencyKey`.

    Attributes:
        key: the measuring conditions.
        dense_ms: the dense model's median end-to-end workload time.
        rest_ms: ``dense_ms`` minus every compressible module's dense entry.
        entries: module path → option (:func:`options_key` of its dense-or-factorised
            matrices' ranks) → median milliseconds of the module's calls in the workload.
        repeats: timed rounds behind each median.
    """

    key: LatencyKey
    dense_ms: float
    rest_ms: float
    entries: Mapping[str, Mapping[str, float]]
    repeats: int

    def entry(self, path: str, ranks: Mapping[str, int]) -> float:
        """Milliseconds of module ``path`` with ``ranks`` (param name → rank)."""
        try:
            return float(self.entries[path][options_key(ranks)])
        except KeyError as e:
            raise KeyError(
                f"the latency table has no entry for {path!r} at {options_key(ranks)!r}; "
                "measure it with load_or_measure() for this rank menu"
            ) from e

    def has(self, path: str, ranks: Mapping[str, int]) -> bool:
        return options_key(ranks) in self.entries.get(path, {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LATENCY_FORMAT,
            "key": asdict(self.key),
            "dense_ms": self.dense_ms,
            "rest_ms": self.rest_ms,
            "repeats": self.repeats,
            "entries": {path: dict(options) for path, options in self.entries.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyTable:
        if data.get("format") != LATENCY_FORMAT:
            raise ValueError(f"not a {LATENCY_FORMAT!r} latency table (format: {data.get('format')!r})")
        try:
            return cls(
                key=LatencyKey(**data["key"]),
                dense_ms=float(data["dense_ms"]),
                rest_ms=float(data["rest_ms"]),
                entries={p: {k: float(v) for k, v in o.items()} for p, o in data["entries"].items()},
                repeats=int(data["repeats"]),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"latency table is incomplete or malformed ({type(e).__name__}: {e})") from e

    def write(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")


def read_table(path: str | os.PathLike[str], expect: LatencyKey | None = None) -> LatencyTable:
    """Read a table; with ``expect``, refuse one measured under other conditions.

    Raises:
        ValueError: the file is not a latency table, or (with ``expect``) it was measured
            under other conditions: the message names every field that differs.
    """
    try:
        table = LatencyTable.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise ValueError(f"latency table {str(path)!r} is not valid JSON: {e}") from e
    except ValueError as e:
        raise ValueError(f"latency table {str(path)!r}: {e}") from e
    if expect is not None:
        stale = table.key.mismatches(expect)
        if stale:
            raise ValueError(
                f"latency table {str(path)!r} was measured under other conditions (table != here: "
                + "; ".join(stale)
                + "); delete it or point at another file, and it is measured again"
            )
    return table


def default_table_path(key: LatencyKey) -> Path:
    """``$SHRINKML_CACHE/latency/<model>-<workload>-b<batch>.json`` (default cache:
    ``~/.cache/shrinkml``).

    One file per model, workload and batch size, so a table from another machine or torch version
    is found, reported and replaced rather than silently kept beside the new one.
    """
    base = Path(os.environ.get("SHRINKML_CACHE") or Path.home() / ".cache" / "shrinkml")
    return base / "latency" / f"{key.model}-{key.workload}-b{key.batch_size}.json"


def load_or_measure(
    model: nn.Module,
    layers: Sequence[LayerSpec],
    options: Mapping[str, Iterable[Mapping[str, int]]],
    workload: Callable[[nn.Module], None],
    key: LatencyKey,
    *,
    bank: SVDBank | None = None,
    path: str | os.PathLike[str] | None = None,
    repeats: int = 5,
) -> LatencyTable:
    """The table at ``path`` (default: :func:`default_table_path`) if it fits, else measured.

    A cached table of other conditions is measured again (a warning names what changed), and
    so is one that lacks some of ``options`` (a new rank menu): entries of one table share
    the passes that measured them.
    """
    path = Path(path) if path is not None else default_table_path(key)
    wanted = _wanted_options(_matrices_by_module(layers), options)
    known: LatencyTable | None = None
    if path.exists():
        try:
            known = read_table(path, expect=key)
        except ValueError as e:
            logger.warning("%s: measuring the latency table again", e)
    if known is not None and all(known.has(p, o) for p, opts in wanted.items() for o in opts):
        return known
    table = measure_latency(model, layers, wanted, workload, key, bank=bank, repeats=repeats)
    table.write(path)
    return table


def measure_latency(
    model: nn.Module,
    layers: Sequence[LayerSpec],
    options: Mapping[str, Iterable[Mapping[str, int]]],
    workload: Callable[[nn.Module], None],
    key: LatencyKey,
    *,
    bank: SVDBank | None = None,
    repeats: int = 5,
    seed: int = 0,
) -> LatencyTable:
    """Measure a latency table (see the module docstring for how).

    Costs ``repeats × (options per module + 1) + 1`` runs of the workload.

    Args:
        model: the dense model (eval mode; not modified).
        layers: its compressible layers (:func:`describe_layers`); each module path must hold
            exactly one layer.
        options: module path → the rank options to time (param name → rank; a rank at or
            above break-even keeps that matrix dense). The all-dense option is always timed.
        workload: runs ``model`` the way it is deployed (same batch size as ``key``).
        key: the conditions, written into the table.
        bank: SVDs of ``model`` (computed for the needed matrices if None).
        repeats: rounds; each entry is the median of at least this many passes.
        seed: the random pairing of options across modules.

    Raises:
        ValueError: a module holding several layers, an option naming unknown matrices, or a
            workload that never calls some module.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    by_module = _matrices_by_module(layers)
    options = _wanted_options(by_module, options)
    if bank is None:
        bank = SVDBank.compute(model, layers)
    variants: dict[str, dict[str, nn.Module]] = {}
    dense: dict[str, str] = {}
    for path, specs in by_module.items():
        full = {m.param_name: m.full_rank for m in specs}
        dense[path] = options_key(full)
        variants[path] = {dense[path]: get_module(model, path)}
        for ranks in options.get(path, ()):  # normalised: every matrix named
            name = options_key(ranks)
            if name not in variants[path]:
                variants[path][name] = _module_at(model, path, specs, ranks, bank)
    host = copy.deepcopy(model)  # its modules are swapped pass by pass; ``model`` stays as it is
    clock = _ModuleClock(sync=torch.cuda.synchronize if key.device.startswith("cuda") else None)
    samples: dict[str, dict[str, list[float]]] = {p: {o: [] for o in v} for p, v in variants.items()}
    rests: list[float] = []
    rng = random.Random(seed)
    try:
        for path, modules in variants.items():
            for module in modules.values():
                clock.attach(path, module)
        _, dense_calls = _run(host, dense, variants, clock, workload)  # warm-up: counts calls
        empty = sorted(p for p, n in dense_calls.items() if not n)
        if empty:
            raise ValueError(f"the inference workload never called modules {empty}; it must run the whole model")
        width = max(len(v) for v in variants.values())
        for _ in range(repeats):
            orders = {}
            for path, modules in variants.items():
                names = list(modules) * -(-width // len(modules))
                rng.shuffle(names)
                orders[path] = names[:width]
            passes = [dense] + [{p: orders[p][j] for p in variants} for j in range(width)]
            for assignment in passes:
                total, calls = _run(host, assignment, variants, clock, workload)
                for path, name in assignment.items():
                    samples[path][name].append(clock.ms[path] * dense_calls[path] / max(calls[path], 1))
                if assignment is dense:
                    rests.append(total - sum(clock.ms.values()))
    finally:
        clock.detach()
    entries = {p: {o: statistics.median(v) for o, v in opts.items() if v} for p, opts in samples.items()}
    rest_ms = statistics.median(rests)
    dense_ms = rest_ms + sum(entries[p][dense[p]] for p in entries)
    return LatencyTable(key=key, dense_ms=dense_ms, rest_ms=rest_ms, entries=entries, repeats=repeats)


class _ModuleClock:
    """Milliseconds and calls per module path, from forward pre- and post-hooks."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync
        self.ms: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._handles: list = []

    def attach(self, path: str, module: nn.Module) -> None:
        self._handles.append(module.register_forward_pre_hook(lambda *_: self._begin(path)))
        self._handles.append(module.register_forward_hook(lambda *_: self._end(path)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def reset(self, paths: Iterable[str]) -> None:
        self.ms = dict.fromkeys(paths, 0.0)
        self.calls = dict.fromkeys(paths, 0)

    def _begin(self, path: str) -> None:
        if self.sync is not None:
            self.sync()
        self._started[path] = time.perf_counter()

    def _end(self, path: str) -> None:
        if self.sync is not None:
            self.sync()
        self.ms[path] += (time.perf_counter() - self._started[path]) * 1e3
        self.calls[path] += 1


def _run(host: nn.Module, assignment: Mapping[str, str], variants, clock: _ModuleClock,
         workload: Callable[[nn.Module], None]) -> tuple[float, dict[str, int]]:
    """One timed workload pass with each module at its assigned option: (ms, calls per module)."""
    for path, name in assignment.items():
        set_module(host, path, variants[path][name])
    clock.reset(variants)
    with torch.inference_mode():
        start = time.perf_counter()
        workload(host)
        total = (time.perf_counter() - start) * 1e3
    return total, dict(clock.calls)


def _wanted_options(by_module: Mapping[str, list], options: Mapping[str, Iterable[Mapping[str, int]]]
                    ) -> dict[str, list[dict[str, int]]]:
    """``options`` with every module checked and every option normalised (:func:`_normalised`)."""
    unknown = sorted(set(options) - set(by_module))
    if unknown:
        raise ValueError(f"options name modules {unknown} that are not compressible layers; known: {sorted(by_module)}")
    return {p: [_normalised(by_module[p], o) for o in opts] for p, opts in options.items()}


def _normalised(specs, ranks: Mapping[str, int]) -> dict[str, int]:
    """Every matrix of the module named, full rank where absent or at/above break-even."""
    names = {m.param_name for m in specs}
    unknown = sorted(set(ranks) - names)
    if unknown:
        raise ValueError(f"rank option names matrices {unknown}; this module has {sorted(names)}")
    out = {}
    for m in specs:
        rank = int(ranks.get(m.param_name, m.full_rank))
        out[m.param_name] = m.full_rank if keeps_dense(m.rows, m.cols, rank) else rank
    return out


def _matrices_by_module(layers: Sequence[LayerSpec]) -> dict[str, list]:
    by_module: dict[str, list] = {}
    count: dict[str, int] = {}
    for layer in layers:
        by_module.setdefault(layer.module_path, []).extend(layer.matrices)
        count[layer.module_path] = count.get(layer.module_path, 0) + 1
    stacked = sorted(p for p, n in count.items() if n > 1)
    if stacked:
        raise ValueError(
            f"modules {stacked} hold several LSTM layers; a latency table times whole modules, so "
            "give each layer its own nn.LSTM (num_layers=1) to budget latency per layer"
        )
    return by_module


def _module_at(model: nn.Module, path: str, specs, ranks: Mapping[str, int], bank: SVDBank) -> nn.Module:
    """The stock module, or its factorised twin for normalised ``ranks``."""
    stock = get_module(model, path)
    factors = {m.param_name: bank.factors(m.key, ranks[m.param_name])
               for m in specs if ranks[m.param_name] < m.full_rank}
    return stock if not factors else factorised_twin(stock, factors).eval()


def _processor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
