/*
 * fb_pool.h: max pooling (chapter 7) in one pass each way, no im2col.
 *
 * Forward: each window's first maximal element in (ky, kx) order -- NumPy's
 * argmax over the book's im2col rows: ties go to the first element, the
 * first NaN wins and propagates -- its value into out and its position
 * ky*fw + kx in the (padded) window into arg (one byte: windows hold at most
 * 256 elements).  Padded positions never win.  With relu, out is ReLU of the
 * maximum, which is the maximum of ReLU of the window (both are monotone),
 * so a ReLU before the pooling costs nothing.
 * Backward: each dout goes to its window's chosen element; elements chosen
 * by several overlapping windows add up, in the book's order (col2im adds a
 * position's taps in (ky, kx) order: windows in descending (oy, ox) order),
 * onto +0, so results are the book's bit for bit.  With pooled (the forward's
 * output when relu was fused) a window whose output is <= 0 passes nothing.
 *
 * A template over FB_T (fb_dtype.h), compiled once per dtype by fb_loops.h;
 * fb_window and fb_layout come from fb_conv.h (window fh x fw = pool_h x
 * pool_w).  x and dx have layout xl; out, arg, dout and pooled share layout
 * ol.  0 <= pad < min(fh, fw), so every window holds an input element.
 */
#ifndef FB_POOL_ONCE
#define FB_POOL_ONCE
/* The smallest dx that backward writes in streaming stores (AVX-512, 2 x 2
   windows): past the caches pays only when the call's arrays don't fit in
   the last-level cache together anyway.  Measured here (32 MB L3), pooling
   (100, 30, 24, 24) forward + backward: float64 (dx 13.8 MB) streamed 2.2x
   faster called again and again, 13% faster with the caches flushed between
   calls; float32 (dx 6.9 MB) streamed 7-25% slower. */
#define FB_POOL_STREAM_MIN_BYTES ((ptrdiff_t)8 << 20)
/* How far ahead of its reads the 2 x 2 loops prefetch x (forward), and a
   quarter of it dout and arg (backward): the hardware prefetcher does not
   keep up with their masked loads, (100, 30, 24, 24) float64 forward 1.9 ->
   0.65 ms and backward 1.0 -> 0.49 ms with the input out of cache on the
   development machine (AMD Zen 5). */
#define FB_POOL_PREFETCH_BYTES 4096
#endif

#ifndef FB_T
#error "fb_pool.h is a template: include fb_loops.h"
#endif

/* The plane (image i, channel ch) of plane index q: the loops visit planes
   in memory order, images outer for NCHW, channels outer for CNHW. */
static inline void FB_NAME(fb_plane_of)(ptrdiff_t q, const fb_window *g, fb_layout l,
                                        ptrdiff_t *i, ptrdiff_t *ch)
{
    if (l.n >= l.c) {
        *i = q / g->c;
        *ch = q % g->c;
    } else {
        *ch = q / g->n;
        *i = q % g->n;
    }
}

/* 2 x 2 windows at stride 2, no padding: the book's networks' pooling. */
FB_CLONES static void FB_NAME(fb_maxpool2_forward_plane)(const FB_T *restrict x, ptrdiff_t w,
                                                         ptrdiff_t oh, ptrdiff_t ow,
                                                         FB_T *restrict out,
                                                         uint8_t *restrict arg, int relu)
{
    for (ptrdiff_t oy = 0; oy < oh; oy++) {
        const FB_T *r0 = x + 2 * oy * w, *r1 = r0 + w;
        FB_T *o = out + oy * ow;
        uint8_t *a = arg + oy * ow;
        for (ptrdiff_t ox = 0; ox < ow; ox++) {
            FB_T best = r0[2 * ox], v;
            int idx = 0, take;
            v = r0[2 * ox + 1];
            take = (v > best) | ((v != v) & (best == best));
            best = take ? v : best;
            idx = take ? 1 : idx;
            v = r1[2 * ox];
            take = (v > best) | ((v != v) & (best == best));
            best = take ? v : best;
            idx = take ? 2 : idx;
            v = r1[2 * ox + 1];
            take = (v > best) | ((v != v) & (best == best));
            best = take ? v : best;
            idx = take ? 3 : idx;
            o[ox] = (relu & (best <= (FB_T)0)) ? (FB_T)0 : best;
            a[ox] = (uint8_t)idx;
        }
    }
}

