# im2col / col2im and 2-D max and average pooling: checks, then one C kernel
# of csrc/conv_pool.c with the GIL released. Included by _kernels.pyx.
#
# kernel_size, stride and padding are an int or an (h, w) pair of ints, each
# at most 2**60 (MAX_WINDOW_ARGUMENT); ceil_mode and count_include_pad bools.
# x_shape is the (N, C, H, W) of the forward's input. Every size is checked
# in Python integers before anything is allocated or any C runs: a bad one
# raises TypeError or ValueError naming the argument, and no array (input,
# output or columns) may hold more than BN_POOL_MAX_VALUES values, in all or
# per (n, c) plane, which is bn_pool_geometry_check's rule (csrc/bnkernels.h).

from bnkernels.bnkernels_h cimport BN_GEOMETRY_OK, BN_POOL_MAX_VALUES

# The largest kernel_size, stride or padding: with any size an array can
# have, size + 2*padding + kernel_size + stride then stays within int64.
MAX_WINDOW_ARGUMENT = 2**60
_INT64_MAX = 2**63 - 1
_AXES = ("height", "width")


cdef bint _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


cdef bint _flag(value, str name) except -1:
    """A bool (or NumPy bool, or the int 0 or 1) as a bint."""
    if isinstance(value, (bool, np.bool_)) or (_is_int(value) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {value!r}")


cdef tuple _pair(value, str name, int64_t minimum):
    """value as an (h, w) pair of Python ints, each in [minimum, MAX_WINDOW_ARGUMENT]."""
    if _is_int(value):
        pair = (int(value), int(value))
    else:
        try:
            pair = tuple(value)
        except TypeError:
            pair = ()
        if len(pair) != 2 or not (_is_int(pair[0]) and _is_int(pair[1])):
            raise TypeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")
        pair = (int(pair[0]), int(pair[1]))
    if pair[0] < minimum or pair[1] < minimum:
        raise ValueError(f"{name} must be >= {minimum} along both axes, got {pair}")
    if pair[0] > MAX_WINDOW_ARGUMENT or pair[1] > MAX_WINDOW_ARGUMENT:
        raise ValueError(f"{name} must be at most 2**60 along both axes, got {pair}")
    return pair


cdef object _int(value, str name, int64_t minimum, maximum=MAX_WINDOW_ARGUMENT):
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return int(value)


cdef tuple _x_shape(x_shape):
    """x_shape as an (N, C, H, W) tuple of Python ints, H and W >= 1, of at
    most BN_POOL_MAX_VALUES values."""
    try:
        shape = tuple(x_shape)
    except TypeError:
        shape = ()
    if len(shape) != 4 or not all(_is_int(v) and v >= 0 for v in shape):
        raise TypeError(f"x_shape must be (N, C, H, W), four non-negative ints, got {x_shape!r}")
    shape = tuple(int(v) for v in shape)
    if shape[2] < 1 or shape[3] < 1:
        raise ValueError(f"x_shape must have height and width >= 1, got {shape}")
    _check_values(shape, "x_shape")
    return shape


cdef _check_values(tuple shape, str what, str context=""):
    """shape holds at most BN_POOL_MAX_VALUES values, and so does one of its
    (n, c) planes (a zero batch does not excuse an impossible plane): the
    kernels' buffer sizes in bytes then fit in ptrdiff_t."""
    plane = 1
    for v in shape[2:]:
        plane *= v
    if plane > BN_POOL_MAX_VALUES or shape[0] * shape[1] * plane > BN_POOL_MAX_VALUES:
        raise ValueError(
            f"{context + ': ' if context else ''}{what} {shape} has more values than the "
            f"kernels can address (at most {BN_POOL_MAX_VALUES} in all, and per (n, c) plane)")


cdef object _image(obj, str name):
    """An (N, C, H, W) float tensor with H, W >= 1."""
    X = _tensor(obj, name)
    if X.shape[2] < 1 or X.shape[3] < 1:
        raise ValueError(f"{name} must have height and width >= 1, got {_describe(X)}")
    return X


cdef class _Windows:
    """The windows of a pooling or im2col call: sizes per axis, checked, so
    that bn_pool_geometry_check accepts them (every product and coordinate
    of the kernels fits in int64, every buffer's bytes in ptrdiff_t)."""
    cdef int64_t n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow
    cdef readonly tuple pooled_shape, cols_shape

    def __init__(self, tuple x_shape, kernel_size, stride, padding, bint ceil_mode,
                 bint pool, str x_name, str call):
        kernel = _pair(kernel_size, "kernel_size", 1)
        step = kernel if stride is None else _pair(stride, "stride", 1)
        pad = _pair(padding, "padding", 0)
        if pool and (pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2):
            raise ValueError(
                f"padding {pad} must be at most half of kernel_size {kernel} "
                f"(PyTorch's rule: padding <= kernel_size // 2 on each axis)")
        n, c, h, w = x_shape
        where = (f"{call} of {x_name} {x_shape} with kernel_size {kernel}, stride {step}, "
                 f"padding {pad}")
        _check_values(x_shape, x_name, where)
        for a in (0, 1):
            size = x_shape[2 + a]
            extent = size + 2 * pad[a] + kernel[a] + step[a]
            if extent > _INT64_MAX:
                raise ValueError(
                    f"{call}: {x_name}'s {_AXES[a]} {size} with kernel_size {kernel[a]}, "
                    f"stride {step[a]} and padding {pad[a]} along it: {_AXES[a]} + "
                    f"2*padding + kernel_size + stride = {extent} must be at most 2**63 - 1")
        self.n, self.c, self.h, self.w = n, c, h, w
        self.kh, self.kw = kernel
        self.sh, self.sw = step
        self.ph, self.pw = pad
        self.oh = bn_pool_output_size(self.h, self.kh, self.sh, self.ph, ceil_mode)
        self.ow = bn_pool_output_size(self.w, self.kw, self.sw, self.pw, ceil_mode)
        if self.oh < 1 or self.ow < 1:
            raise ValueError(
                f"kernel_size {kernel} is larger than {x_name}'s padded height and width "
                f"({self.h} + 2*{self.ph}, {self.w} + 2*{self.pw}) with stride {step}: "
                f"the output would be {self.oh}x{self.ow}")
        oh, ow = int(self.oh), int(self.ow)
        self.pooled_shape = (n, c, oh, ow)
        self.cols_shape = (n, c * kernel[0] * kernel[1], oh * ow)
        _check_values(self.pooled_shape, "the output (N, C, OH, OW)" if pool
                      else "the grid of windows (N, C, OH, OW)", where)
        _check_values((n, c, kernel[0] * kernel[1], oh * ow),
                      "the columns (N, C, kh*kw, OH*OW)" if not pool
                      else "the windows' values (N, C, kh*kw, OH*OW)", where)
        cdef int code = bn_pool_geometry_check(self.n, self.c, self.h, self.w, self.kh,
                                               self.kw, self.sh, self.sw, self.ph, self.pw,
                                               self.oh, self.ow)
        if code != BN_GEOMETRY_OK:  # the checks above are the C check's, with messages
            raise ValueError(f"{where}: bn_pool_geometry_check rejects these sizes "
                             f"(code {code})")


def pool_output_size(size, kernel, stride, padding, *, ceil_mode):
    """Windows along one axis by PyTorch's rule (torch.nn.MaxPool2d/AvgPool2d):
    floor((size + 2*padding - kernel + (stride - 1 if ceil_mode else 0)) / stride) + 1,
    less one if ceil_mode would start the last window in the right padding.
    With ceil_mode False it is also a convolution's output size.

    Raises TypeError unless size, kernel, stride and padding are ints and
    ceil_mode a bool; ValueError unless size >= 1, kernel, stride >= 1,
    0 <= padding <= kernel // 2, kernel, stride and padding are at most
    2**60, size + 2*padding + kernel + stride fits in int64, and the result
    is >= 1."""
    n = _int(size, "size", 1, _INT64_MAX)
    k = _int(kernel, "kernel", 1)
    s = _int(stride, "stride", 1)
    p = _int(padding, "padding", 0)
    cdef bint ceil = _flag(ceil_mode, "ceil_mode")
    if p > k // 2:
        raise ValueError(f"padding {p} must be at most half of kernel {k} (PyTorch's rule)")
    if n + 2 * p + k + s > _INT64_MAX:
        raise ValueError(f"size + 2*padding + kernel + stride = {n + 2 * p + k + s} must be "
                         f"at most 2**63 - 1, got size {n}, kernel {k}, stride {s}, "
                         f"padding {p}")
    cdef int64_t out = bn_pool_output_size(n, k, s, p, ceil)
    if out < 1:
        raise ValueError(f"kernel {k} is larger than size {n} padded by {p} on each side")
    return int(out)


def im2col(x, kernel_size, stride, padding, *, out=None):
    """The columns of a convolution's input.

    x: (N, C, H, W) float32/float64, C-contiguous. kernel_size, stride,
    padding: int or (h, w). Returns cols (N, C*kh*kw, OH*OW) of x's dtype,
    OH = (H + 2*ph - kh) // sh + 1 (OW likewise), with
    cols[n, (c*kh + i)*kw + j, oh*OW + ow] = x[n, c, oh*sh - ph + i, ow*sw - pw + j]
    (0 in the padding): torch.nn.functional.unfold's layout."""
    X = _image(x, "x")
    cdef _Windows g = _Windows(X.shape, kernel_size, stride, padding, False, False, "x",
                               "im2col")
    O = _output(out, "out", g.cols_shape, X.dtype, ((X, "x"),))
    cdef void *px = _ptr(X)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_im2col(f32, px, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.oh,
                   g.ow, po)
    return O


def col2im(cols, x_shape, kernel_size, stride, padding, *, out=None):
    """The adjoint of im2col: dx (x_shape) where each element is the sum of the
    entries of cols that im2col read from it (torch.nn.functional.fold).
    Overwrites out; never accumulates into it."""
    shape = _x_shape(x_shape)
    cdef _Windows g = _Windows(shape, kernel_size, stride, padding, False, False, "x_shape",
                               "col2im")
    C = _array(cols, "cols")
    if C.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"cols must have dtype float32 or float64 (native byte order), "
                        f"got {C.dtype!r}")
    if C.shape != g.cols_shape:
        raise ValueError(f"cols has shape {C.shape}, expected {g.cols_shape} "
                         f"(im2col of x_shape {shape} with these windows)")
    _require_c_contiguous(C, "cols")
    O = _output(out, "out", shape, C.dtype, ((C, "cols"),))
    cdef void *pc = _ptr(C)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(C)
    with nogil:
        _bn_col2im(f32, pc, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.oh,
                   g.ow, po)
    return O


