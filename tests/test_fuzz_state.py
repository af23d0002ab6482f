"""The stateful differential fuzz of the layers (tests/statefuzz.py):
>= 10,000 interleaved forward/backward calls, attribute reassignments,
in-place changes of held arrays and inputs, and copies, on every layer
class of fastbp.layers against fastbp.reference.layers, without a
difference or a crash.

It runs in a subprocess so that a crash (a kernel reading state it did not
check) is reported as this test failing, with faulthandler's traceback of
the rule that crashed, instead of ending the test run.  The sequence is
derandomized: every run makes the same calls (``python tests/statefuzz.py
EXAMPLES STEPS random`` explores others).
"""
from conftest import run_isolated

EXAMPLES, STEPS_PER_EXAMPLE, MIN_STEPS = 200, 100, 10_000


def test_layers_agree_with_the_reference_call_after_call():
    code = f"""
        import faulthandler, time
        faulthandler.enable()
        import statefuzz
        start = time.perf_counter()
        steps = statefuzz.run({EXAMPLES}, {STEPS_PER_EXAMPLE})
        print(steps, round(time.perf_counter() - start, 1))
        """
    returncode, out, err = run_isolated(code, timeout=900)
    assert returncode == 0, f"exit {returncode}\n{out[-3000:]}\n{err[-6000:]}"
    steps, seconds = out.split()
    print(f"\nstateful fuzz: {steps} steps in {seconds} s")
    assert int(steps) >= MIN_STEPS
