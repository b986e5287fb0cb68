"""int8 weights and activations for the decoder's linear layers (``--quantize int8``).

Every ``nn.Linear`` of the decoder (attention projections and MLP; not the embeddings, not the LM
head, which scoring never runs) is replaced by an :class:`Int8Linear`: weights rounded once to int8
with one scale per output channel, activations rounded per token at run time (symmetric, absmax),
the product computed in int32 by ``torch._int_mm`` (the integer GEMM of PyTorch itself, oneDNN on
the CPU) and scaled back to float32. Attention, norms, rotary embeddings and softmax stay in float32,
so the query-row attention implementation is untouched.

Why not a library: ``torch.ao.quantization.quantize_dynamic`` is deprecated (PyTorch says it will be
removed), and torchao's ``Int8DynamicActivationInt8WeightConfig``, its maintained successor, ran at
half this module's speed on these CPUs in eager mode (it re-lays out the weight on every call; its
fast path needs ``torch.compile``). ``bench/bench_int8.py`` times the three side by side.

Quantisation changes the scores, so it is part of the model fingerprint (:func:`fingerprint_suffix`):
score caches, head weights and presets of an int8 model are its own, and a file trained on one
quantisation is refused on the other.
"""
from __future__ import annotations

import torch

from ..config import QUANTIZATIONS  # ("none", "int8"); None and "none": the float weights as loaded
_MIN_ROWS = 17  # torch._int_mm needs more than 16 rows on some backends: shorter inputs are padded


class QuantizeError(ValueError):
    """An unknown quantisation, or one that cannot run on this device."""


class Int8Linear(torch.nn.Module):
    """``y = x W^T + b`` with int8 ``W`` (per output channel) and int8 ``x`` (per token), int32 accumulation."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach().to(torch.float32)
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        qweight = torch.round(weight / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # (in, out) in column-major layout: the weight's own rows, transposed without a copy
        self.register_buffer("qweight_t", qweight.contiguous().t(), persistent=False)
        self.register_buffer("weight_scale", scale, persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.float32)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).to(torch.float32)
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).div_(127.0)
        qrows = torch.round(rows / scale).to(torch.int8)
        n = qrows.shape[0]
        if n < _MIN_ROWS:
            qrows = torch.cat([qrows, qrows.new_zeros(_MIN_ROWS - n, qrows.shape[1])])
        out = torch._int_mm(qrows, self.qweight_t)[:n].to(torch.float32)
        out.mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def normalise(quantize: str | None) -> str | None:
    """``None`` for no quantisation, else the checked name."""
    if quantize is None or quantize == "none":
        return None
    if quantize not in QUANTIZATIONS:
        raise QuantizeError(f"unknown quantisation {quantize!r}; use one of {', '.join(QUANTIZATIONS)}")
    return quantize


def quantize_decoder(decoder: torch.nn.Module, quantize: str | None) -> int:
    """Replace every ``nn.Linear`` inside ``decoder`` in place; returns how many were replaced."""
    if normalise(quantize) is None:
        return 0
    replaced = 0
    for parent in list(decoder.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, Int8Linear(child))
                replaced += 1
    return replaced


def quantization_of(fingerprint: str | None) -> str | None:
    """The quantisation a model fingerprint records (``None``: float weights, or no fingerprint)."""
    parts = (fingerprint or "").split("|")
    return parts[2] if len(parts) > 2 and parts[2] in QUANTIZATIONS else None


def resolve(explicit: str | None, recorded_fingerprint: str | None, origin: str) -> str | None:
    """The quantisation to load a model with: the trained file's (from its recorded fingerprint)
    unless ``explicit`` says otherwise; an explicit value that differs from the file's is an error."""
    recorded = quantization_of(recorded_fingerprint)
    if explicit is None:
        return recorded
    wanted = normalise(explicit)
    if recorded_fingerprint and wanted != recorded:
        raise QuantizeError(f"--quantize {explicit} conflicts with {origin}, which was trained on "
                            f"{recorded or 'unquantised'} scores; leave --quantize out to use the file's")
    return wanted


def fingerprint_suffix(quantize: str | None) -> str:
    """What a quantisation adds to a model fingerprint (``""`` for none)."""
    name = normalise(quantize)
    return "" if name is None else f"|{name}"
