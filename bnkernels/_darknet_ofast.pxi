# Darknet's backward as its default -Ofast build computes it: the bindings of
# csrc/darknet_ofast.c (BN_DECLARE_DARKNET_OFAST in csrc/bnkernels.h).
# Included by _kernels.pyx; uses its argument checks. The dk_ofast_* functions
# take the arguments of their strict twins dk_* and check them the same way;
# the cdef bn_dk_ofast_* functions are the kernels exported to other Cython
# extensions (declared in _kernels.pxd).

cdef extern from "bnkernels.h" nogil:
    void _c_dk_ofast_backward_bias_f32 "bn_dk_ofast_backward_bias_f32"(const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *bias_updates)
    void _c_dk_ofast_backward_scale_f32 "bn_dk_ofast_backward_scale_f32"(const float *x_norm, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *scale_updates)
    void _c_dk_ofast_normalize_delta_eps_inside_f32 "bn_dk_ofast_normalize_delta_eps_inside_f32"(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out)
    void _c_dk_ofast_normalize_delta_eps_outside_f32 "bn_dk_ofast_normalize_delta_eps_outside_f32"(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out)
    void _c_dk_ofast_backward_sums_f32 "bn_dk_ofast_backward_sums_f32"(const float *x, const float *x_norm, const float *delta, const float *mean, const float *variance, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *bias_updates, float *scale_updates, float *mean_delta, float *variance_delta)
    void _c_dk_ofast_backward_dx_eps_inside_f32 "bn_dk_ofast_backward_dx_eps_inside_f32"(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out)
    void _c_dk_ofast_backward_dx_eps_outside_f32 "bn_dk_ofast_backward_dx_eps_outside_f32"(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out)
    void _c_dk_ofast_backward_bias_f64 "bn_dk_ofast_backward_bias_f64"(const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *bias_updates)
    void _c_dk_ofast_backward_scale_f64 "bn_dk_ofast_backward_scale_f64"(const double *x_norm, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *scale_updates)
    void _c_dk_ofast_normalize_delta_eps_inside_f64 "bn_dk_ofast_normalize_delta_eps_inside_f64"(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out)
    void _c_dk_ofast_normalize_delta_eps_outside_f64 "bn_dk_ofast_normalize_delta_eps_outside_f64"(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out)
    void _c_dk_ofast_backward_sums_f64 "bn_dk_ofast_backward_sums_f64"(const double *x, const double *x_norm, const double *delta, const double *mean, const double *variance, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *bias_updates, double *scale_updates, double *mean_delta, double *variance_delta)
    void _c_dk_ofast_backward_dx_eps_inside_f64 "bn_dk_ofast_backward_dx_eps_inside_f64"(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out)
    void _c_dk_ofast_backward_dx_eps_outside_f64 "bn_dk_ofast_backward_dx_eps_outside_f64"(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out)
    void _c_dk_ofast_avx_backward_bias_f32 "bn_dk_ofast_avx_backward_bias_f32"(const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *bias_updates)
    void _c_dk_ofast_avx_backward_scale_f32 "bn_dk_ofast_avx_backward_scale_f32"(const float *x_norm, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *scale_updates)
    void _c_dk_ofast_avx_backward_sums_f32 "bn_dk_ofast_avx_backward_sums_f32"(const float *x, const float *x_norm, const float *delta, const float *mean, const float *variance, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *bias_updates, float *scale_updates, float *mean_delta, float *variance_delta)
    void _c_dk_ofast_avx_backward_bias_f64 "bn_dk_ofast_avx_backward_bias_f64"(const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *bias_updates)
    void _c_dk_ofast_avx_backward_scale_f64 "bn_dk_ofast_avx_backward_scale_f64"(const double *x_norm, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *scale_updates)
    void _c_dk_ofast_avx_backward_sums_f64 "bn_dk_ofast_avx_backward_sums_f64"(const double *x, const double *x_norm, const double *delta, const double *mean, const double *variance, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *bias_updates, double *scale_updates, double *mean_delta, double *variance_delta)


