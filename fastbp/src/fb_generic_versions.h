/*
 * fb_generic_versions.h: the x86-64-v4 and x86-64-v3 versions of the
 * portable loops, for compilers that dispatch by hand (FB_HAND_DISPATCH,
 * fb_cpu.h: Clang on x86-64).  GCC clones the loops itself (FB_CLONES) and
 * includes nothing here.
 *
 * A template over FB_T, included by fb_loops.h right after
 * fb_generic_loops.h, once per dtype: it compiles fb_generic_loops.h twice
 * more, every function in it given the level's target features by
 * `#pragma clang attribute` and named by FB_NAME_V4 / FB_NAME_V3
 * (fb_generic_relu_forward_v4_d, ...).  The entry points reach them through
 * FB_GENERIC (fb_dtype.h).  A new file of portable loops is included here
 * too, in both blocks.
 */
#ifndef FB_T
#error "fb_generic_versions.h is a template: include fb_loops.h"
#endif

#if FB_HAND_DISPATCH

#undef FB_NAME
#define FB_NAME FB_NAME_V4
#pragma clang attribute push(__attribute__((target(FB_V4_FEATURES))), apply_to = function)
#include "fb_generic_loops.h"
#pragma clang attribute pop

#undef FB_NAME
#define FB_NAME FB_NAME_V3
#pragma clang attribute push(__attribute__((target(FB_V3_FEATURES))), apply_to = function)
#include "fb_generic_loops.h"
#pragma clang attribute pop

#include "fb_dtype.h"    /* FB_NAME names the baseline loops again */

#endif /* FB_HAND_DISPATCH */
