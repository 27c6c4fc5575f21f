"""Self-describing checkpoints: config, tokenizer, weights and a format version in one file.

A checkpoint is a ``torch.save`` dictionary loaded with ``weights_only=True`` (no pickled code
runs on load)::

    {"format": "shrinkml-asr", "format_version": 1, "config": {...}, "tokenizer": {...},
     "state_dict": {...}, "meta": {...}}

``meta`` carries free-form, JSON-like facts (training step, dev WER, corpus, command line).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from asr.model import ASRConfig, ASRModel
from asr.text import CharTokenizer
from shrinkml_env.atomic import atomic_file

__all__ = ["CheckpointError", "FORMAT", "FORMAT_VERSION", "load_checkpoint", "read_checkpoint", "save_checkpoint",
           "atomic_torch_save", "save_factorised_asr", "save_model", "is_factorised"]

FORMAT = "shrinkml-asr"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "config", "tokenizer", "state_dict")


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used; the message names the file and why."""


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` written atomically (see :mod:`shrinkml_env.atomic`)."""
    with atomic_file(path) as f:
        torch.save(obj, f)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: ASRModel,
    tokenizer: CharTokenizer,
    meta: dict[str, Any] | None = None,
    *,
    half: bool = False,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically.

    Args:
        path: destination file.
        model: the recogniser.
        tokenizer: its tokenizer.
        meta: JSON-like facts to keep with the weights.
        half: store floating-point weights as float16 (halves the file; loads back as float32).
        extra: further top-level entries (optimiser state for resumable training, say).
    """
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "state_dict": state,
        "meta": dict(meta or {}),
        **(extra or {}),
    }
    atomic_torch_save(payload, path)


def read_checkpoint(path: str | os.PathLike[str], *, accept_factorised: bool = False) -> dict[str, Any] | None:
    """Read and validate the raw checkpoint dictionary.

    With ``accept_factorised``, an exported factorised checkpoint returns None (load it
    with :func:`load_checkpoint`).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is truncated, not a torch file, another program's checkpoint,
            or a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged files
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be read: the file is truncated or not a "
            f"torch checkpoint ({type(e).__name__}: {e})"
        ) from e
    if accept_factorised and isinstance(payload, dict):
        from shrinkml_env.compression import CHECKPOINT_FORMAT

        if payload.get("format") == CHECKPOINT_FORMAT:
            return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{str(path)!r} is not a ShrinkML ASR checkpoint (format {found!r}, expected {FORMAT!r})"
        )
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks the entries {missing}")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {payload['format_version']}; this "
            f"ShrinkML reads versions up to {FORMAT_VERSION}: upgrade ShrinkML"
        )
    return payload


def save_factorised_asr(
    path: str | os.PathLike[str],
    model: ASRModel,
    tokenizer: CharTokenizer,
    meta: dict[str, Any] | None = None,
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write an exported (factorised) recogniser; :func:`load_checkpoint` reads it back.

    Args:
        path: destination file.
        model: the recogniser, with factorised submodules.
        tokenizer: its tokenizer.
        meta: JSON-like facts to keep with the weights.
        extra: further top-level entries (optimiser state for resumable fine-tuning); the
            factorised loader ignores them.
    """
    from shrinkml_env.compression import CHECKPOINT_FORMAT, factorised_structure, save_factorised

    meta = {**(meta or {}), "asr_config": model.config.to_dict(), "tokenizer": tokenizer.to_dict()}
    if extra is None:
        save_factorised(path, model, meta)
        return
    # The factorised format plus top-level extras, as save_checkpoint(extra=...) does for dense.
    payload = {"format": CHECKPOINT_FORMAT, "structure": factorised_structure(model),
               "state_dict": model.state_dict(), "meta": meta, **extra}
    atomic_torch_save(payload, path)


def is_factorised(model: ASRModel) -> bool:
    """Whether ``model`` holds factorised submodules (an exported, compressed recogniser)."""
    from shrinkml_env.compression import factorised_structure

    return bool(factorised_structure(model))


def save_model(
    path: str | os.PathLike[str],
    model: ASRModel,
    tokenizer: CharTokenizer,
    meta: dict[str, Any] | None = None,
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    """:func:`save_factorised_asr` for a factorised model, else :func:`save_checkpoint`."""
    writer = save_factorised_asr if is_factorised(model) else save_checkpoint
    writer(path, model, tokenizer, meta, extra=extra)


def _load_factorised(path: Path, device: str | torch.device) -> tuple[ASRModel, CharTokenizer, dict[str, Any]]:
    from shrinkml_env.compression import load_factorised

    try:
        model, meta = load_factorised(path, lambda m: ASRModel(ASRConfig.from_dict(m["asr_config"])), map_location=device)
        tokenizer = CharTokenizer.from_dict(meta["tokenizer"])
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"factorised checkpoint {str(path)!r} is not a ShrinkML ASR model: {e}") from e
    return model, tokenizer, meta


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[ASRModel, CharTokenizer, dict[str, Any]]:
    """Rebuild the model (in eval mode, float32) and tokenizer from a checkpoint file alone.

    Reads both dense checkpoints (:func:`save_checkpoint`) and exported factorised ones
    (:func:`save_factorised_asr`).

    Returns:
        ``(model, tokenizer, meta)``.
    """
    path = Path(path)
    payload = read_checkpoint(path, accept_factorised=True)
    if payload is None:
        return _load_factorised(path, device)
    try:
        config = ASRConfig.from_dict(payload["config"])
        tokenizer = CharTokenizer.from_dict(payload["tokenizer"])
        model = ASRModel(config)
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        model.load_state_dict(state)
    except (ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} is inconsistent: {e}") from e
    return model.to(device).eval(), tokenizer, dict(payload.get("meta", {}))
