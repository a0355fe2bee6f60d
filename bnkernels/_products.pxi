# --------------------------------------------------------------------------
# matrix products on the kernels' threads (csrc/gemm_pieces.h), for the nn
# layers' split products (bnkernels/nn/_blas.py)
# --------------------------------------------------------------------------

cdef extern from "gemm_pieces.h" nogil:
    ctypedef struct bn_gemm_piece:
        const void *a
        const void *b
        void *c
        int64_t m, n, k, lda, ldb, ldc
        char transa, transb
        int accumulate
    ctypedef void (*bn_gemm_fn)(const char *transa, const char *transb,
                                const int64_t *m, const int64_t *n, const int64_t *k,
                                const void *alpha, const void *a, const int64_t *lda,
                                const void *b, const int64_t *ldb, const void *beta,
                                void *c, const int64_t *ldc, size_t transa_len,
                                size_t transb_len)
    void bn_gemm_pieces(bn_gemm_fn gemm, int is_double, const bn_gemm_piece *pieces,
                        int64_t count, int max_threads)

from libc.stdint cimport INT64_MAX


cdef int _operand(a, str name, int64_t limit, char *trans,
                  int64_t *ld) except -1:
    """How the BLAS reads a (R, C), an operand of a @ b, as the transpose it
    needs (the BLAS is column-major): row-major a is that transpose with
    leading dimension its row stride ('N'); column-major a is its transpose
    ('T', the column stride)."""
    cdef int64_t rows = a.shape[0], cols = a.shape[1]
    cdef int64_t item = a.itemsize
    cdef int64_t s0 = a.strides[0], s1 = a.strides[1]
    if rows == 0 or cols == 0:   # read by no product
        trans[0] = b'N'
        ld[0] = max(cols, 1)
    elif (s1 == item or cols == 1) and s0 % item == 0 and (s0 // item >= cols or rows == 1):
        trans[0] = b'N'
        ld[0] = s0 // item if rows > 1 else max(cols, 1)
    elif (s0 == item or rows == 1) and s1 % item == 0 and (s1 // item >= rows or cols == 1):
        trans[0] = b'T'
        ld[0] = s1 // item if cols > 1 else max(rows, 1)
    else:
        raise ValueError(f"{name} must have unit stride along one axis and a leading "
                         f"stride of at least that axis' length, got shape {a.shape}, "
                         f"strides {a.strides}")
    if ld[0] > limit:
        raise ValueError(f"{name}'s leading dimension {ld[0]} exceeds the BLAS's "
                         f"integers ({limit})")
    return 0


def _gemm_pieces(address, pieces, threads, wide_integers=False):
    """out = a @ b (out += a @ b where accumulate) for each (a, b, out,
    accumulate) of `pieces`, on up to `threads` of the kernels' threads, each
    piece one call of the BLAS function at `address` (an int: sgemm_ for
    float32 pieces, dgemm_ for float64; Fortran calling convention) on one
    thread. a (M, K), b (K, N) and out (M, N) are 2-D arrays of one dtype,
    each with unit stride along one axis (out along its last); out is
    writeable and shares no memory with its a or b. The pieces must write
    disjoint outs, and the BLAS must run on its caller's thread (one BLAS
    thread: bnkernels.nn._blas.split_products). wide_integers: the BLAS
    takes 64-bit integers (ILP64); otherwise every size must be below
    2**31. Every piece is checked before any runs. The address is trusted:
    bnkernels.nn._blas finds it and checks the function on small products
    first. Returns None."""
    cdef Py_ssize_t count = len(pieces), i
    cdef int64_t limit = INT64_MAX if wide_integers else 2147483647
    cdef bn_gemm_piece *p
    cdef int is_double = 0
    cdef int max_threads = threads
    cdef bn_gemm_fn fn = <bn_gemm_fn><uintptr_t>address
    if count == 0:
        return None
    cdef bn_gemm_piece *c_pieces = <bn_gemm_piece *>malloc(count * sizeof(bn_gemm_piece))
    if c_pieces == NULL:
        raise MemoryError()
    try:
        for i in range(count):
            a, b, out, accumulate = pieces[i]
            if i == 0:
                if not isinstance(out, np.ndarray):
                    raise TypeError(f"pieces[0]'s out must be a NumPy array, got "
                                    f"{type(out).__name__}")
                if out.dtype != np.float32 and out.dtype != np.float64:
                    raise TypeError(f"pieces[0]'s out must be float32 or float64, got "
                                    f"{out.dtype}")
                is_double = out.dtype == np.float64
            for arr, name in ((a, "a"), (b, "b"), (out, "out")):
                if not isinstance(arr, np.ndarray):
                    raise TypeError(f"pieces[{i}]'s {name} must be a NumPy array, got "
                                    f"{type(arr).__name__}")
                if arr.ndim != 2 or arr.dtype != (np.float64 if is_double else np.float32):
                    raise ValueError(f"pieces[{i}]'s {name} must be a 2-D "
                                     f"{'float64' if is_double else 'float32'} array, got "
                                     f"{arr.ndim}-D {arr.dtype}")
            if (a.shape[1] != b.shape[0] or out.shape[0] != a.shape[0]
                    or out.shape[1] != b.shape[1]):
                raise ValueError(f"pieces[{i}]: a {a.shape} @ b {b.shape} does not fit out "
                                 f"{out.shape}")
            if not out.flags.writeable:
                raise ValueError(f"pieces[{i}]'s out is read-only; pass a writeable array")
            _disjoint(out, f"pieces[{i}]'s out", a, "its a", False, None, None)
            _disjoint(out, f"pieces[{i}]'s out", b, "its b", False, None, None)
            p = &c_pieces[i]
            # out = a @ b is out.T = b.T @ a.T in the BLAS's column-major
            # terms: out row-major is out.T with leading dimension its row stride
            item = out.itemsize
            s0, s1 = out.strides
            rows, cols = out.shape
            if rows * cols and not ((s1 == item or cols == 1) and s0 % item == 0
                                    and (s0 // item >= cols or rows == 1)):
                raise ValueError(f"pieces[{i}]'s out must have unit stride along its last "
                                 f"axis, got shape {out.shape}, strides {out.strides}")
            p.ldc = s0 // item if rows > 1 and cols > 0 else max(cols, 1)
            if p.ldc > limit:
                raise ValueError(f"pieces[{i}]'s out has leading dimension {p.ldc}, beyond "
                                 f"the BLAS's integers ({limit})")
            _operand(b, f"pieces[{i}]'s b", limit, &p.transa, &p.lda)
            _operand(a, f"pieces[{i}]'s a", limit, &p.transb, &p.ldb)
            p.m, p.n, p.k = out.shape[1], out.shape[0], a.shape[1]
            if max(p.m, p.n, p.k) > limit:
                raise ValueError(f"pieces[{i}]'s sizes {a.shape} @ {b.shape} exceed the "
                                 f"BLAS's integers ({limit})")
            p.a, p.b, p.c = _ptr(b), _ptr(a), _ptr(out)
            p.accumulate = 1 if accumulate else 0
        with nogil:
            bn_gemm_pieces(fn, is_double, c_pieces, count, max_threads)
    finally:
        free(c_pieces)
    return None