def max_pool2d_forward(x, kernel_size, stride, padding, *, ceil_mode=False, out=None,
                       indices=None):
    """(y, indices): the max of each window and its flat index h*W + w in its
    (n, c) plane (torch.nn.functional.max_pool2d(..., return_indices=True)).

    Padding counts as -inf; the first max in row-major window order is taken,
    and a NaN in the window wins (the first NaN). stride None means
    kernel_size. y (N, C, OH, OW) of x's dtype, indices int64."""
    X = _image(x, "x")
    cdef _Windows g = _Windows(X.shape, kernel_size, stride, padding,
                               _flag(ceil_mode, "ceil_mode"), True, "x", "max_pool2d_forward")
    Y = _output(out, "out", g.pooled_shape, X.dtype, ((X, "x"),))
    I = _output(indices, "indices", g.pooled_shape, np.int64, ((X, "x"), (Y, "out")))
    cdef void *px = _ptr(X)
    cdef void *py = _ptr(Y)
    cdef int64_t *pi = <int64_t*>_ptr(I)
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_max_pool2d_forward(f32, px, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph,
                               g.pw, g.oh, g.ow, py, pi)
    return Y, I


def max_pool2d_backward(dy, indices, x_shape, *, out=None):
    """dx (x_shape): zero except dx[n, c].flat[indices[n, c, oh, ow]] += dy[n, c, oh, ow]."""
    shape = _x_shape(x_shape)
    G = _tensor(dy, "dy")
    if G.shape[:2] != shape[:2]:
        raise ValueError(f"dy has shape {G.shape}, expected (N, C) = {shape[:2]} "
                         f"to match x_shape {shape}")
    _check_values(G.shape, "dy", "max_pool2d_backward")
    I = _array(indices, "indices")
    if I.dtype != np.dtype(np.int64):
        raise TypeError(f"indices must have dtype int64 (from max_pool2d_forward), "
                        f"got {I.dtype!r}")
    if I.shape != G.shape:
        raise ValueError(f"indices has shape {I.shape}, expected {G.shape} to match dy")
    _require_c_contiguous(I, "indices")
    cdef int64_t plane = shape[2] * shape[3]
    if I.size and (I.min() < 0 or I.max() >= plane):
        raise ValueError(f"indices must lie in [0, H*W) = [0, {plane}) (h*W + w within a "
                         f"plane), got values from {I.min()} to {I.max()}")
    O = _output(out, "out", shape, G.dtype, ((G, "dy"), (I, "indices")))
    cdef void *pg = _ptr(G)
    cdef int64_t *pi = <int64_t*>_ptr(I)
    cdef void *po = _ptr(O)
    cdef int64_t n = shape[0], c = shape[1], h = shape[2], w = shape[3]
    cdef int64_t oh = G.shape[2], ow = G.shape[3]
    cdef bint f32 = _is_f32(G)
    with nogil:
        _bn_max_pool2d_backward(f32, pg, pi, n, c, h, w, oh, ow, po)
    return O