FB_CLONES static void FB_NAME(fb_maxpool_forward_plane)(const FB_T *restrict x,
                                                        const fb_window *g,
                                                        FB_T *restrict out,
                                                        uint8_t *restrict arg, int relu)
{
    const ptrdiff_t s = g->stride, p = g->pad;
    for (ptrdiff_t oy = 0; oy < g->oh; oy++) {
        ptrdiff_t y0 = oy * s - p;
        ptrdiff_t ky_lo = y0 < 0 ? -y0 : 0;
        ptrdiff_t ky_hi = g->h - y0 < g->fh ? g->h - y0 : g->fh;
        for (ptrdiff_t ox = 0; ox < g->ow; ox++) {
            ptrdiff_t x0 = ox * s - p;
            ptrdiff_t kx_lo = x0 < 0 ? -x0 : 0;
            ptrdiff_t kx_hi = g->w - x0 < g->fw ? g->w - x0 : g->fw;
            FB_T best = x[(y0 + ky_lo) * g->w + x0 + kx_lo];
            ptrdiff_t idx = ky_lo * g->fw + kx_lo;
            for (ptrdiff_t ky = ky_lo; ky < ky_hi; ky++) {
                const FB_T *row = x + (y0 + ky) * g->w + x0;
                for (ptrdiff_t kx = kx_lo; kx < kx_hi; kx++) {
                    FB_T v = row[kx];
                    if (v > best || (v != v && best == best)) {
                        best = v;
                        idx = ky * g->fw + kx;
                    }
                }
            }
            out[oy * g->ow + ox] = (relu && best <= (FB_T)0) ? (FB_T)0 : best;
            arg[oy * g->ow + ox] = (uint8_t)idx;
        }
    }
}

#if FB_AVX512_MODE
/* ---- AVX-512: the 2 x 2, stride-2 windows of a plane, FB_W at a time ------
   Two vectors of a row hold FB_W windows' left and right elements
   interleaved: a permutation splits them (even / odd lanes); backward
   interleaves them again.  The tail is masked.  Per-dtype lane helpers: */
#undef FB_POOL_ISET1
#undef FB_POOL_IMOV
#undef FB_POOL_ICMPEQ
#undef FB_POOL_STORE_BYTES
#undef FB_POOL_WIDEN_BYTES
#undef FB_POOL_EVEN
#undef FB_POOL_ODD
#undef FB_POOL_LOW_PAIRS
#undef FB_POOL_HIGH_PAIRS
#undef FB_POOL_PERMUTE2
#if FB_DTYPE_DOUBLE
#define FB_POOL_ISET1 _mm512_set1_epi64
#define FB_POOL_IMOV _mm512_mask_mov_epi64
#define FB_POOL_ICMPEQ _mm512_cmpeq_epi64_mask
#define FB_POOL_STORE_BYTES _mm512_mask_cvtepi64_storeu_epi8
#define FB_POOL_WIDEN_BYTES _mm512_cvtepu8_epi64
#define FB_POOL_EVEN _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0)
#define FB_POOL_ODD _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1)
#define FB_POOL_LOW_PAIRS _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0)
#define FB_POOL_HIGH_PAIRS _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4)
#define FB_POOL_PERMUTE2 _mm512_permutex2var_pd
#else
#define FB_POOL_ISET1 _mm512_set1_epi32
#define FB_POOL_IMOV _mm512_mask_mov_epi32
#define FB_POOL_ICMPEQ _mm512_cmpeq_epi32_mask
#define FB_POOL_STORE_BYTES _mm512_mask_cvtepi32_storeu_epi8
#define FB_POOL_WIDEN_BYTES _mm512_cvtepu8_epi32
#define FB_POOL_EVEN _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0)
#define FB_POOL_ODD _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1)
#define FB_POOL_LOW_PAIRS _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0)
#define FB_POOL_HIGH_PAIRS _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, \
                                            25, 9, 24, 8)
#define FB_POOL_PERMUTE2 _mm512_permutex2var_ps
#endif

/* The first t lanes. */
static inline FB_M FB_NAME(fb_pool_lanes)(ptrdiff_t t)
{
    return (FB_M)(t <= 0 ? 0 : t >= FB_W ? ~(uint32_t)0 : (((uint32_t)1 << t) - 1));
}

/* v replaces best where v > best, or v is NaN and best is not (NumPy's argmax). */
FB_AVX512 static inline FB_M FB_NAME(fb_pool_takes)(FB_V v, FB_V best)
{
    return FB_VEC_MASK(cmp)(v, best, _CMP_GT_OQ)
           | (FB_VEC_MASK(cmp)(v, v, _CMP_UNORD_Q) & FB_VEC_MASK(cmp)(best, best, _CMP_ORD_Q));
}

