/*
 * fb_dtype.h: the element type of the loop templates.
 *
 * The loops of fb_generic_loops.h, fb_avx512_loops.h and fb_dispatch.h are
 * written once, over FB_T, and compiled once per dtype: fb_loops.h defines
 * FB_DTYPE_DOUBLE (0 or 1), includes this file, then the templates, and does
 * it again for the other dtype.  The templates are real code in real files: a
 * compiler error or a debugger points at the line it is on.  No include
 * guard: each inclusion redefines the names below.
 *
 *                  FB_DTYPE_DOUBLE 1      FB_DTYPE_DOUBLE 0
 *   FB_T           double                 float
 *   FB_NAME(f)     f_d                    f_f          f's version for FB_T
 *   FB_GENERIC(f)  f_d                    f_f          the portable loop f
 *                  (or under FB_HAND_DISPATCH, fb_cpu.h: f_v4_d, f_v3_d or f_d
 *                  by fb_cpu_level(), compiled by fb_generic_versions.h)
 *   FB_EXP         fb_exp_d               fb_exp_f     (fb_math.h)
 *   FB_FABS        fabs                   fabsf
 * and for the AVX-512 loops:
 *   FB_V           __m512d                __m512       a vector of FB_T
 *   FB_M           __mmask8               __mmask16    one bit a lane
 *   FB_W           8                      16           lanes a vector
 *   FB_VEC(op)     _mm512_<op>_pd         _mm512_<op>_ps
 *   FB_VEC_MASK(op) _mm512_<op>_pd_mask   _mm512_<op>_ps_mask
 */
#ifndef FB_DTYPE_DOUBLE
#error "fb_dtype.h: define FB_DTYPE_DOUBLE (1 for double, 0 for float) first"
#endif

#undef FB_T
#undef FB_NAME
#undef FB_NAME_V3
#undef FB_NAME_V4
#undef FB_GENERIC
#undef FB_EXP
#undef FB_FABS
#undef FB_V
#undef FB_M
#undef FB_W
#undef FB_VEC
#undef FB_VEC_MASK

#if FB_DTYPE_DOUBLE
#define FB_T double
#define FB_NAME(f) f##_d
#define FB_NAME_V3(f) f##_v3_d
#define FB_NAME_V4(f) f##_v4_d
#define FB_EXP fb_exp_d
#define FB_FABS fabs
#define FB_V __m512d
#define FB_M __mmask8
#define FB_W 8
#define FB_VEC(op) _mm512_##op##_pd
#define FB_VEC_MASK(op) _mm512_##op##_pd_mask
#else
#define FB_T float
#define FB_NAME(f) f##_f
#define FB_NAME_V3(f) f##_v3_f
#define FB_NAME_V4(f) f##_v4_f
#define FB_EXP fb_exp_f
#define FB_FABS fabsf
#define FB_V __m512
#define FB_M __mmask16
#define FB_W 16
#define FB_VEC(op) _mm512_##op##_ps
#define FB_VEC_MASK(op) _mm512_##op##_ps_mask
#endif

/* The entry points (fb_dispatch.h) call a portable loop through FB_GENERIC:
   the loop itself where the compiler clones it, the version for this CPU
   under hand dispatch. */
#if FB_HAND_DISPATCH
#define FB_GENERIC(f) \
    (fb_cpu_level() == 2 ? FB_NAME_V4(f) : fb_cpu_level() == 1 ? FB_NAME_V3(f) : FB_NAME(f))
#else
#define FB_GENERIC(f) FB_NAME(f)
#endif