def avg_pool2d_forward(x, kernel_size, stride, padding, *, ceil_mode=False,
                       count_include_pad=True, out=None):
    """y (N, C, OH, OW): the mean of each window, with torch.nn.AvgPool2d's
    divisor (count_include_pad: the window clipped to the padded input; else
    the input elements in it). Sums in float64. stride None means kernel_size."""
    X = _image(x, "x")
    cdef _Windows g = _Windows(X.shape, kernel_size, stride, padding,
                               _flag(ceil_mode, "ceil_mode"), True, "x", "avg_pool2d_forward")
    cdef int with_pad = _flag(count_include_pad, "count_include_pad")
    Y = _output(out, "out", g.pooled_shape, X.dtype, ((X, "x"),))
    cdef void *px = _ptr(X)
    cdef void *py = _ptr(Y)
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_avg_pool2d_forward(f32, px, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph,
                               g.pw, g.oh, g.ow, with_pad, py)
    return Y


def avg_pool2d_backward(dy, x_shape, kernel_size, stride, padding, *, ceil_mode=False,
                        count_include_pad=True, out=None):
    """dx (x_shape): each dy / divisor spread over its window (the adjoint of
    avg_pool2d_forward with the same arguments). Overwrites out."""
    shape = _x_shape(x_shape)
    cdef _Windows g = _Windows(shape, kernel_size, stride, padding,
                               _flag(ceil_mode, "ceil_mode"), True, "x_shape",
                               "avg_pool2d_backward")
    cdef int with_pad = _flag(count_include_pad, "count_include_pad")
    G = _tensor(dy, "dy")
    if G.shape != g.pooled_shape:
        raise ValueError(f"dy has shape {G.shape}, expected {g.pooled_shape} (the "
                         f"output of pooling x_shape {shape} with these windows)")
    O = _output(out, "out", shape, G.dtype, ((G, "dy"),))
    cdef void *pg = _ptr(G)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(G)
    with nogil:
        _bn_avg_pool2d_backward(f32, pg, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph,
                                g.pw, g.oh, g.ow, with_pad, po)
    return O