FB_AVX512 static void FB_NAME(fb_avx512_maxpool2_forward_plane)(const FB_T *x, ptrdiff_t w,
                                                                ptrdiff_t oh, ptrdiff_t ow,
                                                                FB_T *out, uint8_t *arg,
                                                                int relu)
{
    const __m512i even = FB_POOL_EVEN, odd = FB_POOL_ODD;
    const __m512i one = FB_POOL_ISET1(1), two = FB_POOL_ISET1(2), three = FB_POOL_ISET1(3);
    const FB_V zero = FB_VEC(setzero)();
    for (ptrdiff_t oy = 0; oy < oh; oy++) {
        const FB_T *r0 = x + 2 * oy * w, *r1 = r0 + w;
        for (ptrdiff_t e = 0; e < 2 * w; e += 64 / (ptrdiff_t)sizeof(FB_T))
            _mm_prefetch((const char *)(r0 + e) + FB_POOL_PREFETCH_BYTES, _MM_HINT_T0);
        for (ptrdiff_t ox = 0; ox < ow; ox += FB_W) {
            ptrdiff_t t = ow - ox;                      /* windows left in the row */
            FB_M m = FB_NAME(fb_pool_lanes)(t);
            FB_M m_lo = FB_NAME(fb_pool_lanes)(2 * t);
            FB_M m_hi = FB_NAME(fb_pool_lanes)(2 * t - FB_W);
            FB_V lo = FB_VEC(maskz_loadu)(m_lo, r0 + 2 * ox);
            FB_V hi = FB_VEC(maskz_loadu)(m_hi, r0 + 2 * ox + FB_W);
            FB_V best = FB_POOL_PERMUTE2(lo, even, hi), v = FB_POOL_PERMUTE2(lo, odd, hi);
            __m512i idx = _mm512_setzero_si512();
            FB_M take = FB_NAME(fb_pool_takes)(v, best);
            best = FB_VEC(mask_mov)(best, take, v);
            idx = FB_POOL_IMOV(idx, take, one);
            lo = FB_VEC(maskz_loadu)(m_lo, r1 + 2 * ox);
            hi = FB_VEC(maskz_loadu)(m_hi, r1 + 2 * ox + FB_W);
            v = FB_POOL_PERMUTE2(lo, even, hi);
            take = FB_NAME(fb_pool_takes)(v, best);
            best = FB_VEC(mask_mov)(best, take, v);
            idx = FB_POOL_IMOV(idx, take, two);
            v = FB_POOL_PERMUTE2(lo, odd, hi);
            take = FB_NAME(fb_pool_takes)(v, best);
            best = FB_VEC(mask_mov)(best, take, v);
            idx = FB_POOL_IMOV(idx, take, three);
            if (relu)
                best = FB_VEC(mask_mov)(best, FB_VEC_MASK(cmp)(best, zero, _CMP_LE_OQ), zero);
            FB_VEC(mask_storeu)(out + oy * ow + ox, m, best);
            FB_POOL_STORE_BYTES(arg + oy * ow + ox, m, idx);
        }
    }
}

/* A vector of dx: with stream, a full vector on a 64-byte boundary goes past
   the caches (a dx far larger than the cache is not read in only to be
   overwritten); anything else is an ordinary masked store. */
FB_AVX512 static inline void FB_NAME(fb_pool_store)(FB_T *p, FB_M m, FB_V v, int stream)
{
    if (stream && m == (FB_M)~(FB_M)0 && ((uintptr_t)p & 63) == 0)
        FB_VEC(stream)(p, v);
    else if (m != 0)
        FB_VEC(mask_storeu)(p, m, v);
}

