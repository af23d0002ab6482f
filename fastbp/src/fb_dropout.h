/*
 * fb_dropout.h: dropout masks drawn from a NumPy bit generator, and the
 * products x * mask (the book's Dropout, chapter 6).
 *
 * The draws go through the bit generator's C interface: the next_double or
 * next_uint32 function and the state pointer of NumPy's bitgen_t (from a
 * BitGenerator's `capsule`; copied into an fb_dropout_stream, so this header
 * needs no NumPy header), one call per element, exactly as NumPy's own fill
 * loops call them -- or, for NumPy's MT19937 (the global RandomState's, the
 * book's), the same Mersenne Twister computed here on its state (the key
 * and position NumPy's MT19937 keeps: a checked layout, see _bitgen.pxd),
 * many draws per loop instead of one call each.  The caller holds the bit
 * generator's lock.  Two streams:
 *   book:  keep = next_double() > ratio, NumPy's RandomState.random_sample
 *          (np.random.rand) compared with ratio: the book's masks;
 *   else:  keep = (next_uint32() >> 8) > threshold, i.e.
 *          Generator.random(dtype=np.float32) > ratio with
 *          threshold = floor(ratio * 2**24).
 * Masks are 0/1 bytes (NumPy bools); a mask read back (backward) counts
 * any nonzero byte as kept, as NumPy does.
 *
 * Entry points: fb_dropout_keep (no dtype), and per dtype fb_dropout_apply
 * (out = x * keep) and fb_dropout_forward (draw and apply in one pass).
 */

/* ---- once: what does not depend on the dtype ---------------------------- */
#ifndef FB_DROPOUT_ONCE
#define FB_DROPOUT_ONCE

#include <stddef.h>
#include <stdint.h>

#include "fb_cpu.h"

/* Elements drawn, then multiplied, at a time by the fused forward (the
   chunk of mask stays in L1 between the two loops). */
#define FB_DROPOUT_CHUNK 1024

/* bitgen_t's next_double and next_uint32 (numpy/random/bitgen.h). */
typedef double (*fb_next_double_fn)(void *state);
typedef uint32_t (*fb_next_uint32_fn)(void *state);

/* Where a mask comes from: a bit generator's functions and state, and the
   comparison (book != 0: next_double() > ratio; else (next_uint32() >> 8) >
   threshold).  mt_key, mt_pos: NULL, or the MT19937 state behind `state`
   (its 624 words and the index of the next one), for the inline generator. */
typedef struct fb_dropout_stream {
    fb_next_double_fn next_double;
    fb_next_uint32_fn next_uint32;
    void *state;
    double ratio;
    uint32_t threshold;
    int book;
    uint32_t *mt_key;
    int *mt_pos;
} fb_dropout_stream;

/* ---- MT19937, as NumPy's (numpy/random/src/mt19937/mt19937.{c,h}) ------- */
#define FB_MT_N 624
#define FB_MT_M 397
#define FB_MT_MATRIX_A 0x9908b0dfU
#define FB_MT_UPPER 0x80000000U
#define FB_MT_LOWER 0x7fffffffU

/* The next 624 words (NumPy's mt19937_gen). */
FB_CLONES static void fb_mt19937_twist(uint32_t *restrict key)
{
    int i;
    for (i = 0; i < FB_MT_N - FB_MT_M; i++) {
        uint32_t y = (key[i] & FB_MT_UPPER) | (key[i + 1] & FB_MT_LOWER);
        key[i] = key[i + FB_MT_M] ^ (y >> 1) ^ ((0U - (y & 1U)) & FB_MT_MATRIX_A);
    }
    for (; i < FB_MT_N - 1; i++) {
        uint32_t y = (key[i] & FB_MT_UPPER) | (key[i + 1] & FB_MT_LOWER);
        key[i] = key[i + (FB_MT_M - FB_MT_N)] ^ (y >> 1) ^ ((0U - (y & 1U)) & FB_MT_MATRIX_A);
    }
    uint32_t y = (key[FB_MT_N - 1] & FB_MT_UPPER) | (key[0] & FB_MT_LOWER);
    key[FB_MT_N - 1] = key[FB_MT_M - 1] ^ (y >> 1) ^ ((0U - (y & 1U)) & FB_MT_MATRIX_A);
}

static inline uint32_t fb_mt19937_temper(uint32_t y)
{
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
}