cdef object _float_array(obj, str name):
    """A float32 or float64 C-contiguous aligned array of any shape."""
    if type(obj) is np.ndarray and (_plain_float(obj, cnp.NPY_FLOAT32)
                                    or _plain_float(obj, cnp.NPY_FLOAT64)):
        return obj
    a = _array(obj, name)
    if a.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64 (native byte order), "
                        f"got {a.dtype!r}")
    _require_c_contiguous(a, name)
    return a


def _relu_backward(dy, x, *, out=None):
    """dx: dy where x > 0, else +0 (NaN or -0 x gives +0, a NaN dy passes
    where x > 0), for dy and x of one shape (any) and dtype (float32 or
    float64). The ReLU layers' backward. out may be dy itself."""
    X = _float_array(x, "x")
    G = _tensor_like(dy, "dy", X, "x")
    O = _output(out, "out", X.shape, X.dtype, ((G, "dy"), (X, "x")), (G,))
    cdef int64_t n = cnp.PyArray_SIZE(<cnp.ndarray>X)
    cdef void *pg = _ptr(G)
    cdef void *px = _ptr(X)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_relu_backward(f32, pg, px, n, po)
    return O


cdef extern from "fast/conv_direct.h" nogil:
    int bn_conv_direct_available()
    int64_t bn_conv_direct_work_f32(int64_t batch, int64_t channels, int64_t height,
                                    int64_t width, int64_t out_channels, int64_t kernel_h,
                                    int64_t kernel_w, int64_t pad_h, int64_t pad_w)
    void bn_conv_direct_f32(const float *x, int64_t batch, int64_t channels, int64_t height,
                            int64_t width, const float *weight, const float *bias,
                            int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                            int64_t pad_h, int64_t pad_w, float *work, float *y)
    enum: BN_CONV_DIRECT_DW_MAX_TAPS
    int64_t bn_conv_direct_dw_work_f32(int64_t batch, int64_t channels, int64_t height,
                                       int64_t width, int64_t out_channels, int64_t kernel_h,
                                       int64_t kernel_w, int64_t pad_h, int64_t pad_w)
    void bn_conv_direct_dw_f32(const float *x, int64_t batch, int64_t channels,
                               int64_t height, int64_t width, const float *dy,
                               int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                               int64_t pad_h, int64_t pad_w, float *work, float *grad_weight)