FB_AVX512 static void FB_NAME(fb_avx512_maxpool2_backward_plane)(const FB_T *dout,
                                                                 const uint8_t *arg,
                                                                 const FB_T *pooled,
                                                                 ptrdiff_t h, ptrdiff_t w,
                                                                 ptrdiff_t oh, ptrdiff_t ow,
                                                                 FB_T *dx, int stream)
{
    const __m512i low = FB_POOL_LOW_PAIRS, high = FB_POOL_HIGH_PAIRS;
    const __m512i one = FB_POOL_ISET1(1), two = FB_POOL_ISET1(2), three = FB_POOL_ISET1(3);
    const FB_V zero = FB_VEC(setzero)();
    for (ptrdiff_t oy = 0; oy < oh; oy++) {
        FB_T *r0 = dx + 2 * oy * w, *r1 = r0 + w;
        for (ptrdiff_t e = 0; e < ow; e += 64 / (ptrdiff_t)sizeof(FB_T)) {
            _mm_prefetch((const char *)(dout + oy * ow + e) + FB_POOL_PREFETCH_BYTES / 4,
                         _MM_HINT_T0);
            if (pooled != NULL)
                _mm_prefetch((const char *)(pooled + oy * ow + e) + FB_POOL_PREFETCH_BYTES / 4,
                             _MM_HINT_T0);
        }
        _mm_prefetch((const char *)(arg + oy * ow) + FB_POOL_PREFETCH_BYTES / 4 / sizeof(FB_T),
                     _MM_HINT_T0);
        for (ptrdiff_t ox = 0; ox < ow; ox += FB_W) {
            ptrdiff_t t = ow - ox, o = oy * ow + ox;
            FB_M m = FB_NAME(fb_pool_lanes)(t);
            FB_M m_lo = FB_NAME(fb_pool_lanes)(2 * t);
            FB_M m_hi = FB_NAME(fb_pool_lanes)(2 * t - FB_W);
            FB_V v = FB_VEC(add)(zero, FB_VEC(maskz_loadu)(m, dout + o));   /* 0 + dout */
            if (pooled != NULL)
                v = FB_VEC(mask_mov)(v, FB_VEC_MASK(cmp)(FB_VEC(maskz_loadu)(m, pooled + o),
                                                         zero, _CMP_LE_OQ), zero);
            __m512i k = FB_POOL_WIDEN_BYTES(_mm_maskz_loadu_epi8((__mmask16)m, arg + o));
            FB_V e0 = FB_VEC(maskz_mov)(FB_POOL_ICMPEQ(k, _mm512_setzero_si512()), v);
            FB_V e1 = FB_VEC(maskz_mov)(FB_POOL_ICMPEQ(k, one), v);
            FB_V e2 = FB_VEC(maskz_mov)(FB_POOL_ICMPEQ(k, two), v);
            FB_V e3 = FB_VEC(maskz_mov)(FB_POOL_ICMPEQ(k, three), v);
            FB_NAME(fb_pool_store)(r0 + 2 * ox, m_lo, FB_POOL_PERMUTE2(e0, low, e1), stream);
            FB_NAME(fb_pool_store)(r0 + 2 * ox + FB_W, m_hi, FB_POOL_PERMUTE2(e0, high, e1),
                                   stream);
            FB_NAME(fb_pool_store)(r1 + 2 * ox, m_lo, FB_POOL_PERMUTE2(e2, low, e3), stream);
            FB_NAME(fb_pool_store)(r1 + 2 * ox + FB_W, m_hi, FB_POOL_PERMUTE2(e2, high, e3),
                                   stream);
        }
        for (ptrdiff_t xx = 2 * ow; xx < w; xx++)
            r0[xx] = r1[xx] = 0;
    }
    if (2 * oh < h)
        memset(dx + 2 * oh * w, 0, (size_t)((h - 2 * oh) * w) * sizeof(FB_T));
}
#endif /* FB_AVX512_MODE */

static inline void FB_NAME(fb_maxpool_forward)(const FB_T *x, fb_layout xl, const fb_window *g,
                                        FB_T *out, fb_layout ol, uint8_t *arg, int relu)
{
    const int two = g->fh == 2 && g->fw == 2 && g->stride == 2 && g->pad == 0;
#if FB_AVX512_MODE
    const int avx512 = fb_use_avx512();
#endif
    const ptrdiff_t planes = g->n * g->c;
    for (ptrdiff_t q = 0; q < planes; q++) {
        ptrdiff_t i, ch;
        FB_NAME(fb_plane_of)(q, g, xl, &i, &ch);
        const FB_T *xp = x + i * xl.n + ch * xl.c;
        ptrdiff_t o = i * ol.n + ch * ol.c;
#if FB_AVX512_MODE
        if (two && avx512) {
            FB_NAME(fb_avx512_maxpool2_forward_plane)(xp, g->w, g->oh, g->ow, out + o, arg + o,
                                                      relu);
            continue;
        }
#endif
        if (two)
            FB_NAME(fb_maxpool2_forward_plane)(xp, g->w, g->oh, g->ow, out + o, arg + o, relu);
        else
            FB_NAME(fb_maxpool_forward_plane)(xp, g, out + o, arg + o, relu);
    }
}

/* 2 x 2 at stride 2: every window's four elements written once (0 + dout at
   the chosen one, +0 elsewhere), then the row and column no window covers
   (odd h or w) zeroed. */
