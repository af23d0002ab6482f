/*
 * fb_loops.h: fastbp's C loops.  The one header the Cython code includes
 * (through fastbp/_loops.pxd, which wraps each entry point for the fused
 * float/double type).
 *
 * Entry points (fb_dispatch.h), each as fb_<kernel>_d (double) and
 * fb_<kernel>_f (float):
 *   fb_relu_forward   fb_relu_backward   fb_relu_grad
 *   fb_sigmoid_forward   fb_sigmoid_backward   fb_sigmoid_grad
 *   fb_softmax_xent_labels   fb_softmax_xent_onehot
 *   fb_softmax_xent_backward_labels   fb_softmax_xent_backward_onehot
 *   fb_bn_forward_train   fb_bn_forward_test   fb_bn_backward      (fb_batchnorm.h)
 *   fb_dropout_apply   fb_dropout_forward                            (fb_dropout.h)
 * and, dtype-free, fb_dropout_keep (fb_dropout.h), fb_simd_level() and
 * fb_compiler() (fb_cpu.h): which loop versions run and what compiled them,
 * for `fastbp info`.
 * Chapter 7's loops, each as <name>_d and <name>_f, are their own entry points:
 *   fb_conv.h  fb_im2col  fb_col2im  fb_im2col_t  fb_col2im_t_add  fb_bias_relu
 *              fb_zero_images  fb_relu_mask_images  fb_channel_sums
 *              fb_conv1_direct  fb_conv1_forward  fb_conv1_weight_grad
 *   fb_pool.h  fb_maxpool_forward  fb_maxpool_backward
 *
 * One concern a file:
 *   fb_cpu.h            which CPU code is compiled (target_clones, AVX-512)
 *                       and which of it runs
 *   fb_math.h           exp and reciprocal, scalar and AVX-512
 *   fb_dtype.h          the element type of the three templates below
 *   fb_generic_loops.h  the portable loops, fb_generic_<kernel>   (template)
 *   fb_generic_versions.h  their x86-64-v3/v4 versions where the compiler
 *                       doesn't clone them (Clang)               (template)
 *   fb_avx512_loops.h   AVX-512 versions, fb_avx512_<kernel>      (template)
 *   fb_dispatch.h       the entry points, fb_<kernel>             (template)
 *   fb_batchnorm.h      batch normalisation, loops and entry points (template)
 *   fb_dropout.h        dropout masks from a NumPy bit generator  (template)
 *   fb_conv.h           im2col/col2im and the convolution engine's loops (template)
 *   fb_pool.h           max pooling                               (template)
 * The templates are written once over FB_T and compiled here per dtype.
 */
#ifndef FB_LOOPS_H
#define FB_LOOPS_H

#include "fb_cpu.h"
#include "fb_math.h"

#define FB_DTYPE_DOUBLE 0          /* float: fb_<kernel>_f */
#include "fb_dtype.h"
#include "fb_generic_loops.h"
#include "fb_generic_versions.h"
#include "fb_avx512_loops.h"
#include "fb_dispatch.h"
#include "fb_batchnorm.h"
#include "fb_dropout.h"
#include "fb_conv.h"
#include "fb_pool.h"
#undef FB_DTYPE_DOUBLE

#define FB_DTYPE_DOUBLE 1          /* double: fb_<kernel>_d */
#include "fb_dtype.h"
#include "fb_generic_loops.h"
#include "fb_generic_versions.h"
#include "fb_avx512_loops.h"
#include "fb_dispatch.h"
#include "fb_batchnorm.h"
#include "fb_dropout.h"
#include "fb_conv.h"
#include "fb_pool.h"
#undef FB_DTYPE_DOUBLE

#endif /* FB_LOOPS_H */