def _conv2d_direct_available():
    """Whether _conv2d_direct runs here: this build has its AVX-512F code
    and the CPU runs it."""
    return bool(bn_conv_direct_available())


def _conv2d_direct(x, weight, bias, padding, *, work=None, out=None):
    """y (N, O, OH, OW) = the stride-1 convolution of x (N, C, H, W) with
    weight (O, C, kh, kw) plus bias (O,) or None, x read as 0 in the
    padding (ph, pw): csrc/fast/conv_direct.h. float32 only; all arrays
    C-contiguous. work: a float32 C-contiguous 1-D scratch array of at least
    _conv2d_direct_work(...) values, or None for a new one; it is
    overwritten. Raises RuntimeError where _conv2d_direct_available() is
    False."""
    if not bn_conv_direct_available():
        raise RuntimeError("_conv2d_direct needs AVX-512F code, which this build or CPU "
                           "lacks; check _conv2d_direct_available() first")
    X = _image(x, "x")
    if not _is_f32(X):
        raise TypeError(f"x must have dtype float32, got {X.dtype}")
    W = _float_array(weight, "weight")
    if W.dtype != X.dtype:
        raise TypeError(f"weight has dtype {W.dtype}, expected float32 to match x")
    if W.ndim != 4 or W.shape[1] != X.shape[1] or W.shape[0] < 1:
        raise ValueError(f"weight must be (O, C, kh, kw) with O >= 1 and C = {X.shape[1]} "
                         f"(x's channels), got shape {W.shape}")
    o = int(W.shape[0])
    B = None
    if bias is not None:
        B = _float_array(bias, "bias")
        if B.dtype != X.dtype or B.shape != (o,):
            raise ValueError(f"bias must be float32 of shape ({o},), got {B.dtype} "
                             f"{B.shape}")
    cdef _Windows g = _Windows(X.shape, W.shape[2:], 1, padding, False, False, "x",
                               "_conv2d_direct")
    _check_values((g.n, g.c, g.h + 2 * g.ph, g.w + 2 * g.pw), "x padded (N, C, H + 2*ph, "
                  "W + 2*pw)", "_conv2d_direct")
    _check_values((g.n, o, g.oh, g.ow), "the output (N, O, OH, OW)", "_conv2d_direct")
    need = _conv2d_direct_work(X.shape, W.shape, (g.ph, g.pw))
    if work is None:
        K = np.empty(need, np.float32)
    else:
        K = _array(work, "work", True)
        if K.dtype != np.float32 or K.ndim != 1 or K.shape[0] < need:
            raise ValueError(f"work must be a 1-D float32 array of at least {need} values, "
                             f"got {K.dtype} {K.shape}")
        _require_c_contiguous(K, "work")
        if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>K):
            raise ValueError("work is read-only; pass a writeable array")
        for a, name in ((X, "x"), (W, "weight"), (B, "bias")):
            _disjoint(K, "work", a, name, False, None, None)
    O = _output(out, "out", (g.n, o, g.oh, g.ow), X.dtype,
                ((X, "x"), (W, "weight"), (B, "bias"), (K, "work")))
    cdef const float *px = <const float *>_ptr(X)
    cdef const float *pw_ = <const float *>_ptr(W)
    cdef const float *pb = <const float *>_ptr_or_null(B)
    cdef float *pk = <float *>_ptr(K)
    cdef float *po = <float *>_ptr(O)
    cdef int64_t kh = W.shape[2], kw = W.shape[3], oc = o
    with nogil:
        bn_conv_direct_f32(px, g.n, g.c, g.h, g.w, pw_, pb, oc, kh, kw, g.ph, g.pw, pk, po)
    return O