FB_CLONES static void FB_NAME(fb_maxpool2_backward_plane)(const FB_T *restrict dout,
                                                          const uint8_t *restrict arg,
                                                          const FB_T *restrict pooled,
                                                          ptrdiff_t h, ptrdiff_t w,
                                                          ptrdiff_t oh, ptrdiff_t ow,
                                                          FB_T *restrict dx)
{
    for (ptrdiff_t oy = 0; oy < oh; oy++) {
        FB_T *r0 = dx + 2 * oy * w, *r1 = r0 + w;
        const FB_T *d = dout + oy * ow;
        const uint8_t *a = arg + oy * ow;
        const FB_T *pr = pooled != NULL ? pooled + oy * ow : NULL;
        for (ptrdiff_t ox = 0; ox < ow; ox++) {
            FB_T v = (FB_T)0 + d[ox];
            if (pr != NULL)
                v = pr[ox] <= (FB_T)0 ? (FB_T)0 : v;
            int k = a[ox];
            r0[2 * ox] = k == 0 ? v : (FB_T)0;
            r0[2 * ox + 1] = k == 1 ? v : (FB_T)0;
            r1[2 * ox] = k == 2 ? v : (FB_T)0;
            r1[2 * ox + 1] = k == 3 ? v : (FB_T)0;
        }
        for (ptrdiff_t xx = 2 * ow; xx < w; xx++)
            r0[xx] = r1[xx] = 0;
    }
    if (2 * oh < h)
        memset(dx + 2 * oh * w, 0, (size_t)((h - 2 * oh) * w) * sizeof(FB_T));
}

FB_CLONES static void FB_NAME(fb_maxpool_backward_plane)(const FB_T *restrict dout,
                                                         const uint8_t *restrict arg,
                                                         const FB_T *restrict pooled,
                                                         const fb_window *g,
                                                         FB_T *restrict dx)
{
    memset(dx, 0, (size_t)(g->h * g->w) * sizeof(FB_T));
    for (ptrdiff_t oy = g->oh - 1; oy >= 0; oy--) {
        for (ptrdiff_t ox = g->ow - 1; ox >= 0; ox--) {
            ptrdiff_t o = oy * g->ow + ox;
            if (pooled != NULL && pooled[o] <= (FB_T)0)
                continue;                       /* ReLU: nothing passes */
            ptrdiff_t k = arg[o];
            ptrdiff_t y = oy * g->stride - g->pad + k / g->fw;
            ptrdiff_t xx = ox * g->stride - g->pad + k % g->fw;
            if (y < 0 || y >= g->h || xx < 0 || xx >= g->w)
                continue;                       /* never from forward: memory safety */
            dx[y * g->w + xx] += dout[o];
        }
    }
}

static inline void FB_NAME(fb_maxpool_backward)(const FB_T *dout, fb_layout ol, const uint8_t *arg,
                                         const FB_T *pooled, const fb_window *g, FB_T *dx,
                                         fb_layout xl)
{
    const int two = g->fh == 2 && g->fw == 2 && g->stride == 2 && g->pad == 0;
#if FB_AVX512_MODE
    const int avx512 = fb_use_avx512();
    const ptrdiff_t dx_bytes = g->n * g->c * g->h * g->w * (ptrdiff_t)sizeof(FB_T);
    const int stream = avx512 && two && dx_bytes >= FB_POOL_STREAM_MIN_BYTES;
#endif
    const ptrdiff_t planes = g->n * g->c;
    for (ptrdiff_t q = 0; q < planes; q++) {
        ptrdiff_t i, ch;
        FB_NAME(fb_plane_of)(q, g, xl, &i, &ch);
        ptrdiff_t o = i * ol.n + ch * ol.c;
        FB_T *dxp = dx + i * xl.n + ch * xl.c;
        const FB_T *pp = pooled != NULL ? pooled + o : NULL;
#if FB_AVX512_MODE
        if (two && avx512) {
            /* (streaming needs rows on 64-byte boundaries: a mix of streaming and
               ordinary stores into one cache line costs more than it saves) */
            int aligned = ((uintptr_t)dxp & 63) == 0 && (g->w * sizeof(FB_T)) % 64 == 0;
            FB_NAME(fb_avx512_maxpool2_backward_plane)(dout + o, arg + o, pp, g->h, g->w, g->oh,
                                                       g->ow, dxp, stream && aligned);
            continue;
        }
#endif
        if (two)
            FB_NAME(fb_maxpool2_backward_plane)(dout + o, arg + o, pp, g->h, g->w, g->oh, g->ow,
                                                dxp);
        else
            FB_NAME(fb_maxpool_backward_plane)(dout + o, arg + o, pp, g, dxp);
    }
}
