"""What the benchmarks share: each setting runs in a fresh Python process, so that peak memory and
start-up are its own, and reports one JSON line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_child(script: str, child_args: list[str], label: dict, error_lines: int = 1) -> dict:
    """Run ``python script *child_args`` and return the JSON object on its last stdout line, or
    ``label`` with the last ``error_lines`` lines of stderr under ``"failed"``. Prints the result."""
    out = subprocess.run([sys.executable, script, *child_args], capture_output=True, text=True)
    if out.returncode != 0:
        result = {**label, "failed": out.stderr.strip().splitlines()[-error_lines:]}
    else:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def write_results(path: Path | None, payload) -> None:
    """Write ``payload`` as indented JSON to ``path`` (creating its folder), if a path is given."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=1) + "\n")


PEAK_FLOPS = 78e9  # fp32 matrix-multiply peak measured on these 2 cores (../shared/ENVIRONMENT.md)


def layer_flops_per_token(config) -> float:
    """2 x the weights one decoder layer multiplies per token (attention projections and the MLP)."""
    hidden = config.hidden_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q = hidden * config.num_attention_heads * head_dim
    kv = 2 * hidden * config.num_key_value_heads * head_dim
    mlp = 3 * hidden * config.intermediate_size
    return 2.0 * (2 * q + kv + mlp)
