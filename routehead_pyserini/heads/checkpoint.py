"""Router files: the model a checkpoint records, the one check that a file belongs to the loaded
model, and reading a file safely (``weights_only=True``, sniffed before unpickling).

Saving and loading the router kinds themselves is in :mod:`.router`, :mod:`.soft_router`,
:mod:`.knn_router` and :mod:`.loading`.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import UserError
from ..engine.models import LoadedModel
from ..engine.quantize import quantization_of
from .configs import RouterError

logger = logging.getLogger(__name__)

FORMAT = "routehead-router/1"


def model_info(model: LoadedModel) -> dict[str, Any]:
    """What a trained file records about its LLM: name, fingerprint, layers, heads, hidden size."""
    hidden = int(model.model.config.get_text_config(decoder=True).hidden_size)
    return {"name": model.name, "fingerprint": model.fingerprint, "layers": model.spec.num_layers,
            "heads": model.spec.num_heads, "hidden": hidden}


def _describe(info: Mapping[str, Any]) -> str:
    hidden = f", hidden {info['hidden']}" if info.get("hidden") is not None else ""
    return (f"{info.get('name')!r} ({info.get('layers', '?')} layers x {info.get('heads', '?')} heads{hidden}, "
            f"fingerprint {info.get('fingerprint')})")


def check_model(recorded: Mapping[str, Any], model: LoadedModel, *, what: str = "this router was trained",
                error: type[UserError] = RouterError, advice: str = "") -> None:
    """The one check that a trained file (head weights, a router of any kind) belongs to ``model``.

    ``recorded``: what the file says of its LLM (:func:`model_info`'s keys; missing ones are not
    checked, an empty record is not checked at all). The same weights in another dtype (fingerprints
    ``weights|dtype[|quantisation]`` equal but for the dtype) only warn: the scores differ by rounding.
    Anything else that differs (another quantisation included: int8 scores are not float scores)
    raises ``error``, naming both models, what differs, and ``advice``.
    """
    if not recorded:
        return
    actual = {"name": model.name, "fingerprint": model.fingerprint,
              "layers": model.spec.num_layers if model.spec is not None else None,
              "heads": model.spec.num_heads if model.spec is not None else None}
    if recorded.get("hidden") is not None:  # a loaded model, or a ModelIdentity (peek_model: nothing loaded)
        actual["hidden"] = model_info(model)["hidden"] if isinstance(model, LoadedModel) else getattr(model, "hidden_size", None)
    keys = [k for k in ("fingerprint", "layers", "heads", "hidden") if recorded.get(k) is not None and actual.get(k) is not None]
    problems = [f"{k} {recorded[k]!r} != {actual[k]!r}" for k in keys if recorded[k] != actual[k]]
    fingerprint = recorded.get("fingerprint")
    if problems == [f"fingerprint {fingerprint!r} != {actual['fingerprint']!r}"]:
        mine, theirs = fingerprint.split("|"), actual["fingerprint"].split("|")
        if mine[0] == theirs[0] and mine[2:] != theirs[2:]:
            trained, running = quantization_of(fingerprint) or "unquantised", quantization_of(actual["fingerprint"]) or "unquantised"
            raise error(f"{what} on {trained} scores of model {recorded.get('name')!r}, and the model is loaded {running}: "
                        f"load it with --quantize {quantization_of(fingerprint) or 'none'} (or leave --quantize out)")
    if problems == [f"fingerprint {fingerprint!r} != {actual['fingerprint']!r}"] \
            and fingerprint.split("|")[0] == actual["fingerprint"].split("|")[0]:
        logger.warning("%s on %s scores; the model runs in %s (the same weights): scores differ by rounding only",
                       what, fingerprint.split("|")[-1], actual["fingerprint"].split("|")[-1])
        return
    if problems:
        raise error(f"{what} for model {_describe(recorded)}, not for model {_describe(actual)}: "
                    f"{'; '.join(problems)}{'; ' + advice if advice else ''}")


def fitting_model_info(model: LoadedModel, shape: tuple[int, int], input_dim: int, recorded: dict | None) -> dict:
    """``model_info(model)``, after checking that a router of ``shape`` and ``input_dim`` belongs to it."""
    info = model_info(model)
    if recorded:
        check_model(recorded, model)
    if (info["layers"], info["heads"]) != tuple(shape):
        raise RouterError(f"router over {shape[0]} x {shape[1]} heads cannot belong to model "
                          f"{model.name!r} with {info['layers']} layers x {info['heads']} heads")
    if info["hidden"] != input_dim:
        raise RouterError(f"router input size {input_dim} != model {model.name!r} hidden size {info['hidden']}")
    return info


def check_plain(value: Any, where: str) -> None:
    """Only plain values load with ``weights_only=True``: refuse anything else when saving."""
    if value is None or type(value) in (str, int, float, bool):
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise RouterError(f"{where}: keys must be strings, got {key!r}")
            check_plain(item, f"{where}.{key}")
        return
    raise RouterError(f"{where}: {type(value).__name__} values cannot be stored in a router file "
                      "(use str, numbers, bools, None, lists and dicts)")


ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def sniff_router_file(path: str | os.PathLike[str], start: bytes, prefix: str = "not ") -> None:
    """Raise :class:`RouterError` when ``start`` (the file's first bytes) cannot begin a router file,
    saying what the file looks like instead."""
    if start.startswith(ZIP_MAGIC):
        return
    if not start:
        what = "it is empty"
    elif start.lstrip().startswith((b"{", b"[")):
        what = "it looks like JSON"
    else:
        try:
            what = f"it is text starting {start.decode('utf-8').splitlines()[0][:40]!r}"
        except (UnicodeDecodeError, IndexError):
            what = f"it starts with bytes {start[:8].hex(' ')}"
    raise RouterError(f"{path}: {prefix}a router file (a torch archive written by `train`): {what}")


def read_router_file(path: str | os.PathLike[str]) -> Any:
    """The contents of a router file of any kind (``weights_only=True``)."""
    try:
        with open(path, "rb") as handle:
            sniff_router_file(path, handle.read(64))
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RouterError(f"router file not found: {path}") from None
    except RouterError:
        raise
    except Exception as error:  # unpickling raises many types for a file that is not ours
        text = str(error)
        if text.startswith("Weights only load failed"):  # torch's advice to load unsafely is not ours to pass on
            why = "it holds objects other than tensors and plain values, which are never loaded"
        else:
            why = text.split(". ")[0].splitlines()[0] if text else type(error).__name__
        raise RouterError(f"{path}: a damaged or foreign torch archive, not a router file ({why})") from None