def dk_ofast_backward_bias(delta, out=None, bint accumulate=False, bint avx=False):
    """dk_backward_bias in the -Ofast lane order (avx: the eight-lane one)."""
    D = _bn_tensor(delta, "delta")
    cdef int64_t n, c, s
    _sizes(D, False, &n, &c, &s)
    O = _output(out, "out", (c,), D.dtype, ((D, "delta"),), (), True)
    if out is not None and not accumulate:
        O.fill(0)
    cdef void *pd = _ptr(D)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(D)
    with nogil:
        if f32 and avx:
            _c_dk_ofast_avx_backward_bias_f32(<float*>pd, n, c, s, <float*>po)
        elif f32:
            _c_dk_ofast_backward_bias_f32(<float*>pd, n, c, s, <float*>po)
        elif avx:
            _c_dk_ofast_avx_backward_bias_f64(<double*>pd, n, c, s, <double*>po)
        else:
            _c_dk_ofast_backward_bias_f64(<double*>pd, n, c, s, <double*>po)
    return O


def dk_ofast_backward_scale(x_norm, delta, out=None, bint accumulate=False,
                            bint avx=False):
    """dk_backward_scale in the -Ofast lane order (avx: the eight-lane one)."""
    X = _bn_tensor(x_norm, "x_norm")
    D = _tensor_like(delta, "delta", X, "x_norm")
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    O = _output(out, "out", (c,), X.dtype, ((X, "x_norm"), (D, "delta")), (), True)
    if out is not None and not accumulate:
        O.fill(0)
    cdef void *px = _ptr(X)
    cdef void *pd = _ptr(D)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    with nogil:
        if f32 and avx:
            _c_dk_ofast_avx_backward_scale_f32(<float*>px, <float*>pd, n, c, s,
                                               <float*>po)
        elif f32:
            _c_dk_ofast_backward_scale_f32(<float*>px, <float*>pd, n, c, s, <float*>po)
        elif avx:
            _c_dk_ofast_avx_backward_scale_f64(<double*>px, <double*>pd, n, c, s,
                                               <double*>po)
        else:
            _c_dk_ofast_backward_scale_f64(<double*>px, <double*>pd, n, c, s, <double*>po)
    return O


def dk_ofast_normalize_delta(x, mean, variance, mean_delta, variance_delta, delta,
                             eps, bint eps_inside, out=None):
    """dk_normalize_delta with -Ofast's reciprocal mean term."""
    X = _bn_tensor(x, "x")
    M = _channels(mean, "mean", X, "x")
    V = _channels(variance, "variance", X, "x")
    MD = _channels(mean_delta, "mean_delta", X, "x")
    VD = _channels(variance_delta, "variance_delta", X, "x")
    D = _tensor_like(delta, "delta", X, "x")
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    O = _output(
        out, "out", X.shape, X.dtype,
        ((X, "x"), (M, "mean"), (V, "variance"), (MD, "mean_delta"),
         (VD, "variance_delta"), (D, "delta")), (D,))
    cdef void *px = _ptr(X)
    cdef void *pm = _ptr(M)
    cdef void *pv = _ptr(V)
    cdef void *pmd = _ptr(MD)
    cdef void *pvd = _ptr(VD)
    cdef void *pd = _ptr(D)
    cdef void *po = _ptr(O)
    cdef double eps64 = _check_eps(eps, "eps")
    cdef float eps32 = <float>eps64
    cdef bint f32 = _is_f32(X)
    with nogil:
        if f32:
            if eps_inside:
                _c_dk_ofast_normalize_delta_eps_inside_f32(
                    <float*>px, <float*>pm, <float*>pv, <float*>pmd, <float*>pvd,
                    <float*>pd, n, c, s, eps32, <float*>po)
            else:
                _c_dk_ofast_normalize_delta_eps_outside_f32(
                    <float*>px, <float*>pm, <float*>pv, <float*>pmd, <float*>pvd,
                    <float*>pd, n, c, s, eps32, <float*>po)
        else:
            if eps_inside:
                _c_dk_ofast_normalize_delta_eps_inside_f64(
                    <double*>px, <double*>pm, <double*>pv, <double*>pmd,
                    <double*>pvd, <double*>pd, n, c, s, eps64, <double*>po)
            else:
                _c_dk_ofast_normalize_delta_eps_outside_f64(
                    <double*>px, <double*>pm, <double*>pv, <double*>pmd,
                    <double*>pvd, <double*>pd, n, c, s, eps64, <double*>po)
    return O


