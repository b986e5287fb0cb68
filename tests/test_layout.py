"""The package's shape: the README's tree names every module, and the layers import one way only."""
from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "routehead_pyserini"
README = PACKAGE.parent / "README.md"
# bottom to top: a module may import from its own layer and the ones before it, never after
LAYERS = ["data", "firststage", "engine", "heads", "rerank", "eval", "pipeline", "cli"]
ROOT = {"config", "errors", "files"}  # below every layer


def _modules() -> dict[str, list[str]]:
    return {layer: sorted(p.stem for p in (PACKAGE / layer).glob("*.py") if not p.stem.startswith("__"))
            for layer in LAYERS}


def _imported(path: Path) -> set[str]:
    """Dotted names (``heads.weights``, ``config``) of the package's modules that ``path`` imports,
    at the top or inside functions."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[:len(parts) - node.level])
            elif (node.module or "").startswith("routehead_pyserini"):
                base = []
                node = ast.ImportFrom(module=node.module.removeprefix("routehead_pyserini").lstrip(".") or None,
                                      names=node.names, level=1)
            else:
                continue
            module = base + (node.module.split(".") if node.module else [])
            for alias in node.names:
                candidate = module + [alias.name]
                full = PACKAGE.joinpath(*candidate)
                found.add(".".join(candidate if full.with_suffix(".py").exists() or full.is_dir() else module))
    return found


def _layer(dotted: str) -> int:
    head = dotted.split(".")[0]
    return -1 if head in ROOT or not head else LAYERS.index(head)


def test_the_readme_tree_names_every_module_of_every_layer():
    tree = README.read_text(encoding="utf-8").split("## Development", 1)[1].split("```", 2)[1]
    for layer, modules in _modules().items():
        block = re.search(rf"^  {layer}/ .*\n((?:^ {{16}}\S.*\n)+)", tree, flags=re.M)
        assert block, f"the README tree has no line for {layer}/"
        listed = sorted(re.findall(r"\b([a-z_]+)\b(?!/)", re.sub(r"\(.*?\)", "", block.group(1))))
        assert listed == modules, f"{layer}/: README lists {listed}, the package holds {modules}"


def test_layers_import_one_way_only():
    backwards = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1:  # root modules: only the public face (__init__) may reach up, lazily
            own = -1 if rel.stem != "__init__" else len(LAYERS)
        else:
            own = LAYERS.index(rel.parts[0])
        for target in _imported(path):
            if _layer(target) > own:
                backwards.append(f"{rel} imports {target}")
    assert backwards == []
