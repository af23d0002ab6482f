# Declarations of the vectorisable C loops in src/fb_simd.h.
from libc.stdint cimport uint8_t, int64_t

cdef extern from "fb_simd.h" nogil:
    const char *fb_simd_level()
    bint FB_HAVE_CLONES
    void fb_relu_forward_f(const float *x, float *out, uint8_t *mask, Py_ssize_t n)
    void fb_relu_forward_d(const double *x, double *out, uint8_t *mask, Py_ssize_t n)
    void fb_relu_backward_f(const float *dout, const uint8_t *mask, float *dx, Py_ssize_t n)
    void fb_relu_backward_d(const double *dout, const uint8_t *mask, double *dx, Py_ssize_t n)
    void fb_sigmoid_forward_f(const float *x, float *out, Py_ssize_t n)
    void fb_sigmoid_forward_d(const double *x, double *out, Py_ssize_t n)
    void fb_sigmoid_backward_f(const float *dout, const float *out, float *dx, Py_ssize_t n)
    void fb_sigmoid_backward_d(const double *dout, const double *out, double *dx, Py_ssize_t n)
    double fb_softmax_xent_labels_f(const float *x, const int64_t *labels, float *y,
                                    float *loss, Py_ssize_t n, Py_ssize_t c)
    double fb_softmax_xent_labels_d(const double *x, const int64_t *labels, double *y,
                                    double *loss, Py_ssize_t n, Py_ssize_t c)
    double fb_softmax_xent_onehot_f(const float *x, const float *t, float *y,
                                    float *loss, Py_ssize_t n, Py_ssize_t c)
    double fb_softmax_xent_onehot_d(const double *x, const double *t, double *y,
                                    double *loss, Py_ssize_t n, Py_ssize_t c)
    void fb_softmax_xent_backward_labels_f(const float *y, const int64_t *labels, float *dx,
                                           float scale, Py_ssize_t n, Py_ssize_t c)
    void fb_softmax_xent_backward_labels_d(const double *y, const int64_t *labels, double *dx,
                                           double scale, Py_ssize_t n, Py_ssize_t c)
    void fb_softmax_xent_backward_onehot_f(const float *y, const float *t, float *dx,
                                           float scale, Py_ssize_t n)
    void fb_softmax_xent_backward_onehot_d(const double *y, const double *t, double *dx,
                                           double scale, Py_ssize_t n)