/* NumPy's mt19937_next_double from the words a (first) and b (second). */
static inline double fb_mt19937_double(uint32_t a, uint32_t b)
{
    int32_t high = (int32_t)(fb_mt19937_temper(a) >> 5);
    int32_t low = (int32_t)(fb_mt19937_temper(b) >> 6);
    return (high * 67108864.0 + low) / 9007199254740992.0;
}

/* keep[i] = next_double() > ratio for i < n, the draws of NumPy's MT19937
   with state (key, *pos), 0 <= *pos <= 624; *pos is updated. */
FB_CLONES static void fb_mt19937_keep(uint32_t *restrict key, int *restrict pos_io,
                                      double ratio, uint8_t *restrict keep, ptrdiff_t n)
{
    int pos = *pos_io;
    ptrdiff_t i = 0;
    while (i < n) {
        if (pos == FB_MT_N) {
            fb_mt19937_twist(key);
            pos = 0;
        }
        ptrdiff_t pairs = (FB_MT_N - pos) / 2;       /* draws left in this block */
        if (pairs > n - i)
            pairs = n - i;
        const uint32_t *words = key + pos;
        uint8_t *out = keep + i;
        for (ptrdiff_t p = 0; p < pairs; p++)
            out[p] = (uint8_t)(fb_mt19937_double(words[2 * p], words[2 * p + 1]) > ratio);
        i += pairs;
        pos += (int)(2 * pairs);
        if (i < n && pos == FB_MT_N - 1) {          /* a draw across the refill */
            uint32_t a = key[pos];
            fb_mt19937_twist(key);
            keep[i++] = (uint8_t)(fb_mt19937_double(a, key[0]) > ratio);
            pos = 1;
        }
    }
    *pos_io = pos;
}

/* keep[i] for i < n, drawn from the stream in order. */
static inline void fb_dropout_keep(const fb_dropout_stream *stream, uint8_t *restrict keep,
                                   ptrdiff_t n)
{
    void *state = stream->state;
    if (stream->book && stream->mt_key != NULL) {
        fb_mt19937_keep(stream->mt_key, stream->mt_pos, stream->ratio, keep, n);
    } else if (stream->book) {
        fb_next_double_fn next_double = stream->next_double;
        double ratio = stream->ratio;
        for (ptrdiff_t i = 0; i < n; i++)
            keep[i] = (uint8_t)(next_double(state) > ratio);
    } else {
        fb_next_uint32_fn next_uint32 = stream->next_uint32;
        uint32_t threshold = stream->threshold;
        for (ptrdiff_t i = 0; i < n; i++)
            keep[i] = (uint8_t)((next_uint32(state) >> 8) > threshold);
    }
}

#endif /* FB_DROPOUT_ONCE */

/* ---- per dtype ---------------------------------------------------------- */
#ifndef FB_T
#error "fb_dropout.h is a template: include fb_loops.h"
#endif

/* out = x * keep with keep a 0/1 (any nonzero: 1) byte: NumPy's x * mask for a
   bool mask (a dropped inf or NaN is NaN, a dropped negative -0.0). */
FB_CLONES static void FB_NAME(fb_generic_dropout_apply)(const FB_T *restrict x,
                                                        const uint8_t *restrict keep,
                                                        FB_T *restrict out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = x[i] * (FB_T)(keep[i] != 0);
}

/* out = x * keep (n elements; keep: 0/1 bytes, nonzero counts as 1). */
static inline void FB_NAME(fb_dropout_apply)(const FB_T *restrict x,
                                             const uint8_t *restrict keep,
                                             FB_T *restrict out, ptrdiff_t n)
{
    FB_NAME(fb_generic_dropout_apply)(x, keep, out, n);
}

/* Training-mode forward: keep drawn from the stream, out = x * keep, a chunk
   at a time. */
static inline void FB_NAME(fb_dropout_forward)(const fb_dropout_stream *stream,
                                               const FB_T *restrict x, uint8_t *restrict keep,
                                               FB_T *restrict out, ptrdiff_t n)
{
    for (ptrdiff_t i0 = 0; i0 < n; i0 += FB_DROPOUT_CHUNK) {
        ptrdiff_t m = n - i0 < FB_DROPOUT_CHUNK ? n - i0 : FB_DROPOUT_CHUNK;
        fb_dropout_keep(stream, keep + i0, m);
        FB_NAME(fb_generic_dropout_apply)(x + i0, keep + i0, out + i0, m);
    }
}
