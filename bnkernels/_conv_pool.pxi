# im2col / col2im and 2-D max and average pooling: checks, then one C kernel
# of csrc/conv_pool.c with the GIL released. Included by _kernels.pyx.
#
# kernel_size, stride and padding are an int or an (h, w) pair of ints.
# x_shape is the (N, C, H, W) of the forward's input.

cdef bint _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


cdef tuple _pair(value, str name, int64_t minimum):
    """value as an (h, w) pair of Python ints, each >= minimum."""
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
    return pair


cdef object _int(value, str name, int64_t minimum):
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


cdef tuple _x_shape(x_shape):
    """x_shape as an (N, C, H, W) tuple of Python ints, H and W >= 1."""
    try:
        shape = tuple(x_shape)
    except TypeError:
        shape = ()
    if len(shape) != 4 or not all(_is_int(v) and v >= 0 for v in shape):
        raise TypeError(f"x_shape must be (N, C, H, W), four non-negative ints, got {x_shape!r}")
    shape = tuple(int(v) for v in shape)
    if shape[2] < 1 or shape[3] < 1:
        raise ValueError(f"x_shape must have height and width >= 1, got {shape}")
    return shape


cdef object _image(obj, str name):
    """An (N, C, H, W) float tensor with H, W >= 1."""
    X = _tensor(obj, name)
    if X.shape[2] < 1 or X.shape[3] < 1:
        raise ValueError(f"{name} must have height and width >= 1, got {_describe(X)}")
    return X


cdef class _Windows:
    """The windows of a pooling or im2col call: sizes per axis, checked."""
    cdef int64_t n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow

    def __init__(self, tuple x_shape, kernel_size, stride, padding, bint ceil_mode,
                 bint pool, str x_name):
        kernel = _pair(kernel_size, "kernel_size", 1)
        step = kernel if stride is None else _pair(stride, "stride", 1)
        pad = _pair(padding, "padding", 0)
        if pool and (pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2):
            raise ValueError(
                f"padding {pad} must be at most half of kernel_size {kernel} "
                f"(PyTorch's rule: padding <= kernel_size // 2 on each axis)")
        self.n, self.c, self.h, self.w = x_shape
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

    @property
    def pooled_shape(self):
        return (self.n, self.c, self.oh, self.ow)

    @property
    def cols_shape(self):
        return (self.n, self.c * self.kh * self.kw, self.oh * self.ow)


def pool_output_size(size, kernel, stride, padding, ceil_mode):
    """Windows along one axis by PyTorch's rule (torch.nn.MaxPool2d/AvgPool2d):
    floor((size + 2*padding - kernel + (stride - 1 if ceil_mode else 0)) / stride) + 1,
    less one if ceil_mode would start the last window in the right padding.
    With ceil_mode False it is also a convolution's output size.

    Raises ValueError unless kernel, stride >= 1, 0 <= padding <= kernel // 2
    and the result is >= 1."""
    n = _int(size, "size", 1)
    k = _int(kernel, "kernel", 1)
    s = _int(stride, "stride", 1)
    p = _int(padding, "padding", 0)
    if p > k // 2:
        raise ValueError(f"padding {p} must be at most half of kernel {k} (PyTorch's rule)")
    cdef int64_t out = bn_pool_output_size(n, k, s, p, bool(ceil_mode))
    if out < 1:
        raise ValueError(f"kernel {k} is larger than size {n} padded by {p} on each side")
    return int(out)


def im2col(x, kernel_size, stride, padding, out=None):
    """The columns of a convolution's input.

    x: (N, C, H, W) float32/float64, C-contiguous. kernel_size, stride,
    padding: int or (h, w). Returns cols (N, C*kh*kw, OH*OW) of x's dtype,
    OH = (H + 2*ph - kh) // sh + 1 (OW likewise), with
    cols[n, (c*kh + i)*kw + j, oh*OW + ow] = x[n, c, oh*sh - ph + i, ow*sw - pw + j]
    (0 in the padding): torch.nn.functional.unfold's layout."""
    X = _image(x, "x")
    cdef _Windows g = _Windows(X.shape, kernel_size, stride, padding, False, False, "x")
    O = _output(out, "out", g.cols_shape, X.dtype, ((X, "x"),))
    cdef void *px = _ptr(X)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    with nogil:
        if f32:
            bn_im2col_f32(<float*>px, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw,
                          g.ph, g.pw, g.oh, g.ow, <float*>po)
        else:
            bn_im2col_f64(<double*>px, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw,
                          g.ph, g.pw, g.oh, g.ow, <double*>po)
    return O


def col2im(cols, x_shape, kernel_size, stride, padding, out=None):
    """The adjoint of im2col: dx (x_shape) where each element is the sum of the
    entries of cols that im2col read from it (torch.nn.functional.fold).
    Overwrites out; never accumulates into it."""
    shape = _x_shape(x_shape)
    cdef _Windows g = _Windows(shape, kernel_size, stride, padding, False, False, "x_shape")
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
        if f32:
            bn_col2im_f32(<float*>pc, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw,
                          g.ph, g.pw, g.oh, g.ow, <float*>po)
        else:
            bn_col2im_f64(<double*>pc, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw,
                          g.ph, g.pw, g.oh, g.ow, <double*>po)
    return O


