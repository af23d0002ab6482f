"""setup.py's compiler probing (tools/build_support.py): which OpenMP flag
sets are tried, in which order, and that the first one that compiles, links
and runs is the one used.  The macOS candidates (Homebrew's libomp through
-Xpreprocessor) are checked as data: no Mac here."""
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (CHECKOUT / "tools" / "build_support.py").exists(),
                                reason="needs the source checkout's tools/build_support.py")


@pytest.fixture
def build_support(monkeypatch):
    monkeypatch.syspath_prepend(str(CHECKOUT))
    from tools import build_support
    return build_support


def test_linux_and_windows_candidates(build_support):
    assert build_support.openmp_candidates("unix", "linux") == [(["-fopenmp"], ["-fopenmp"])]
    assert build_support.openmp_candidates("msvc", "win32") == [(["/openmp"], [])]


def test_macos_tries_plain_fopenmp_then_each_libomp(build_support):
    prefixes = ["/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"]
    candidates = build_support.openmp_candidates("unix", "darwin", libomp_prefixes=prefixes)
    assert candidates[0] == (["-fopenmp"], ["-fopenmp"])       # Homebrew LLVM, GCC
    assert candidates[1:] == [
        (["-Xpreprocessor", "-fopenmp", f"-I{p}/include"], [f"-L{p}/lib", "-lomp",
                                                           f"-Wl,-rpath,{p}/lib"])
        for p in prefixes]


def test_libomp_prefixes_env_first_and_only_existing(build_support, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBP_LIBOMP_PREFIX", str(tmp_path))
    monkeypatch.setenv("PATH", "")                               # no brew
    monkeypatch.setattr(build_support, "HOMEBREW_LIBOMP",
                        (str(tmp_path), str(tmp_path / "missing")))
    assert build_support._libomp_prefixes() == [str(tmp_path)]


def _compiler():
    try:
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler
    except ImportError:
        pytest.skip("no setuptools distutils")
    compiler = new_compiler()
    customize_compiler(compiler)
    return compiler


@pytest.mark.skipif(sys.platform == "win32", reason="GCC/Clang flags")
def test_probe_skips_a_failing_flag_set_and_takes_the_next(build_support, monkeypatch,
                                                           capsys):
    compiler = _compiler()
    if not build_support._openmp_runs(compiler, ["-fopenmp"], ["-fopenmp"]):
        pytest.skip("this compiler has no OpenMP runtime")
    monkeypatch.delenv("FASTBP_OPENMP", raising=False)
    bad = (["-fopenmp", "-DFB_BROKEN", "-include", "no_such_header.h"], ["-fopenmp"])
    good = (["-fopenmp"], ["-fopenmp"])
    monkeypatch.setattr(build_support, "openmp_candidates", lambda *a, **k: [bad, good])
    assert build_support._openmp_flags(compiler) == good
    err = capsys.readouterr().err
    assert "no_such_header.h failed" in err and "OpenMP on (compile -fopenmp;" in err


@pytest.mark.skipif(sys.platform == "win32", reason="GCC/Clang flags")
def test_probe_gives_serial_when_nothing_works_or_when_asked(build_support, monkeypatch,
                                                             capsys):
    compiler = _compiler()
    monkeypatch.delenv("FASTBP_OPENMP", raising=False)
    monkeypatch.setattr(build_support, "openmp_candidates",
                        lambda *a, **k: [(["-include", "no_such_header.h"], [])])
    assert build_support._openmp_flags(compiler) is None
    assert "building serial kernels" in capsys.readouterr().err
    monkeypatch.setenv("FASTBP_OPENMP", "0")
    monkeypatch.setattr(build_support, "openmp_candidates", lambda *a, **k: pytest.fail("probed"))
    assert build_support._openmp_flags(compiler) is None