def _conv2d_direct_work(x_shape, weight_shape, padding):
    """The float32 values of _conv2d_direct's scratch for these shapes (0
    where _conv2d_direct_available() is False)."""
    n, c, h, w = shape = _x_shape(x_shape)
    o, _, kh, kw = (int(v) for v in weight_shape)
    ph, pw = _pair(padding, "padding", 0)
    _Windows(shape, (kh, kw), 1, (ph, pw), False, False, "x", "_conv2d_direct")
    _check_values((n, c, h + 2 * ph, w + 2 * pw), "x padded (N, C, H + 2*ph, W + 2*pw)",
                  "_conv2d_direct")
    _check_values((o, c, kh + 1, kw), "weight (O, C, kh + 1, kw)", "_conv2d_direct")
    return int(bn_conv_direct_work_f32(n, c, h, w, o, kh, kw, ph, pw))


def _conv2d_direct_dw(x, dy, padding, grad_weight, *, work=None):
    """Add the weight gradient of the stride-1 convolution of x (N, C, H, W)
    padded by (ph, pw) into grad_weight (O, C, kh, kw), for dy (N, O, OH,
    OW): csrc/fast/conv_direct.h. float32 only; all arrays C-contiguous.
    work: a float32 C-contiguous 1-D scratch array of at least
    _conv2d_direct_dw_work(...) values, or None for a new one; overwritten.
    Returns grad_weight. Raises RuntimeError where
    _conv2d_direct_available() is False."""
    if not bn_conv_direct_available():
        raise RuntimeError("_conv2d_direct_dw needs AVX-512F code, which this build or "
                           "CPU lacks; check _conv2d_direct_available() first")
    X = _image(x, "x")
    if not _is_f32(X):
        raise TypeError(f"x must have dtype float32, got {X.dtype}")
    W = _array(grad_weight, "grad_weight", True)
    if W.dtype != np.float32:
        raise TypeError(f"grad_weight has dtype {W.dtype}, expected float32 to match x")
    if W.ndim != 4 or W.shape[1] != X.shape[1] or W.shape[0] < 1:
        raise ValueError(f"grad_weight must be (O, C, kh, kw) with O >= 1 and C = "
                         f"{X.shape[1]} (x's channels), got shape {W.shape}")
    _require_c_contiguous(W, "grad_weight")
    if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>W):
        raise ValueError("grad_weight is read-only; pass a writeable array")
    o = int(W.shape[0])
    if W.shape[2] * W.shape[3] > BN_CONV_DIRECT_DW_MAX_TAPS:
        raise ValueError(f"grad_weight's kernel {W.shape[2]}x{W.shape[3]} has more than "
                         f"{BN_CONV_DIRECT_DW_MAX_TAPS} taps, which _conv2d_direct_dw "
                         f"does not take")
    cdef _Windows g = _Windows(X.shape, W.shape[2:], 1, padding, False, False, "x",
                               "_conv2d_direct_dw")
    G = _float_array(dy, "dy")
    if G.dtype != X.dtype or G.shape != (g.n, o, g.oh, g.ow):
        raise ValueError(f"dy must be float32 of shape {(g.n, o, g.oh, g.ow)} (the "
                         f"output's), got {G.dtype} {G.shape}")
    _require_c_contiguous(G, "dy")
    need = _conv2d_direct_dw_work(X.shape, W.shape, (g.ph, g.pw))
    if work is None:
        K = np.empty(need, np.float32)
    else:
        K = _array(work, "work", True)
        if K.dtype != np.float32 or K.ndim != 1 or K.shape[0] < need:
            raise ValueError(f"work must be a 1-D float32 array of at least {need} values, "
                             f"got {K.dtype} {K.shape}")
        _require_c_contiguous(K, "work")
        if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>K):
            raise ValueError("work is read-only; pass a writeable array")
        for a, name in ((X, "x"), (G, "dy")):
            _disjoint(K, "work", a, name, False, None, None)
    for a, name in ((X, "x"), (G, "dy"), (K, "work")):
        _disjoint(W, "grad_weight", a, name, False, None, None)
    cdef const float *px = <const float *>_ptr(X)
    cdef const float *pg = <const float *>_ptr(G)
    cdef float *pk = <float *>_ptr(K)
    cdef float *pw_ = <float *>_ptr(W)
    cdef int64_t kh = W.shape[2], kw = W.shape[3], oc = o
    with nogil:
        bn_conv_direct_dw_f32(px, g.n, g.c, g.h, g.w, pg, oc, kh, kw, g.ph, g.pw, pk, pw_)
    return W


def _conv2d_direct_dw_max_taps():
    """The most taps (kh * kw) _conv2d_direct_dw takes."""
    return BN_CONV_DIRECT_DW_MAX_TAPS


def _conv2d_direct_dw_work(x_shape, weight_shape, padding):
    """The float32 values of _conv2d_direct_dw's scratch for these shapes (0
    where _conv2d_direct_available() is False)."""
    n, c, h, w = shape = _x_shape(x_shape)
    o, _, kh, kw = (int(v) for v in weight_shape)
    ph, pw = _pair(padding, "padding", 0)
    cdef _Windows g = _Windows(shape, (kh, kw), 1, (ph, pw), False, False, "x",
                               "_conv2d_direct_dw")
    _check_values((n, c, h + 2 * ph, w + 2 * pw), "x padded (N, C, H + 2*ph, W + 2*pw)",
                  "_conv2d_direct_dw")
    _check_values((n, o + 7, g.oh + 1, w + 2 * pw + 16), "dy on the padded grid",
                  "_conv2d_direct_dw")
    return int(bn_conv_direct_dw_work_f32(n, c, h, w, o, kh, kw, ph, pw))
