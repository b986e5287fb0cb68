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