def max_pool2d_forward(x, kernel_size, stride, padding, ceil_mode=False, out=None,
                       indices=None):
    """(y, indices): the max of each window and its flat index h*W + w in its
    (n, c) plane (torch.nn.functional.max_pool2d(..., return_indices=True)).

    Padding counts as -inf; the first max in row-major window order is taken,
    and a NaN in the window wins (the first NaN). stride None means
    kernel_size. y (N, C, OH, OW) of x's dtype, indices int64."""
    X = _image(x, "x")
    cdef _Windows g = _Windows(X.shape, kernel_size, stride, padding, ceil_mode, True, "x")
    Y = _output(out, "out", g.pooled_shape, X.dtype, ((X, "x"),))
    I = _output(indices, "indices", g.pooled_shape, np.int64, ((X, "x"), (Y, "out")))
    cdef void *px = _ptr(X)
    cdef void *py = _ptr(Y)
    cdef int64_t *pi = <int64_t*>_ptr(I)
    cdef bint f32 = _is_f32(X)
    with nogil:
        if f32:
            bn_max_pool2d_forward_f32(<float*>px, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh,
                                      g.sw, g.ph, g.pw, g.oh, g.ow, <float*>py, pi)
        else:
            bn_max_pool2d_forward_f64(<double*>px, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh,
                                      g.sw, g.ph, g.pw, g.oh, g.ow, <double*>py, pi)
    return Y, I


def max_pool2d_backward(dy, indices, x_shape, out=None):
    """dx (x_shape): zero except dx[n, c].flat[indices[n, c, oh, ow]] += dy[n, c, oh, ow]."""
    shape = _x_shape(x_shape)
    G = _tensor(dy, "dy")
    if G.shape[:2] != shape[:2]:
        raise ValueError(f"dy has shape {G.shape}, expected (N, C) = {shape[:2]} "
                         f"to match x_shape {shape}")
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
        if f32:
            bn_max_pool2d_backward_f32(<float*>pg, pi, n, c, h, w, oh, ow, <float*>po)
        else:
            bn_max_pool2d_backward_f64(<double*>pg, pi, n, c, h, w, oh, ow, <double*>po)
    return O


def avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode=False,
                       count_include_pad=True, out=None):
    """y (N, C, OH, OW): the mean of each window, with torch.nn.AvgPool2d's
    divisor (count_include_pad: the window clipped to the padded input; else
    the input elements in it). Sums in float64. stride None means kernel_size."""
    X = _image(x, "x")
    cdef _Windows g = _Windows(X.shape, kernel_size, stride, padding, ceil_mode, True, "x")
    Y = _output(out, "out", g.pooled_shape, X.dtype, ((X, "x"),))
    cdef void *px = _ptr(X)
    cdef void *py = _ptr(Y)
    cdef int with_pad = bool(count_include_pad)
    cdef bint f32 = _is_f32(X)
    with nogil:
        if f32:
            bn_avg_pool2d_forward_f32(<float*>px, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh,
                                      g.sw, g.ph, g.pw, g.oh, g.ow, with_pad, <float*>py)
        else:
            bn_avg_pool2d_forward_f64(<double*>px, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh,
                                      g.sw, g.ph, g.pw, g.oh, g.ow, with_pad, <double*>py)
    return Y


def avg_pool2d_backward(dy, x_shape, kernel_size, stride, padding, ceil_mode=False,
                        count_include_pad=True, out=None):
    """dx (x_shape): each dy / divisor spread over its window (the adjoint of
    avg_pool2d_forward with the same arguments). Overwrites out."""
    shape = _x_shape(x_shape)
    cdef _Windows g = _Windows(shape, kernel_size, stride, padding, ceil_mode, True,
                               "x_shape")
    G = _tensor(dy, "dy")
    if G.shape != g.pooled_shape:
        raise ValueError(f"dy has shape {G.shape}, expected {g.pooled_shape} (the "
                         f"output of pooling x_shape {shape} with these windows)")
    O = _output(out, "out", shape, G.dtype, ((G, "dy"),))
    cdef void *pg = _ptr(G)
    cdef void *po = _ptr(O)
    cdef int with_pad = bool(count_include_pad)
    cdef bint f32 = _is_f32(G)
    with nogil:
        if f32:
            bn_avg_pool2d_backward_f32(<float*>pg, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh,
                                       g.sw, g.ph, g.pw, g.oh, g.ow, with_pad, <float*>po)
        else:
            bn_avg_pool2d_backward_f64(<double*>pg, g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh,
                                       g.sw, g.ph, g.pw, g.oh, g.ow, with_pad, <double*>po)
    return O