def dk_ofast_backward(x, x_norm, delta, mean, variance, scales, eps,
                      bint eps_inside, out=None, bint avx=False):
    """dk_backward as the -Ofast build computes it (avx: the -mavx one):
    (dx, scale_updates, bias_updates), the updates starting from 0; out may
    be delta itself."""
    X = _bn_tensor(x, "x")
    XN = _tensor_like(x_norm, "x_norm", X, "x")
    D = _tensor_like(delta, "delta", X, "x")
    M = _channels(mean, "mean", X, "x")
    V = _channels(variance, "variance", X, "x")
    S = _channels(scales, "scales", X, "x")
    O = _output(out, "out", X.shape, X.dtype,
                ((X, "x"), (XN, "x_norm"), (D, "delta"), (M, "mean"), (V, "variance"),
                 (S, "scales")), (D,))
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    BU = np.zeros(c, X.dtype)
    SU = np.zeros(c, X.dtype)
    MD = np.empty(c, X.dtype)
    VD = np.empty(c, X.dtype)
    cdef void *px = _ptr(X)
    cdef void *pxn = _ptr(XN)
    cdef void *pd = _ptr(D)
    cdef void *pm = _ptr(M)
    cdef void *pv = _ptr(V)
    cdef void *ps = _ptr(S)
    cdef void *po = _ptr(O)
    cdef void *pbu = _ptr(BU)
    cdef void *psu = _ptr(SU)
    cdef void *pmd = _ptr(MD)
    cdef void *pvd = _ptr(VD)
    cdef double eps64 = _check_eps(eps, "eps")
    cdef float eps32 = <float>eps64
    cdef bint f32 = _is_f32(X)
    with nogil:
        if f32:
            if avx:
                _c_dk_ofast_avx_backward_sums_f32(
                    <float*>px, <float*>pxn, <float*>pd, <float*>pm, <float*>pv,
                    <float*>ps, n, c, s, eps32, <float*>pbu, <float*>psu,
                    <float*>pmd, <float*>pvd)
            else:
                _c_dk_ofast_backward_sums_f32(
                    <float*>px, <float*>pxn, <float*>pd, <float*>pm, <float*>pv,
                    <float*>ps, n, c, s, eps32, <float*>pbu, <float*>psu,
                    <float*>pmd, <float*>pvd)
            if eps_inside:
                _c_dk_ofast_backward_dx_eps_inside_f32(
                    <float*>px, <float*>pm, <float*>pv, <float*>pmd, <float*>pvd,
                    <float*>pd, <float*>ps, n, c, s, eps32, <float*>po)
            else:
                _c_dk_ofast_backward_dx_eps_outside_f32(
                    <float*>px, <float*>pm, <float*>pv, <float*>pmd, <float*>pvd,
                    <float*>pd, <float*>ps, n, c, s, eps32, <float*>po)
        else:
            if avx:
                _c_dk_ofast_avx_backward_sums_f64(
                    <double*>px, <double*>pxn, <double*>pd, <double*>pm,
                    <double*>pv, <double*>ps, n, c, s, eps64, <double*>pbu,
                    <double*>psu, <double*>pmd, <double*>pvd)
            else:
                _c_dk_ofast_backward_sums_f64(
                    <double*>px, <double*>pxn, <double*>pd, <double*>pm,
                    <double*>pv, <double*>ps, n, c, s, eps64, <double*>pbu,
                    <double*>psu, <double*>pmd, <double*>pvd)
            if eps_inside:
                _c_dk_ofast_backward_dx_eps_inside_f64(
                    <double*>px, <double*>pm, <double*>pv, <double*>pmd,
                    <double*>pvd, <double*>pd, <double*>ps, n, c, s, eps64,
                    <double*>po)
            else:
                _c_dk_ofast_backward_dx_eps_outside_f64(
                    <double*>px, <double*>pm, <double*>pv, <double*>pmd,
                    <double*>pvd, <double*>pd, <double*>ps, n, c, s, eps64,
                    <double*>po)
    return O, SU, BU


# the -Ofast kernels, exported to other Cython extensions (see _kernels.pxd)
cdef void bn_dk_ofast_backward_bias_f32(const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *bias_updates) noexcept nogil:
    _c_dk_ofast_backward_bias_f32(delta, batch, channels, spatial, bias_updates)

cdef void bn_dk_ofast_backward_scale_f32(const float *x_norm, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *scale_updates) noexcept nogil:
    _c_dk_ofast_backward_scale_f32(x_norm, delta, batch, channels, spatial, scale_updates)

cdef void bn_dk_ofast_normalize_delta_eps_inside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil:
    _c_dk_ofast_normalize_delta_eps_inside_f32(x, mean, variance, mean_delta, variance_delta, delta, batch, channels, spatial, eps, out)

cdef void bn_dk_ofast_normalize_delta_eps_outside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil:
    _c_dk_ofast_normalize_delta_eps_outside_f32(x, mean, variance, mean_delta, variance_delta, delta, batch, channels, spatial, eps, out)

