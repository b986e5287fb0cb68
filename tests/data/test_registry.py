import pytest
import yaml

from routehead_pyserini.firststage.index import IndexNotFoundError, resolve_index
from routehead_pyserini.data.registry import RegistryError, load_registry, lookup, register


def test_builtin_names_point_into_the_data_dir(tmp_path):
    entries = load_registry(tmp_path)
    assert {"demo", "trec-dl-2019", "scifact", "vaswani", "cranfield", "cacm"} <= set(entries)
    assert entries["vaswani"].corpus == tmp_path / "vaswani" / "corpus.jsonl"
    assert entries["demo"].qrels.exists()


def test_lookup_files_and_names(shared_data, tmp_path):
    assert lookup("trec-dl-2019", "run", shared_data).name == "run.bm25-pyserini.top100.trec"
    assert lookup("scifact", "qrels", shared_data).name == "train.tsv"
    existing = tmp_path / "my.trec"
    existing.write_text("")
    assert lookup(str(existing), "run") == existing
    with pytest.raises(RegistryError, match="neither an existing file nor a registered name"):
        lookup("nope", "qrels")
    with pytest.raises(RegistryError, match="has no run"):
        lookup("vaswani", "run", shared_data)
    with pytest.raises(FileNotFoundError, match="data directory"):
        lookup("vaswani", "qrels", tmp_path)


def test_user_registry_overlays_and_register(_isolated_registry, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "a", "text": "x"}\n')
    path = register("mine", corpus=corpus, index=tmp_path / "idx")
    assert path == _isolated_registry
    assert yaml.safe_load(path.read_text())["mine"]["corpus"] == str(corpus.resolve())
    assert load_registry()["mine"].index == (tmp_path / "idx").resolve()
    with pytest.raises(RegistryError, match="unknown registry fields"):
        register("mine", color="red")
    path.unlink()


def test_malformed_user_registry(_isolated_registry):
    _isolated_registry.write_text("demo:\n  colour: red\n")
    try:
        with pytest.raises(RegistryError, match="unknown keys"):
            load_registry()
    finally:
        _isolated_registry.unlink()


def test_registered_index_is_built_on_first_use(jvm, _isolated_registry, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "a", "text": "hello world"}\n')
    register("tiny", corpus=corpus, index=tmp_path / "idx")
    try:
        assert resolve_index("tiny", progress=False) == (tmp_path / "idx").resolve()
        assert (tmp_path / "idx" / "routehead-index.json").exists()
    finally:
        _isolated_registry.unlink()


def test_unknown_index_names_say_what_to_do(jvm):
    with pytest.raises(IndexNotFoundError, match="routehead-pyserini index --corpus"):
        resolve_index("no-such-index-anywhere")
    with pytest.raises(IndexNotFoundError, match="does not exist"):
        resolve_index("some/missing/folder")


def test_offline_prebuilt_index_fails_loudly(jvm, monkeypatch):
    """Pyserini returns None (and its CLI exits 0) when a prebuilt index cannot be fetched; we raise."""
    import pyserini.util

    def offline(*args, **kwargs):
        raise ValueError("Unable to download prebuilt index at any known URLs.")

    monkeypatch.setattr(pyserini.util, "download_prebuilt_index", offline)
    with pytest.raises(IndexNotFoundError, match="could not be downloaded"):
        resolve_index("msmarco-v1-passage")


def test_data_dir_order_ignores_the_working_folder(monkeypatch, tmp_path):
    from routehead_pyserini import config

    monkeypatch.delenv(config.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)  # a cwd with no ../shared: the default must not depend on it
    default = config.data_dir()
    assert default.is_absolute()
    assert default == (config.CHECKOUT_DATA_DIR if config.CHECKOUT_DATA_DIR.is_dir() else tmp_path / "xdg" / "routehead-pyserini")
    monkeypatch.setattr(config, "CHECKOUT_DATA_DIR", tmp_path / "no-checkout")
    assert config.data_dir() == tmp_path / "xdg" / "routehead-pyserini"
    monkeypatch.setenv(config.DATA_DIR_ENV, str(tmp_path / "env"))
    assert config.data_dir() == tmp_path / "env"
    assert config.data_dir(tmp_path / "option") == tmp_path / "option"


def test_missing_benchmark_says_how_to_get_it(tmp_path):
    from click.testing import CliRunner

    from routehead_pyserini.cli import main

    with pytest.raises(FileNotFoundError, match=r"ir_datasets 'vaswani'.*Getting the data"):
        lookup("vaswani", "corpus", tmp_path)
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "datasets"])
    assert result.exit_code == 0
    listing = result.output.split("\nscifact\n")[1].split("\nvaswani\n")[0]
    assert f"to get it: put its files in {tmp_path / 'scifact'}/ (from ir_datasets 'beir/scifact/train'" in listing
    assert "to get it" not in result.output.split("\ndemo\n")[1].split("\nlisa\n")[0]  # shipped in the package


def test_a_duplicate_key_or_a_non_path_value_in_the_user_registry_is_an_error(_isolated_registry):
    path = _isolated_registry
    old = path.read_text() if path.exists() else None
    try:
        path.write_text("mine:\n  corpus: /tmp/c.jsonl\n  corpus: /tmp/d.jsonl\n")
        with pytest.raises(RegistryError, match=r"registry\.yaml: invalid YAML at line 3: duplicate key 'corpus' \(first at line 2\)"):
            load_registry()
        path.write_text("mine: {corpus: /tmp/c.jsonl}\nmine: {index: /tmp/i}\n")
        with pytest.raises(RegistryError, match=r"line 2: duplicate key 'mine' \(first at line 1\)"):
            load_registry()
        path.write_text("mine: {corpus: .nan}\n")
        with pytest.raises(RegistryError, match=r"entry 'mine': corpus must be a path \(a string\), got nan"):
            load_registry()
        path.write_bytes("\ufeffmine: {corpus: /tmp/c.jsonl}\n".encode("utf-8"))
        assert str(load_registry()["mine"].corpus) == "/tmp/c.jsonl"
    finally:
        if old is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(old)
