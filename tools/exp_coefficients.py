"""Print the exp constants of src/fb_math.h, computed in 50-digit arithmetic (mpmath).

* fb_exp_d / fb_exp_f (the generic loops, and fb_exp512_f): a Chebyshev fit
  of exp on the reduced range [-ln2/2, ln2/2], highest degree first, with
  the fit's error.  Degree 11 for double and 6 for float reach the precision
  of each type.
* fb_exp512_d (AVX-512, double): e**x = 2**(k/16) * e**r with |r| <= ln2/32;
  the table of 2**(j/16), j = 0..15, as a double plus the double nearest its
  remainder, and a Chebyshev fit P of (e**r - 1)/r (degree 5), so that
  e**r = 1 + r P(r) to about 1e-17.

    pip install mpmath && python tools/exp_coefficients.py
"""
import mpmath as mp

mp.mp.dps = 50


def coefficients(degree):
    half_ln2 = mp.log(2) / 2
    return mp.chebyfit(mp.exp, [-half_ln2, half_ln2], degree + 1, error=True)


def table_coefficients(degree=5):
    """Fit of (e**r - 1)/r on [-ln2/32, ln2/32] and the largest error of
    1 + r P(r) against e**r there."""
    h = mp.log(2) / 32
    coeffs = mp.chebyfit(lambda r: mp.expm1(r) / r if r != 0 else mp.mpf(1), [-h, h],
                         degree + 1)
    worst = max(abs(1 + r * mp.polyval(coeffs, r) - mp.exp(r))
                for r in (h * i / 2000 for i in range(-2000, 2001)))
    return coeffs, worst


def table():
    """(hi, lo) of 2**(j/16): hi the nearest double, lo the nearest double to the rest."""
    rows = []
    for j in range(16):
        v = mp.power(2, mp.mpf(j) / 16)
        hi = float(v)
        rows.append((hi, float(v - mp.mpf(hi))))
    return rows


if __name__ == "__main__":
    for kind, degree in (("double", 11), ("float", 6)):
        coeffs, error = coefficients(degree)
        print(f"{kind}: degree {degree}, max error {mp.nstr(error, 3)}")
        for c in coeffs:
            print("   ", mp.nstr(c, 19))
    coeffs, error = table_coefficients()
    print(f"double, table path: (e**r - 1)/r degree 5, max error of 1 + r P(r) "
          f"{mp.nstr(error, 3)}")
    for c in coeffs:
        print("   ", mp.nstr(c, 19))
    print("2**(j/16), hi and lo:")
    for j, (hi, lo) in enumerate(table()):
        print(f"    {j:2d} {hi!r} {lo!r}")