cdef void bn_dk_ofast_backward_sums_f32(const float *x, const float *x_norm, const float *delta, const float *mean, const float *variance, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *bias_updates, float *scale_updates, float *mean_delta, float *variance_delta) noexcept nogil:
    _c_dk_ofast_backward_sums_f32(x, x_norm, delta, mean, variance, scales, batch, channels, spatial, eps, bias_updates, scale_updates, mean_delta, variance_delta)

cdef void bn_dk_ofast_backward_dx_eps_inside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil:
    _c_dk_ofast_backward_dx_eps_inside_f32(x, mean, variance, mean_delta, variance_delta, delta, scales, batch, channels, spatial, eps, out)

cdef void bn_dk_ofast_backward_dx_eps_outside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil:
    _c_dk_ofast_backward_dx_eps_outside_f32(x, mean, variance, mean_delta, variance_delta, delta, scales, batch, channels, spatial, eps, out)

cdef void bn_dk_ofast_backward_bias_f64(const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *bias_updates) noexcept nogil:
    _c_dk_ofast_backward_bias_f64(delta, batch, channels, spatial, bias_updates)

cdef void bn_dk_ofast_backward_scale_f64(const double *x_norm, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *scale_updates) noexcept nogil:
    _c_dk_ofast_backward_scale_f64(x_norm, delta, batch, channels, spatial, scale_updates)

cdef void bn_dk_ofast_normalize_delta_eps_inside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil:
    _c_dk_ofast_normalize_delta_eps_inside_f64(x, mean, variance, mean_delta, variance_delta, delta, batch, channels, spatial, eps, out)

cdef void bn_dk_ofast_normalize_delta_eps_outside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil:
    _c_dk_ofast_normalize_delta_eps_outside_f64(x, mean, variance, mean_delta, variance_delta, delta, batch, channels, spatial, eps, out)

cdef void bn_dk_ofast_backward_sums_f64(const double *x, const double *x_norm, const double *delta, const double *mean, const double *variance, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *bias_updates, double *scale_updates, double *mean_delta, double *variance_delta) noexcept nogil:
    _c_dk_ofast_backward_sums_f64(x, x_norm, delta, mean, variance, scales, batch, channels, spatial, eps, bias_updates, scale_updates, mean_delta, variance_delta)

cdef void bn_dk_ofast_backward_dx_eps_inside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil:
    _c_dk_ofast_backward_dx_eps_inside_f64(x, mean, variance, mean_delta, variance_delta, delta, scales, batch, channels, spatial, eps, out)

cdef void bn_dk_ofast_backward_dx_eps_outside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil:
    _c_dk_ofast_backward_dx_eps_outside_f64(x, mean, variance, mean_delta, variance_delta, delta, scales, batch, channels, spatial, eps, out)

cdef void bn_dk_ofast_avx_backward_bias_f32(const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *bias_updates) noexcept nogil:
    _c_dk_ofast_avx_backward_bias_f32(delta, batch, channels, spatial, bias_updates)

cdef void bn_dk_ofast_avx_backward_scale_f32(const float *x_norm, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *scale_updates) noexcept nogil:
    _c_dk_ofast_avx_backward_scale_f32(x_norm, delta, batch, channels, spatial, scale_updates)

cdef void bn_dk_ofast_avx_backward_sums_f32(const float *x, const float *x_norm, const float *delta, const float *mean, const float *variance, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *bias_updates, float *scale_updates, float *mean_delta, float *variance_delta) noexcept nogil:
    _c_dk_ofast_avx_backward_sums_f32(x, x_norm, delta, mean, variance, scales, batch, channels, spatial, eps, bias_updates, scale_updates, mean_delta, variance_delta)

cdef void bn_dk_ofast_avx_backward_bias_f64(const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *bias_updates) noexcept nogil:
    _c_dk_ofast_avx_backward_bias_f64(delta, batch, channels, spatial, bias_updates)

cdef void bn_dk_ofast_avx_backward_scale_f64(const double *x_norm, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *scale_updates) noexcept nogil:
    _c_dk_ofast_avx_backward_scale_f64(x_norm, delta, batch, channels, spatial, scale_updates)

cdef void bn_dk_ofast_avx_backward_sums_f64(const double *x, const double *x_norm, const double *delta, const double *mean, const double *variance, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *bias_updates, double *scale_updates, double *mean_delta, double *variance_delta) noexcept nogil:
    _c_dk_ofast_avx_backward_sums_f64(x, x_norm, delta, mean, variance, scales, batch, channels, spatial, eps, bias_updates, scale_updates, mean_delta, variance_delta)
