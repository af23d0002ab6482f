"""Print the polynomial coefficients of fb_exp_d / fb_exp_f (src/fb_simd.h).

A Chebyshev fit of exp on the reduced range [-ln2/2, ln2/2], computed in
50-digit arithmetic (mpmath), highest degree first, with the fit's error.
Degree 11 for double and 6 for float reach the precision of each type.

    pip install mpmath && python tools/exp_coefficients.py
"""
import mpmath as mp


def coefficients(degree):
    mp.mp.dps = 50
    half_ln2 = mp.log(2) / 2
    return mp.chebyfit(mp.exp, [-half_ln2, half_ln2], degree + 1, error=True)


if __name__ == "__main__":
    for kind, degree in (("double", 11), ("float", 6)):
        coeffs, error = coefficients(degree)
        print(f"{kind}: degree {degree}, max error {mp.nstr(error, 3)}")
        for c in coeffs:
            print("   ", mp.nstr(c, 19))
