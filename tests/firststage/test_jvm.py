import os
import subprocess
import sys
from pathlib import Path

import pytest

from routehead_pyserini.firststage import jvm


def test_ensure_jvm_is_idempotent(jvm):
    import jnius_config

    assert jnius_config.vm_running
    from routehead_pyserini.firststage.jvm import ensure_jvm

    assert ensure_jvm() == jvm
    assert jvm.fat_jar.name.startswith("anserini-") and jvm.fat_jar.exists()


def _start_in_subprocess(env_update: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_update}
    code = "from routehead_pyserini.firststage.jvm import ensure_jvm; ensure_jvm(); import pyserini.search.lucene; print('ok')"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_fresh_process_starts_and_imports_pyserini():
    out = _start_in_subprocess({})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_missing_java_is_a_clear_error(tmp_path):
    out = _start_in_subprocess({"JAVA_HOME": str(tmp_path / "no-java")})
    assert out.returncode != 0
    assert "JVMError" in out.stderr and "has no bin/java" in out.stderr


def test_bad_heap_is_a_clear_error():
    out = _start_in_subprocess({"ROUTEHEAD_JAVA_HEAP": "lots"})
    assert out.returncode != 0
    assert "JVMError" in out.stderr and "-Xmxlots" in out.stderr


@pytest.mark.skipif(not list(Path("/usr/lib/jvm").glob("java-17-*")), reason="no Java 17 on this machine")
def test_old_java_is_a_clear_error():
    java17 = sorted(Path("/usr/lib/jvm").glob("java-17-*"))[0]
    out = _start_in_subprocess({"JAVA_HOME": str(java17)})
    assert out.returncode != 0
    assert "too old" in out.stderr and "Java 21" in out.stderr


def test_subprocess_env_points_at_java21(tmp_path):
    env = jvm.subprocess_env(base={"PATH": "/usr/bin", "TMPDIR": str(tmp_path)})
    assert env["PATH"].startswith(env["JAVA_HOME"])
    assert env["CLASSPATH"].endswith("-fatjar.jar")
    assert Path(env["ANSERINI_CLASSPATH"]).is_dir()
