"""Compiler probing for setup.py: OpenMP and optimisation flags.

OpenMP is enabled only when a tiny `#pragma omp parallel` program compiles,
links and runs with the candidate flag (as scikit-learn and POT do); any
failure gives a serial build, reported in the build log and by
`fastbp info`.
"""
import os
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


def _openmp_flag(compiler):
    """The OpenMP flag this compiler accepts, or None."""
    if os.environ.get("FASTBP_OPENMP", "1") == "0":
        print("fastbp: FASTBP_OPENMP=0, building serial kernels", file=sys.stderr)
        return None
    flag = "/openmp" if compiler.compiler_type == "msvc" else "-fopenmp"
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "omp_probe.c")
        with open(source, "w") as f:
            f.write(OPENMP_TEST)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=[flag])
            exe = os.path.join(tmp, "omp_probe")
            compiler.link_executable(objects, exe, extra_postargs=[flag])
            subprocess.run([exe], check=True, capture_output=True, timeout=60)
        except Exception as exc:  # compile, link or run failed: serial build
            print(f"fastbp: OpenMP not available ({type(exc).__name__}); "
                  "building serial kernels", file=sys.stderr)
            return None
    return flag


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
    flag = _openmp_flag(compiler)
    if flag:
        compile_args.append(flag)
        link_args.append(flag)
    return compile_args, link_args, macros
