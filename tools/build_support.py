"""Compiler probing for setup.py: OpenMP and optimisation flags.

OpenMP is enabled only when a tiny `#pragma omp parallel` program compiles,
links and runs with a candidate flag set (as scikit-learn and POT do); the
first set that works is used, and if none does the build is serial, reported
in the build log and by `fastbp info`.  The candidates:

  -fopenmp                 GCC; Clang with an OpenMP runtime installed
                           (Linux: libomp-dev)
  /openmp                  MSVC
  -Xpreprocessor -fopenmp  Apple Clang (macOS), with Homebrew's libomp
    -I<libomp>/include     (`brew install libomp`, found by
    -L<libomp>/lib -lomp   `brew --prefix libomp`, $FASTBP_LIBOMP_PREFIX or
                           Homebrew's usual places; keg-only, so the paths
                           are given explicitly)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

OPENMP_TEST = textwrap.dedent("""\
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int threads = 0;
        #pragma omp parallel reduction(+:threads)
        threads += 1;
        printf("%d\\n", threads > 0);
        return threads > 0 ? 0 : 1;
    }
    """)

# Homebrew's libomp prefix on Apple Silicon and on Intel Macs
HOMEBREW_LIBOMP = ("/opt/homebrew/opt/libomp", "/usr/local/opt/libomp")


def _libomp_prefixes():
    """Where a macOS libomp may be: $FASTBP_LIBOMP_PREFIX, `brew --prefix
    libomp`, then Homebrew's default prefixes (existing ones only)."""
    prefixes = []
    if os.environ.get("FASTBP_LIBOMP_PREFIX"):
        prefixes.append(os.environ["FASTBP_LIBOMP_PREFIX"])
    brew = shutil.which("brew")
    if brew:
        try:
            out = subprocess.run([brew, "--prefix", "libomp"], capture_output=True,
                                 text=True, timeout=60)
            if out.returncode == 0 and out.stdout.strip():
                prefixes.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    prefixes += HOMEBREW_LIBOMP
    unique = []
    for prefix in prefixes:
        if os.path.isdir(prefix) and prefix not in unique:
            unique.append(prefix)
    return unique


def openmp_candidates(compiler_type, platform=sys.platform, libomp_prefixes=None):
    """(compile_args, link_args) sets to try, in order, for this compiler."""
    if compiler_type == "msvc":
        return [(["/openmp"], [])]
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if platform == "darwin":
        for prefix in _libomp_prefixes() if libomp_prefixes is None else libomp_prefixes:
            lib = os.path.join(prefix, "lib")
            candidates.append(
                (["-Xpreprocessor", "-fopenmp", "-I" + os.path.join(prefix, "include")],
                 ["-L" + lib, "-lomp", "-Wl,-rpath," + lib]))
    return candidates


def _openmp_runs(compiler, compile_args, link_args):
    """True when the OpenMP test program compiles, links and runs with these flags."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "omp_probe.c")
        with open(source, "w") as f:
            f.write(OPENMP_TEST)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
            exe = os.path.join(tmp, "omp_probe")
            compiler.link_executable(objects, exe, extra_postargs=link_args)
            subprocess.run([exe], check=True, capture_output=True, timeout=60)
        except Exception as exc:  # compile, link or run failed: try the next set
            print(f"fastbp: OpenMP probe with {' '.join(compile_args)} failed "
                  f"({type(exc).__name__})", file=sys.stderr)
            return False
    return True


def _openmp_flags(compiler):
    """(compile_args, link_args) of the first OpenMP flag set that works, or None."""
    if os.environ.get("FASTBP_OPENMP", "1") == "0":
        print("fastbp: FASTBP_OPENMP=0, building serial kernels", file=sys.stderr)
        return None
    for compile_args, link_args in openmp_candidates(compiler.compiler_type):
        if _openmp_runs(compiler, compile_args, link_args):
            print(f"fastbp: OpenMP on (compile {' '.join(compile_args)}; link "
                  f"{' '.join(link_args) or '-'})", file=sys.stderr)
            return compile_args, link_args
    print("fastbp: OpenMP not available; building serial kernels (see README, Install)",
          file=sys.stderr)
    return None


def _compiler_accepts(compiler, flag):
    """True when the compiler compiles an empty C file with ``flag``."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "flag_probe.c")
        with open(source, "w") as f:
            f.write("int main(void) { return 0; }\n")
        try:
            compiler.compile([source], output_dir=tmp, extra_postargs=[flag, "-Werror"])
        except Exception:
            return False
    return True


def compiler_flags(compiler):
    """(compile_args, link_args, define_macros) for the extensions."""
    compile_args, link_args, macros = [], [], []
    if compiler.compiler_type != "msvc":
        # -O3 for vectorisation; no -ffast-math (NaN/inf semantics matter).
        # -fno-math-errno lets sqrt vectorise (nothing reads errno) and
        # -fno-trapping-math lets the compiler turn the branch-free selects of
        # src/fb_generic_loops.h into blends on AVX2/SSE (nothing installs FP trap
        # handlers); neither changes a computed value.
        compile_args += ["-O3", "-fno-math-errno", "-fno-trapping-math"]
        # `omp simd` reductions in src/fb_generic_loops.h, with or without the OpenMP runtime
        if _compiler_accepts(compiler, "-fopenmp-simd"):
            compile_args.append("-fopenmp-simd")
            macros.append(("FB_OPENMP_SIMD", "1"))
        if os.environ.get("FASTBP_NATIVE", "0") == "1":
            compile_args.append("-march=native")
            macros.append(("FASTBP_NATIVE", "1"))
    openmp = _openmp_flags(compiler)
    if openmp:
        compile_args += openmp[0]
        link_args += openmp[1]
    return compile_args, link_args, macros
