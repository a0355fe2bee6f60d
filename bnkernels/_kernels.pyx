# cython: language_level=3, boundscheck=False, wraparound=False
"""The thin layer between NumPy arrays and the C kernels of csrc/.

Each function checks its arguments once (dtype, ndim, shape, C-contiguity,
writeability, aliasing), allocates the output when none is given, releases the
GIL and calls one C kernel. Error messages use the public argument names.
No math lives here.
"""
import numbers
from weakref import getweakrefcount as _getweakrefcount

import numpy as np

cimport numpy as cnp
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.ref cimport PyObject

cdef extern from "Python.h":
    # declared here: Cython 3.0.0's cpython.ref lacks _Py_REFCNT
    Py_ssize_t Py_REFCNT(PyObject *o)
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport free, malloc

from bnkernels._kernels cimport *

cnp.import_array()

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_F64 = np.dtype(np.float64)
_REAL = numbers.Real


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------

cdef str _describe(a):
    return f"{a.dtype} array of shape {a.shape}"


cdef object _array(obj, str name, bint written=False):
    """obj as a plain ndarray over the same memory: subclasses become
    base-class views, objects with __dlpack__ (PyTorch CPU tensors, ...) are
    viewed through DLPack, and anything exposing the buffer protocol or
    __array_interface__ is viewed by NumPy; none of these copies. An array
    the call writes (written) must be such a view; one it only reads may
    also be a sequence NumPy converts (a copy nobody sees)."""
    if type(obj) is np.ndarray:
        return obj
    if obj is None:
        raise TypeError(f"{name} must be an array, got None")
    if isinstance(obj, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, whose mask bnkernels would ignore; "
                        f"pass {name}.filled(value) or numpy.asarray({name})")
    if isinstance(obj, np.ndarray):
        return np.asarray(obj)
    if hasattr(type(obj), "__dlpack__"):
        try:
            return np.from_dlpack(obj)
        except (BufferError, TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"{name}: cannot view this {type(obj).__name__} as a NumPy "
                            f"array without a copy (DLPack says: {e})") from None
    if written:
        try:
            return np.asarray(obj, copy=False)
        except ValueError:
            raise TypeError(
                f"{name} must be an array bnkernels can write into (a NumPy array, or an "
                f"object with __dlpack__, __array_interface__ or the buffer protocol), "
                f"got {type(obj).__name__}") from None
    return np.asarray(obj)


cdef _require_c_contiguous(a, str name):
    if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a):
        raise ValueError(
            f"{name} must be C-contiguous, got a non-contiguous {_describe(a)} "
            f"with strides {a.strides}; pass numpy.ascontiguousarray({name})")
    if not cnp.PyArray_ISALIGNED(<cnp.ndarray>a):
        raise ValueError(
            f"{name} is not aligned to its dtype ({_describe(a)}); pass numpy.require("
            f"{name}, requirements='CA')")


cdef inline bint _plain_float(cnp.ndarray a, int type_num):
    """a has the dtype type_num in native byte order, C-contiguous and aligned."""
    return (cnp.PyArray_TYPE(a) == type_num and cnp.PyArray_ISNOTSWAPPED(a)
            and cnp.PyArray_ISCARRAY_RO(a))


cdef object _bn_tensor(obj, str name, bint nhwc=False):
    """An (N, C, *spatial) (or with nhwc, (N, *spatial, C)) float32 or float64
    C-contiguous array, with zero or more spatial axes."""
    if type(obj) is np.ndarray and cnp.PyArray_NDIM(<cnp.ndarray>obj) >= 2 and (
            _plain_float(obj, cnp.NPY_FLOAT32) or _plain_float(obj, cnp.NPY_FLOAT64)):
        return obj  # the common case, checked without touching Python attributes
    a = _array(obj, name)
    if a.ndim < 2:
        raise ValueError(
            f"{name} must have at least 2 axes, "
            f"{'(N, *spatial, C)' if nhwc else '(N, C, *spatial)'}, got "
            f"{a.ndim}-D {_describe(a)}")
    if a.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have dtype float32 or float64 (native byte order), "
            f"got {a.dtype!r}")
    _require_c_contiguous(a, name)
    return a


cdef object _tensor(obj, str name):
    """An (N, C, H, W) float32 or float64 C-contiguous array (convolution
    and pooling, whose kernels are 2-D)."""
    a = _bn_tensor(obj, name)
    if cnp.PyArray_NDIM(<cnp.ndarray>a) != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got {a.ndim}-D {_describe(a)}")
    return a


cdef inline bint _same_layout(cnp.ndarray a, cnp.ndarray x):
    """a has x's shape and dtype, and is C-contiguous and aligned."""
    cdef int d
    if cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(x) or not _plain_float(a, cnp.PyArray_TYPE(x)):
        return False
    for d in range(cnp.PyArray_NDIM(x)):
        if cnp.PyArray_DIMS(a)[d] != cnp.PyArray_DIMS(x)[d]:
            return False
    return True


cdef inline void _sizes(X, bint nhwc, int64_t *n, int64_t *c, int64_t *s):
    """batch, channels and spatial size (the product of the spatial axes, 1
    if there are none) of a checked tensor, any rank >= 2."""
    cdef cnp.npy_intp *d = cnp.PyArray_DIMS(<cnp.ndarray>X)
    cdef int ndim = cnp.PyArray_NDIM(<cnp.ndarray>X)
    cdef int first = 1 if nhwc else 2
    cdef int k
    n[0] = d[0]
    c[0] = d[ndim - 1] if nhwc else d[1]
    s[0] = 1
    for k in range(first, first + ndim - 2):
        s[0] *= d[k]


cdef object _tensor_like(obj, str name, x, str x_name):
    """A tensor with x's shape and dtype."""
    if type(obj) is np.ndarray and _same_layout(obj, x):
        return obj
    a = _array(obj, name)
    if a.dtype != x.dtype:
        raise TypeError(
            f"{name} has dtype {a.dtype}, expected {x.dtype} to match {x_name}")
    if a.shape != x.shape:
        raise ValueError(
            f"{name} has shape {a.shape}, expected {x.shape} to match {x_name}")
    _require_c_contiguous(a, name)
    return a


cdef object _channels(obj, str name, x, str x_name, dtype=None, bint nhwc=False):
    """A per-channel vector of x's C channels (axis 1, or the last with nhwc),
    of x's dtype (or `dtype`)."""
    cdef int type_num = cnp.PyArray_TYPE(<cnp.ndarray>x) if dtype is None else cnp.NPY_FLOAT64
    cdef int axis = cnp.PyArray_NDIM(<cnp.ndarray>x) - 1 if nhwc else 1
    if (type(obj) is np.ndarray and cnp.PyArray_NDIM(<cnp.ndarray>obj) == 1
            and cnp.PyArray_DIMS(<cnp.ndarray>obj)[0] == cnp.PyArray_DIMS(<cnp.ndarray>x)[axis]
            and _plain_float(obj, type_num)):
        return obj
    a = _array(obj, name)
    expected = x.dtype if dtype is None else dtype
    c = x.shape[axis]
    if a.dtype != expected:
        raise TypeError(
            f"{name} has dtype {a.dtype}, expected {expected}"
            + (f" to match {x_name}" if dtype is None else ""))
    if a.ndim != 1 or a.shape[0] != c:
        raise ValueError(
            f"{name} has shape {a.shape}, expected ({c},) to match "
            f"{x_name}'s {c} channels"
            + (f" (the last axis of {x_name}: layout='NHWC')" if nhwc else ""))
    _require_c_contiguous(a, name)
    return a


# --------------------------------------------------------------------------
# the aliasing rule, one check for every entry point: an array the call
# writes shares no byte with any other argument it reads or writes, except
# that an output may be its documented in-place partner itself (the same
# start, shape and dtype: an elementwise kernel reads each element before it
# writes it there). Running statistics, workspaces and gradient accumulators
# are written too; a backward's reads include the arrays its forward saved.
# --------------------------------------------------------------------------

cdef inline bint _extent(cnp.ndarray a, char **lo, char **hi) noexcept:
    """Set [lo, hi) to the bytes a's elements lie in: all of them for a
    C-contiguous array, also the gaps between for a strided one. False for an
    empty array, which holds no memory."""
    cdef int d
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(a)
    cdef char *first = <char*>cnp.PyArray_DATA(a)
    cdef char *last = first
    for d in range(cnp.PyArray_NDIM(a)):
        if dims[d] == 0:
            return False
        if strides[d] < 0:
            first += strides[d] * (dims[d] - 1)
        else:
            last += strides[d] * (dims[d] - 1)
    lo[0] = first
    hi[0] = last + cnp.PyArray_ITEMSIZE(a)
    return True


cdef bint _overlaps(a, b):
    """Whether two arrays' extents intersect: exactly whether they share
    memory for C-contiguous arrays (the kernels' arguments), conservatively
    for strided ones."""
    cdef char *la
    cdef char *ha
    cdef char *lb
    cdef char *hb
    if not _extent(<cnp.ndarray>a, &la, &ha) or not _extent(<cnp.ndarray>b, &lb, &hb):
        return False
    return la < hb and lb < ha


cdef bint _same_memory(a, b):
    return (cnp.PyArray_DATA(<cnp.ndarray>a) == cnp.PyArray_DATA(<cnp.ndarray>b)
            and a.shape == b.shape and a.dtype == b.dtype)


cdef int _disjoint(a, str a_name, b, str b_name, bint b_written, partner,
                   str partner_name) except -1:
    """Raise unless a, an array the call writes, shares no memory with b,
    another argument it reads (or, b_written, also writes); a may be
    `partner` itself (None: no in-place mode)."""
    if a is None or b is None or not _overlaps(a, b):
        return 0
    if partner is not None and b is partner and _same_memory(a, b):
        return 0
    if partner is None:
        hint = "pass arrays that share no memory"
    elif b is partner:
        hint = f"it may be {partner_name} itself (in place) but not overlap it otherwise"
    else:
        hint = (f"it may be {partner_name} itself (in place) but share no memory with "
                f"any other argument")
    raise ValueError(f"{a_name} overlaps {'' if b_written else 'input '}{b_name}; {hint}")


cdef int _check_writes(tuple written, tuple read, in_place_out=None, in_place_in=None,
                       str in_place_name=None) except -1:
    """The aliasing rule for a call that writes several arrays: written and
    read are ((array or None, name), ...); each written array is checked
    against every other written one and every read one. in_place_out may be
    in_place_in itself."""
    cdef Py_ssize_t i, j
    cdef tuple w, o
    for i in range(len(written)):
        w = written[i]
        if w[0] is None:
            continue
        for j in range(i + 1, len(written)):
            o = written[j]
            _disjoint(w[0], w[1], o[0], o[1], True, None, None)
        for o in read:
            if w[0] is in_place_out:
                _disjoint(w[0], w[1], o[0], o[1], False, in_place_in, in_place_name)
            else:
                _disjoint(w[0], w[1], o[0], o[1], False, None, None)
    return 0


cdef object _writable(obj, str name, tuple shape, dtype):
    """obj, an array the call writes, as a plain ndarray over its memory:
    of `shape` and `dtype`, C-contiguous, aligned and writeable."""
    a = _array(obj, name, True)
    if a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype}, expected {np.dtype(dtype)}")
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    _require_c_contiguous(a, name)
    if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a):
        raise ValueError(f"{name} is read-only; pass a writeable array")
    return a


# --------------------------------------------------------------------------
# the output cache: large new outputs reuse blocks whose arrays are gone
# --------------------------------------------------------------------------
#
# A new output of CACHE_MIN_BYTES or more is a block of this cache behind an
# array (the array's base is the block's _CachedBlock). When the last array or
# view of it is deallocated the block goes back to the cache, already paged
# in, for the next output of about its size, instead of back to the OS, which
# would fault every page in again (for a 100 MB tensor that took longer than
# the kernel). At most CACHE_SLOTS blocks and _cache_limit bytes are kept; a
# block is reused only for a request of at least half its size. Every
# function here runs with the GIL held, which serializes them.
#
# An output starts at the same offset within a 4 KiB page as the call's
# first input (x, dy), or on a 64-byte line when there is none: a y a few
# bytes past x modulo 4 KiB makes the CPU take loads of x for reloads of
# earlier stores to y (4K aliasing). NumPy's own large arrays all start at
# one offset, so x and y from it never meet that, and neither do ours
# (docs/guide.md has the measured cost of the other placements).

cdef enum:
    CACHE_SLOTS = 8
    CACHE_ALIGN = 64                # data without an input to follow: on a cache line
    CACHE_PAGE = 4096               # data's offset in its page follows the input's
    CACHE_GRAIN = 1 << 16           # block sizes are multiples of 64 KiB
cdef size_t CACHE_MIN_BYTES = 1 << 22   # 4 MiB
cdef size_t _cache_limit = 1 << 30      # bytes kept at most (set_cache_limit)
cdef void *_cache_blocks[CACHE_SLOTS]
cdef size_t _cache_sizes[CACHE_SLOTS]
cdef int _cache_count = 0
cdef size_t _cache_bytes = 0


cdef extern from *:
    """
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    /* Ask for transparent huge pages over [p, p + n), as NumPy does for its
       arrays of 4 MiB or more, so that a cached output costs no more TLB
       misses to write than NumPy's own. A no-op where there are none. */
    static void bn_advise_huge_pages(void *p, size_t n)
    {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        const size_t page = 4096;
        const size_t start = ((size_t)p + page - 1) / page * page;
        const size_t end = ((size_t)p + n) / page * page;
        if (end > start)
            madvise((void *)start, end - start, MADV_HUGEPAGE);
    #else
        (void)p;
        (void)n;
    #endif
    }
    """
    void bn_advise_huge_pages(void *p, size_t n) noexcept


cdef extern from "Python.h":
    int PyTraceMalloc_Track(unsigned int domain, uintptr_t ptr, size_t size)
    int PyTraceMalloc_Untrack(unsigned int domain, uintptr_t ptr)

# tracemalloc sees a block while an array uses it, as it sees NumPy's memory
cdef unsigned int CACHE_TRACE_DOMAIN = 0x626e6b   # "bnk"


cdef class _CachedBlock:
    """The memory behind one cached output; given back to the cache (or
    freed) when the last array using it is deallocated."""
    cdef void *raw
    cdef size_t size

    def __dealloc__(self):
        PyTraceMalloc_Untrack(CACHE_TRACE_DOMAIN, <uintptr_t>self.raw)
        _cache_put(self.raw, self.size)
        self.raw = NULL


cdef void _cache_put(void *raw, size_t size) noexcept:
    """Keep raw (size bytes) for a later output, or free it if the cache is full."""
    global _cache_count, _cache_bytes
    if raw == NULL:
        return
    if _cache_count < CACHE_SLOTS and _cache_bytes + size <= _cache_limit:
        _cache_blocks[_cache_count] = raw
        _cache_sizes[_cache_count] = size
        _cache_count += 1
        _cache_bytes += size
    else:
        free(raw)


cdef void *_cache_take(size_t size, size_t *taken) noexcept:
    """The smallest kept block of size to 2 * size bytes, out of the cache,
    its size in *taken; NULL if there is none."""
    global _cache_count, _cache_bytes
    cdef int i, best = -1
    for i in range(_cache_count):
        if size <= _cache_sizes[i] <= 2 * size and (
                best < 0 or _cache_sizes[i] < _cache_sizes[best]):
            best = i
    if best < 0:
        return NULL
    cdef void *raw = _cache_blocks[best]
    taken[0] = _cache_sizes[best]
    _cache_bytes -= _cache_sizes[best]
    _cache_count -= 1
    _cache_blocks[best] = _cache_blocks[_cache_count]
    _cache_sizes[best] = _cache_sizes[_cache_count]
    return raw


cdef void _cache_trim(size_t limit) noexcept:
    """Free kept blocks until at most limit bytes are kept."""
    global _cache_count, _cache_bytes
    while _cache_count > 0 and _cache_bytes > limit:
        _cache_count -= 1
        _cache_bytes -= _cache_sizes[_cache_count]
        free(_cache_blocks[_cache_count])


cdef object _cached_array(int ndim, cnp.npy_intp *dims, int type_num, size_t nbytes,
                         uintptr_t like):
    """An uninitialized C-contiguous array whose data is a cached block,
    starting at like's offset in its 4 KiB page (like 0: at a 64-byte line)."""
    cdef size_t size = (nbytes + CACHE_PAGE + CACHE_GRAIN - 1) // CACHE_GRAIN * CACHE_GRAIN
    cdef size_t taken = size
    cdef void *raw = _cache_take(size, &taken)
    if raw == NULL:
        raw = malloc(size)
        if raw == NULL:
            _cache_trim(0)
            raw = malloc(size)
            if raw == NULL:
                raise MemoryError(f"cannot allocate an output of {nbytes} bytes")
        bn_advise_huge_pages(raw, size)
    block = _CachedBlock.__new__(_CachedBlock)
    (<_CachedBlock>block).raw = raw
    (<_CachedBlock>block).size = taken
    PyTraceMalloc_Track(CACHE_TRACE_DOMAIN, <uintptr_t>raw, taken)
    cdef uintptr_t data
    if like == 0:
        data = (<uintptr_t>raw + CACHE_ALIGN - 1) // CACHE_ALIGN * CACHE_ALIGN
    else:
        data = <uintptr_t>raw + ((like - <uintptr_t>raw) & (CACHE_PAGE - 1))
    a = cnp.PyArray_SimpleNewFromData(ndim, dims, type_num, <void *>data)
    cnp.set_array_base(<cnp.ndarray>a, block)
    return a


cdef object _empty(int ndim, cnp.npy_intp *dims, int type_num, size_t itemsize, like):
    """np.empty of these dims: a cached block from CACHE_MIN_BYTES on, placed
    like the ndarray `like` in its page (None: on a 64-byte line)."""
    cdef size_t nbytes = itemsize
    cdef uintptr_t place
    cdef int d
    for d in range(ndim):
        nbytes *= <size_t>dims[d]
    if nbytes >= CACHE_MIN_BYTES and _cache_limit > 0:
        place = 0 if like is None else <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>like)
        if place % itemsize:   # an offset this dtype cannot start at
            place = 0
        return _cached_array(ndim, dims, type_num, nbytes, place)
    return cnp.PyArray_EMPTY(ndim, dims, type_num, 0)


cdef bint _cached_alone(cnp.ndarray a):
    """a's data is a cached block that no other array or view uses."""
    cdef PyObject *base = cnp.PyArray_BASE(a)
    return (base != NULL and Py_REFCNT(base) == 1
            and type(<object>base) is _CachedBlock)


def set_cache_limit(max_bytes):
    """Keep at most `max_bytes` of freed output memory for later outputs.

    New outputs of 4 MiB or more (results the library allocates: ``out=None``,
    the layers' outputs and gradients) are blocks that go back to a small
    cache when their last array is deallocated, and the next output of about
    that size reuses one, already paged in, instead of asking the OS for new
    pages. The cache holds at most 8 blocks and, by default, 1 GiB.

    Parameters
    ----------
    max_bytes : int
        0 turns the cache off (every output is new memory, as with
        ``np.empty``). Blocks kept beyond the new limit are freed at once.

    Raises
    ------
    TypeError
        max_bytes is not an int.
    ValueError
        max_bytes is negative.
    """
    global _cache_limit
    limit = _whole_number(max_bytes, "max_bytes", "an int >= 0")
    if limit < 0:
        raise ValueError(f"max_bytes must be >= 0, got {limit}")
    _cache_limit = <size_t>min(limit, 1 << 62)
    _cache_trim(_cache_limit)


def empty_cache():
    """Free the output memory the cache keeps (see set_cache_limit)."""
    _cache_trim(0)


def cache_info():
    """The output cache's state: {"blocks": kept blocks, "bytes": their
    size, "limit": the most it keeps}."""
    return {"blocks": _cache_count, "bytes": _cache_bytes, "limit": _cache_limit}


cdef object _new_array(tuple shape, dtype, bint zero, like=None):
    """np.empty(shape, dtype) (np.zeros with zero), without a Python call; a
    cached block from CACHE_MIN_BYTES on, placed like the ndarray `like`."""
    cdef cnp.npy_intp dims[32]
    cdef int ndim = len(shape)
    cdef int d
    if ndim > 32 or not isinstance(dtype, cnp.dtype):
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    for d in range(ndim):
        dims[d] = shape[d]
    cdef int type_num = (<cnp.dtype>dtype).type_num
    if zero:
        return cnp.PyArray_ZEROS(ndim, dims, type_num, 0)
    return _empty(ndim, dims, type_num, (<cnp.dtype>dtype).itemsize, like)


cdef object _output(obj, str name, tuple shape, dtype, tuple inputs,
                    tuple in_place_ok=(), bint zero=False):
    """The array a kernel writes: `obj` checked, or a new one if obj is None.

    inputs are (array or None, name) pairs the output must not overlap (the
    aliasing rule); in_place_ok holds at most one of them, which the output
    may be itself (elementwise kernels read each element before writing it).
    """
    if obj is None:
        first = inputs[0][0] if inputs else None
        return _new_array(shape, dtype, zero,
                          first if type(first) is np.ndarray else None)
    a = _writable(obj, name, shape, dtype)
    partner = in_place_ok[0] if in_place_ok else None
    cdef str partner_name = None
    cdef tuple pair
    if partner is not None:
        for pair in inputs:
            if pair[0] is partner:
                partner_name = pair[1]
    for pair in inputs:
        _disjoint(a, name, pair[0], pair[1], False, partner, partner_name)
    return a


# --------------------------------------------------------------------------
# scalars
# --------------------------------------------------------------------------

cdef double _real(value, str name, str expected) except? -1.0:
    """value as a C double: a real number (not a bool, not a string)."""
    if type(value) is float:
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, _REAL):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} "
                        f"{value!r} (expected: {expected})")
    try:
        return float(value)
    except OverflowError:  # an int beyond the doubles: out of every range
        return INFINITY if value > 0 else -INFINITY


cdef double _check_eps(value, str name) except? -1.0:
    """An epsilon: finite and >= 0."""
    cdef double v = _real(value, name, "finite and >= 0")
    if not (v >= 0. and v < INFINITY):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return v


cdef double _check_momentum(value, str name) except? -1.0:
    """A momentum (the weight of the new statistic): finite, in [0, 1]."""
    cdef double v = _real(value, name, "finite and in [0, 1]")
    if not (v >= 0. and v <= 1.):
        raise ValueError(f"{name} must be finite and in [0, 1], got {value!r}")
    return v


cdef int64_t _check_ddof(value) except -1:
    """running_var_ddof: 1 (the unbiased variance) or 0 (the biased one)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"running_var_ddof must be the int 0 or 1, got "
                        f"{type(value).__name__} {value!r}")
    if value != 0 and value != 1:
        raise ValueError(f"running_var_ddof must be 0 (biased running variance) or 1 "
                         f"(unbiased), got {value!r}")
    return value


def check_ddof(ddof):
    """running_var_ddof as an int: TypeError unless an int (bool is not),
    ValueError unless 0 or 1."""
    return _check_ddof(ddof)


def check_batch_eps(double eps, bint batch_stats):
    """eps = 0 is refused where the batch's statistics normalize (training, or
    no running statistics), as PyTorch does: a constant channel would give
    0 / 0. Normalizing with running statistics, eps may be 0."""
    if batch_stats and eps == 0.:
        raise ValueError("eps must be > 0 when normalizing with the batch's statistics "
                         "(training, or no running statistics), got 0.0: a constant "
                         "channel would give 0 / 0")


def check_eps(eps, name="eps"):
    """eps as a float: TypeError unless a real number (bool is not),
    ValueError unless finite and >= 0."""
    return _check_eps(eps, name)


def check_momentum(momentum, name="momentum"):
    """momentum as a float: TypeError unless a real number (bool is not),
    ValueError unless finite and in [0, 1]."""
    return _check_momentum(momentum, name)


# --------------------------------------------------------------------------
# the crossing into C: every entry point checks its arguments, takes its
# arrays' data pointers, and calls _bn_<kernel>(f32, ...) of the generated
# _dispatch.pxi, f32 true for float32 tensors, which calls the pair's fused
# function (bnkernels/_kernels.pxd) for float or double. The checks
# guarantee each pointer is of the dtype its kernel reads or writes there.
# --------------------------------------------------------------------------

include "_dispatch.pxi"


cdef inline bint _is_f32(a):
    return cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_FLOAT32


cdef inline void* _ptr(a):
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline void* _ptr_or_null(a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline double* _f64(a):
    """The data of a checked float64 array (or NULL for None)."""
    return NULL if a is None else <double*>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline void _widen(const real *src, int64_t count, double *dst) noexcept nogil:
    cdef int64_t j
    for j in range(count):
        dst[j] = src[j]


# --------------------------------------------------------------------------
# Darknet-exact family
# --------------------------------------------------------------------------

# build=: how the Darknet being reproduced was compiled. The backward's sums
# and dx differ between builds (csrc/formulas.h, "-Ofast"); every other
# kernel gives the same bits in all three.
cdef enum:
    _STRICT = 0      # -O2 -fno-fast-math: Darknet's loop order
    _OFAST = 1       # each fork's Makefile, GCC -Ofast (SSE2): 4-lane row sums
    _OFAST_AVX = 2   # AlexeyAB's CMake build, -Ofast -mavx: 8-lane row sums


cdef int _build(build) except -1:
    if isinstance(build, str):
        if build == "strict":
            return _STRICT
        if build == "ofast":
            return _OFAST
        if build == "ofast-avx":
            return _OFAST_AVX
    raise ValueError(f"build must be 'strict', 'ofast' or 'ofast-avx', got {build!r}")


def dk_mean(x, out=None):
    X = _bn_tensor(x, "x")
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    O = _output(out, "out", (c,), X.dtype, ((X, "x"),))
    cdef void *px = _ptr(X)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_dk_mean(f32, px, n, c, s, po)
    return O


def dk_variance(x, mean, out=None):
    X = _bn_tensor(x, "x")
    M = _channels(mean, "mean", X, "x")
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    O = _output(out, "out", (c,), X.dtype, ((X, "x"), (M, "mean")))
    cdef void *px = _ptr(X)
    cdef void *pm = _ptr(M)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_dk_variance(f32, px, pm, n, c, s, po)
    return O


def dk_rolling_update(keep, take, stat, rolling):
    """rolling = fl(fl(rolling * keep) + fl(take * stat)), in place; keep
    and take in [0, 1]."""
    cdef double keep64 = _check_momentum(keep, "keep")
    cdef double take64 = _check_momentum(take, "take")
    S = _array(stat, "stat")
    if S.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"stat must have dtype float32 or float64, got {S.dtype!r}")
    if S.ndim != 1:
        raise ValueError(f"stat must be 1-D (C,), got {S.ndim}-D {_describe(S)}")
    _require_c_contiguous(S, "stat")
    if rolling is None:
        raise TypeError("rolling must be an array (it is updated in place), got None")
    cdef int64_t c = S.shape[0]
    R = _output(rolling, "rolling", (c,), S.dtype, ((S, "stat"),))
    cdef void *ps = _ptr(S)
    cdef void *pr = _ptr(R)
    cdef bint f32 = _is_f32(S)
    with nogil:
        _bn_dk_rolling_update(f32, c, keep64, take64, ps, pr)
    return R


def dk_normalize(x, mean, variance, eps, bint eps_inside, out=None):
    X = _bn_tensor(x, "x")
    M = _channels(mean, "mean", X, "x")
    V = _channels(variance, "variance", X, "x")
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    O = _output(out, "out", X.shape, X.dtype,
                ((X, "x"), (M, "mean"), (V, "variance")), (X,))
    cdef void *px = _ptr(X)
    cdef void *pm = _ptr(M)
    cdef void *pv = _ptr(V)
    cdef void *po = _ptr(O)
    cdef double e = _check_eps(eps, "eps")
    cdef bint f32 = _is_f32(X)
    with nogil:
        if eps_inside:
            _bn_dk_normalize_eps_inside(f32, px, pm, pv, n, c, s, e, po)
        else:
            _bn_dk_normalize_eps_outside(f32, px, pm, pv, n, c, s, e, po)
    return O


def dk_scale_bias(x, scales, out=None):
    X = _bn_tensor(x, "x")
    G = _channels(scales, "scales", X, "x")
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    O = _output(out, "out", X.shape, X.dtype, ((X, "x"), (G, "scales")), (X,))
    cdef void *px = _ptr(X)
    cdef void *pg = _ptr(G)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_dk_scale_bias(f32, px, pg, n, c, s, po)
    return O


def dk_add_bias(x, biases, out=None):
    X = _bn_tensor(x, "x")
    B = _channels(biases, "biases", X, "x")
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    O = _output(out, "out", X.shape, X.dtype, ((X, "x"), (B, "biases")), (X,))
    cdef void *px = _ptr(X)
    cdef void *pb = _ptr(B)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_dk_add_bias(f32, px, pb, n, c, s, po)
    return O


def dk_scale_add_bias(x, scales, biases, out=None):
    X = _bn_tensor(x, "x")
    G = _channels(scales, "scales", X, "x")
    B = _channels(biases, "biases", X, "x")
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    O = _output(out, "out", X.shape, X.dtype,
                ((X, "x"), (G, "scales"), (B, "biases")), (X,))
    cdef void *px = _ptr(X)
    cdef void *pg = _ptr(G)
    cdef void *pb = _ptr(B)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_dk_scale_add_bias(f32, px, pg, pb, n, c, s, po)
    return O


def dk_inference(x, mean, variance, scales, biases, eps, bint eps_inside, out=None):
    """normalize_cpu (eps inside the square root when eps_inside, as
    AlexeyAB's; outside, as pjreddie's), scale_bias and add_bias in one
    pass, the same bits as the three; out may be x."""
    X = _bn_tensor(x, "x")
    M = _channels(mean, "mean", X, "x")
    V = _channels(variance, "variance", X, "x")
    G = _channels(scales, "scales", X, "x")
    B = _channels(biases, "biases", X, "x")
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    O = _output(out, "out", X.shape, X.dtype,
                ((X, "x"), (M, "mean"), (V, "variance"), (G, "scales"), (B, "biases")),
                (X,))
    cdef void *px = _ptr(X)
    cdef void *pm = _ptr(M)
    cdef void *pv = _ptr(V)
    cdef void *pg = _ptr(G)
    cdef void *pb = _ptr(B)
    cdef void *po = _ptr(O)
    cdef double e = _check_eps(eps, "eps")
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_dk_inference(f32, px, pm, pv, pg, pb, n, c, s, e, eps_inside, po)
    return O


def dk_layer_inference(x, weight, bias, running_mean, running_var, eps, bint eps_inside,
                       out=None, workspace=None):
    """forward_batchnorm_layer in eval mode: check_forward's checks (training
    false; workspace checked, then unused), then dk_inference on the checked
    arrays, weight and bias None meaning 1 and 0. eps must be checked already
    (check_eps).

    Returns (y, x, weight, bias, running_mean, running_var, y_is_x): the
    arrays as checked and whether y was written over x (out=x)."""
    X, W, B, RM, RV, O = _check_forward(x, weight, bias, running_mean, running_var, False,
                                        out, False, workspace)
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    cdef bint y_is_x = O is not None and _same_memory(O, X)
    if O is None:
        O = _empty(cnp.PyArray_NDIM(<cnp.ndarray>X), cnp.PyArray_DIMS(<cnp.ndarray>X),
                   cnp.PyArray_TYPE(<cnp.ndarray>X), cnp.PyArray_ITEMSIZE(<cnp.ndarray>X), X)
    G = np.ones(c, X.dtype) if W is None else W
    Z = np.zeros(c, X.dtype) if B is None else B
    cdef void *px = _ptr(X)
    cdef void *pm = _ptr(RM)
    cdef void *pv = _ptr(RV)
    cdef void *pg = _ptr(G)
    cdef void *pb = _ptr(Z)
    cdef void *po = _ptr(O)
    cdef double e = eps
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_dk_inference(f32, px, pm, pv, pg, pb, n, c, s, e, eps_inside, po)
    return O, X, W, B, RM, RV, y_is_x


def dk_backward_bias(delta, out=None, bint accumulate=False, build="strict"):
    """Each channel's gradient sum, added into out when accumulate is true
    (Darknet's +=), written over out otherwise; each row summed as ``build``
    sums it."""
    cdef int b = _build(build)
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
        if b == _OFAST:
            _bn_dk_ofast_backward_bias(f32, pd, n, c, s, po)
        elif b == _OFAST_AVX:
            _bn_dk_ofast_avx_backward_bias(f32, pd, n, c, s, po)
        else:
            _bn_dk_backward_bias(f32, pd, n, c, s, po)
    return O


def dk_backward_scale(x_norm, delta, out=None, bint accumulate=False, build="strict"):
    """Each channel's sum of delta * x_norm, added into out when accumulate is
    true (Darknet's +=), written over out otherwise; each row summed as
    ``build`` sums it."""
    cdef int b = _build(build)
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
        if b == _OFAST:
            _bn_dk_ofast_backward_scale(f32, px, pd, n, c, s, po)
        elif b == _OFAST_AVX:
            _bn_dk_ofast_avx_backward_scale(f32, px, pd, n, c, s, po)
        else:
            _bn_dk_backward_scale(f32, px, pd, n, c, s, po)
    return O


def dk_mean_delta(delta, variance, eps, out=None):
    D = _bn_tensor(delta, "delta")
    V = _channels(variance, "variance", D, "delta")
    cdef int64_t n, c, s
    _sizes(D, False, &n, &c, &s)
    O = _output(out, "out", (c,), D.dtype, ((D, "delta"), (V, "variance")))
    cdef void *pd = _ptr(D)
    cdef void *pv = _ptr(V)
    cdef void *po = _ptr(O)
    cdef double e = _check_eps(eps, "eps")
    cdef bint f32 = _is_f32(D)
    with nogil:
        _bn_dk_mean_delta(f32, pd, pv, n, c, s, e, po)
    return O


def dk_variance_delta(x, delta, mean, variance, eps, out=None):
    X = _bn_tensor(x, "x")
    D = _tensor_like(delta, "delta", X, "x")
    M = _channels(mean, "mean", X, "x")
    V = _channels(variance, "variance", X, "x")
    cdef int64_t n, c, s
    _sizes(X, False, &n, &c, &s)
    O = _output(out, "out", (c,), X.dtype,
                ((X, "x"), (D, "delta"), (M, "mean"), (V, "variance")))
    cdef void *px = _ptr(X)
    cdef void *pd = _ptr(D)
    cdef void *pm = _ptr(M)
    cdef void *pv = _ptr(V)
    cdef void *po = _ptr(O)
    cdef double e = _check_eps(eps, "eps")
    cdef bint f32 = _is_f32(X)
    with nogil:
        _bn_dk_variance_delta(f32, px, pd, pm, pv, n, c, s, e, po)
    return O


def dk_normalize_delta(x, mean, variance, mean_delta, variance_delta, delta,
                       eps, bint eps_inside, out=None, build="strict"):
    """dx of normalize_delta_cpu; the -Ofast builds multiply mean_delta by
    fl(1 / n) where the strict one divides by n."""
    cdef bint ofast = _build(build) != _STRICT
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
    cdef double e = _check_eps(eps, "eps")
    cdef bint f32 = _is_f32(X)
    with nogil:
        if ofast and eps_inside:
            _bn_dk_ofast_normalize_delta_eps_inside(f32, px, pm, pv, pmd, pvd, pd, n, c, s,
                                                    e, po)
        elif ofast:
            _bn_dk_ofast_normalize_delta_eps_outside(f32, px, pm, pv, pmd, pvd, pd, n, c, s,
                                                     e, po)
        elif eps_inside:
            _bn_dk_normalize_delta_eps_inside(f32, px, pm, pv, pmd, pvd, pd, n, c, s, e, po)
        else:
            _bn_dk_normalize_delta_eps_outside(f32, px, pm, pv, pmd, pvd, pd, n, c, s, e, po)
    return O


def dk_backward(x, x_norm, delta, mean, variance, scales, eps,
                bint eps_inside, out=None, build="strict"):
    """Darknet's backward_batchnorm_layer in two passes, the same bits as its
    six kernels in ``build``: returns (dx, scale_updates, bias_updates), the
    updates starting from 0. out may be delta itself."""
    cdef int b = _build(build)
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
    cdef double e = _check_eps(eps, "eps")
    cdef bint f32 = _is_f32(X)
    with nogil:
        if b == _OFAST:
            _bn_dk_ofast_backward_sums(f32, px, pxn, pd, pm, pv, ps, n, c, s, e, pbu, psu,
                                       pmd, pvd)
        elif b == _OFAST_AVX:
            _bn_dk_ofast_avx_backward_sums(f32, px, pxn, pd, pm, pv, ps, n, c, s, e, pbu, psu,
                                           pmd, pvd)
        else:
            _bn_dk_backward_sums(f32, px, pxn, pd, pm, pv, ps, n, c, s, e, pbu, psu, pmd, pvd)
        if b != _STRICT and eps_inside:
            _bn_dk_ofast_backward_dx_eps_inside(f32, px, pm, pv, pmd, pvd, pd, ps, n, c, s,
                                                e, po)
        elif b != _STRICT:
            _bn_dk_ofast_backward_dx_eps_outside(f32, px, pm, pv, pmd, pvd, pd, ps, n, c, s,
                                                 e, po)
        elif eps_inside:
            _bn_dk_backward_dx_eps_inside(f32, px, pm, pv, pmd, pvd, pd, ps, n, c, s, e, po)
        else:
            _bn_dk_backward_dx_eps_outside(f32, px, pm, pv, pmd, pvd, pd, ps, n, c, s, e, po)
    return O, SU, BU


# --------------------------------------------------------------------------
# Standard family (per-channel statistics are float64 whatever x's dtype).
# nhwc=True: x is (N, *spatial, C), channels last; the *_nhwc kernels take the
# same arguments as their NCHW twins.
# --------------------------------------------------------------------------

def stats(x, bint nhwc=False):
    """(mean, biased variance) per channel, as float64 arrays."""
    X = _bn_tensor(x, "x", nhwc)
    cdef int64_t n, c, s
    _sizes(X, nhwc, &n, &c, &s)
    M = np.empty(c, np.float64)
    V = np.empty(c, np.float64)
    cdef void *px = _ptr(X)
    cdef double *pm = _f64(M)
    cdef double *pv = _f64(V)
    cdef bint f32 = _is_f32(X)
    with nogil:
        if nhwc:
            _bn_stats_nhwc(f32, px, n, c, s, pm, pv)
        else:
            _bn_stats(f32, px, n, c, s, pm, pv)
    return M, V


def invstd(var, eps):
    """1 / sqrt(var + eps) for a float64 vector."""
    cdef double eps64 = _check_eps(eps, "eps")
    V = _array(var, "var")
    if V.ndim != 1 or V.dtype != _F64:
        raise TypeError(f"var must be a 1-D float64 array, got {_describe(V)}")
    _require_c_contiguous(V, "var")
    cdef int64_t c = V.shape[0]
    O = np.empty(c, np.float64)
    cdef double *pv = _f64(V)
    cdef double *po = _f64(O)
    with nogil:
        bn_invstd(c, pv, eps64, po)
    return O


def merge_moments(counts, means, m2s):
    """(mean, M2) per channel of shards merged in order (Chan et al.).

    counts: (P,) values per channel of each shard; means, m2s: (P, C), all
    float64. Shards with count 0 are skipped; no values at all gives 0, 0."""
    N = _array(counts, "counts")
    M = _array(means, "means")
    Q = _array(m2s, "m2s")
    for a, name in ((N, "counts"), (M, "means"), (Q, "m2s")):
        if a.dtype != _F64:
            raise TypeError(f"{name} must have dtype float64, got {a.dtype}")
        _require_c_contiguous(a, name)
    if N.ndim != 1 or M.ndim != 2 or M.shape[0] != N.shape[0] or Q.shape != M.shape:
        raise ValueError(f"expected counts (P,), means and m2s (P, C); got counts "
                         f"{N.shape}, means {M.shape}, m2s {Q.shape}")
    cdef int64_t parts = M.shape[0], c = M.shape[1]
    OM = np.empty(c, np.float64)
    OQ = np.empty(c, np.float64)
    cdef double *pn = _f64(N)
    cdef double *pm = _f64(M)
    cdef double *pq = _f64(Q)
    cdef double *pom = _f64(OM)
    cdef double *poq = _f64(OQ)
    with nogil:
        bn_merge_moments(parts, c, pn, pm, pq, pom, poq)
    return OM, OQ


def normalize_affine(x, mean, invstd, weight=None, bias=None, out=None,
                     bint relu=False, bint nhwc=False):
    """y = (x - mean) * invstd * weight + bias, then max(y, 0) if relu;
    mean, invstd float64."""
    X = _bn_tensor(x, "x", nhwc)
    M = _channels(mean, "mean", X, "x", _F64, nhwc)
    K = _channels(invstd, "invstd", X, "x", _F64, nhwc)
    W = None if weight is None else _channels(weight, "weight", X, "x", None, nhwc)
    B = None if bias is None else _channels(bias, "bias", X, "x", None, nhwc)
    O = _output(out, "out", X.shape, X.dtype,
                ((X, "x"), (M, "mean"), (K, "invstd"), (W, "weight"), (B, "bias")),
                (X,))
    cdef int64_t n, c, s
    _sizes(X, nhwc, &n, &c, &s)
    cdef void *px = _ptr(X)
    cdef double *pm = _f64(M)
    cdef double *pk = _f64(K)
    cdef void *pw = _ptr_or_null(W)
    cdef void *pb = _ptr_or_null(B)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    with nogil:
        if nhwc:
            _bn_normalize_affine_nhwc(f32, px, pm, pk, pw, pb, n, c, s, relu, po)
        else:
            _bn_normalize_affine(f32, px, pm, pk, pw, pb, n, c, s, relu, po)
    return O


def rolling_update(momentum, int64_t count, mean, var, running_mean,
                   running_var, ddof=1):
    """running = (1 - momentum) * running + momentum * batch statistic, in
    place; var is the biased batch variance, scaled by count / (count - ddof)
    for the running one (ddof 1: unbiased, 0: biased)."""
    cdef double m = _check_momentum(momentum, "momentum")
    cdef int64_t d = _check_ddof(ddof)
    if count < 2:
        raise ValueError(f"count must be >= 2 (the unbiased variance divides by "
                         f"count - 1), got {count}")
    for name, value in (("running_mean", running_mean), ("running_var", running_var)):
        if value is None:
            raise TypeError(f"{name} must be an array (it is updated in place), got None")
    RM = _array(running_mean, "running_mean", True)
    if RM.ndim != 1 or RM.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"running_mean must be a 1-D float32 or float64 array, got {_describe(RM)}")
    cdef int64_t c = RM.shape[0]
    RM = _writable(RM, "running_mean", (c,), RM.dtype)
    RV = _writable(running_var, "running_var", (c,), RM.dtype)
    M = _array(mean, "mean")
    V = _array(var, "var")
    if M.shape != (c,) or M.dtype != _F64 or V.shape != (c,) or V.dtype != _F64:
        raise TypeError(f"mean and var must be float64 arrays of shape ({c},)")
    _require_c_contiguous(M, "mean")
    _require_c_contiguous(V, "var")
    _check_writes(((RM, "running_mean"), (RV, "running_var")), ((M, "mean"), (V, "var")))
    cdef double *pm = _f64(M)
    cdef double *pv = _f64(V)
    cdef void *prm = _ptr(RM)
    cdef void *prv = _ptr(RV)
    cdef bint f32 = _is_f32(RM)
    with nogil:
        _bn_rolling_update(f32, c, m, count, d, pm, pv, prm, prv)


def backward_reduce(dy, x, mean, invstd, weight=None, bias=None, bint relu=False,
                    bint nhwc=False):
    """(sum g, sum g * xhat) per channel, float64: dL/dbias and dL/dweight.
    g is dy, or with relu dy where the forward's y (recomputed from x, weight
    and bias) was positive."""
    X = _bn_tensor(x, "x", nhwc)
    G = _tensor_like(dy, "dy", X, "x")
    M = _channels(mean, "mean", X, "x", _F64, nhwc)
    K = _channels(invstd, "invstd", X, "x", _F64, nhwc)
    W = None if weight is None else _channels(weight, "weight", X, "x", None, nhwc)
    B = None if bias is None else _channels(bias, "bias", X, "x", None, nhwc)
    return _backward_reduce(G, X, M, K, W, B, relu, nhwc)


cdef tuple _backward_reduce(G, X, M, K, W, B, bint relu, bint nhwc):
    cdef int64_t n, c, s
    _sizes(X, nhwc, &n, &c, &s)
    cdef cnp.npy_intp channels = c
    SG = cnp.PyArray_EMPTY(1, &channels, cnp.NPY_FLOAT64, 0)
    SGX = cnp.PyArray_EMPTY(1, &channels, cnp.NPY_FLOAT64, 0)
    cdef void *pg = _ptr(G)
    cdef void *px = _ptr(X)
    cdef double *pm = _f64(M)
    cdef double *pk = _f64(K)
    cdef void *pw = _ptr_or_null(W)
    cdef void *pb = _ptr_or_null(B)
    cdef double *psg = _f64(SG)
    cdef double *psgx = _f64(SGX)
    cdef bint f32 = _is_f32(X)
    with nogil:
        if nhwc:
            _bn_backward_reduce_nhwc(f32, pg, px, pm, pk, pw, pb, relu, n, c, s, psg, psgx)
        else:
            _bn_backward_reduce(f32, pg, px, pm, pk, pw, pb, relu, n, c, s, psg, psgx)
    return SG, SGX


def backward_dx(dy, x, mean, invstd, weight, sum_dy, sum_dy_xhat, out=None,
                bias=None, bint relu=False, bint nhwc=False):
    """dx of training-mode batch norm from the sums of backward_reduce; with
    sum_dy and sum_dy_xhat None, of eval mode (dx = weight * invstd * g)."""
    X = _bn_tensor(x, "x", nhwc)
    G = _tensor_like(dy, "dy", X, "x")
    M = _channels(mean, "mean", X, "x", _F64, nhwc)
    K = _channels(invstd, "invstd", X, "x", _F64, nhwc)
    W = None if weight is None else _channels(weight, "weight", X, "x", None, nhwc)
    B = None if bias is None else _channels(bias, "bias", X, "x", None, nhwc)
    if (sum_dy is None) != (sum_dy_xhat is None):
        raise ValueError("sum_dy and sum_dy_xhat must be given together (training "
                         "mode) or both be None (eval mode)")
    SG = None if sum_dy is None else _channels(sum_dy, "sum_dy", X, "x", _F64, nhwc)
    SGX = (None if sum_dy_xhat is None
           else _channels(sum_dy_xhat, "sum_dy_xhat", X, "x", _F64, nhwc))
    O = _output(out, "out", X.shape, X.dtype,
                ((X, "x"), (G, "dy"), (M, "mean"), (K, "invstd"), (SG, "sum_dy"),
                 (SGX, "sum_dy_xhat"), (W, "weight"), (B, "bias")), (G,))
    _backward_dx(G, X, M, K, W, B, relu, SG, SGX, O, nhwc)
    return O


cdef _backward_dx(G, X, M, K, W, B, bint relu, SG, SGX, O, bint nhwc):
    cdef int64_t n, c, s
    _sizes(X, nhwc, &n, &c, &s)
    cdef void *pg = _ptr(G)
    cdef void *px = _ptr(X)
    cdef double *pm = _f64(M)
    cdef double *pk = _f64(K)
    cdef void *pw = _ptr_or_null(W)
    cdef void *pb = _ptr_or_null(B)
    cdef double *psg = _f64(SG)
    cdef double *psgx = _f64(SGX)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    with nogil:
        if nhwc:
            _bn_backward_dx_nhwc(f32, pg, px, pm, pk, pw, pb, relu, psg, psgx, n, c, s, po)
        else:
            _bn_backward_dx(f32, pg, px, pm, pk, pw, pb, relu, psg, psgx, n, c, s, po)


# --------------------------------------------------------------------------
# a whole standard-numerics forward or backward in one call (the layer's
# fast path: one crossing from Python, the checks done once)
# --------------------------------------------------------------------------

def check_forward(x, weight, bias, running_mean, running_var, bint training, out,
                  bint nhwc=False, workspace=None):
    """Validate every argument of a batch-norm forward up front, so that a bad
    argument changes no state. Returns the checked arrays (x, weight, bias,
    running_mean, running_var, out). workspace: an array of x's shape the
    caller writes too (Darknet's x_norm), checked like out."""
    return _check_forward(x, weight, bias, running_mean, running_var, training, out, nhwc,
                          workspace)


cdef tuple _check_forward(x, weight, bias, running_mean, running_var, bint training, out,
                          bint nhwc, workspace):
    """check_forward, called from C."""
    X = _bn_tensor(x, "x", nhwc)
    W = None if weight is None else _channels(weight, "weight", X, "x", None, nhwc)
    B = None if bias is None else _channels(bias, "bias", X, "x", None, nhwc)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together "
                         "(both arrays, or both None)")
    RM = RV = None
    if running_mean is None:
        if not training:
            raise ValueError("training=False normalizes with running_mean and "
                             "running_var, but both are None")
    else:
        RM = _channels(_array(running_mean, "running_mean", training), "running_mean", X, "x",
                       None, nhwc)
        RV = _channels(_array(running_var, "running_var", training), "running_var", X, "x",
                       None, nhwc)
        if training:
            for name, value in (("running_mean", RM), ("running_var", RV)):
                if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>value):
                    raise ValueError(f"{name} is read-only; it is updated in place, "
                                     f"pass a writeable array")
    O = None if out is None else _writable_like(out, "out", X)
    WS = None if workspace is None else _writable_like(workspace, "workspace", X)
    if training:
        _check_writes(((WS, "workspace"), (O, "out"), (RM, "running_mean"),
                       (RV, "running_var")),
                      ((X, "x"), (W, "weight"), (B, "bias")), O, X, "x")
    else:
        _check_writes(((WS, "workspace"), (O, "out")),
                      ((X, "x"), (W, "weight"), (B, "bias"), (RM, "running_mean"),
                       (RV, "running_var")), O, X, "x")
    return X, W, B, RM, RV, O


cdef object _writable_like(obj, str name, X):
    """An array of X's shape and dtype the call writes."""
    a = _tensor_like(_array(obj, name, True), name, X, "x")
    if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a):
        raise ValueError(f"{name} is read-only; pass a writeable array")
    return a


def standard_forward(x, weight, bias, running_mean, running_var, bint training,
                     momentum, eps, bint relu, out, bint nhwc=False, ddof=1,
                     workspace=None):
    """Standard-numerics forward: checks, statistics, normalize (+ ReLU) and
    the running-statistics update. workspace, which standard numerics do not
    need, is checked as check_forward checks it and left as it was.

    Returns (y, x, weight, mean, invstd, use_batch_stats, y_is_x): x and
    weight as checked (plain ndarrays), float64 mean and invstd of the
    statistics used (the batch's, or the running ones in eval mode), and
    whether y was written over x (out=x).
    Raises ValueError for training with one value per channel, as PyTorch.
    """
    cdef double m = _check_momentum(momentum, "momentum")
    cdef double e = _check_eps(eps, "eps")
    cdef int64_t d = _check_ddof(ddof)
    X, W, B, RM, RV, O = _check_forward(x, weight, bias, running_mean, running_var,
                                        training, out, nhwc, workspace)
    cdef int64_t n, c, s
    _sizes(X, nhwc, &n, &c, &s)
    cdef int64_t count = n * s
    cdef bint batch_stats = training or RM is None
    if batch_stats and count == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, "
                         f"got input of shape {X.shape}")
    if batch_stats and e == 0.:
        check_batch_eps(e, batch_stats)  # raises
    cdef bint y_is_x = O is not None and _same_memory(O, X)
    if O is None:
        O = _empty(cnp.PyArray_NDIM(<cnp.ndarray>X), cnp.PyArray_DIMS(<cnp.ndarray>X),
                   cnp.PyArray_TYPE(<cnp.ndarray>X), cnp.PyArray_ITEMSIZE(<cnp.ndarray>X), X)
    cdef cnp.npy_intp channels = c
    M = cnp.PyArray_EMPTY(1, &channels, cnp.NPY_FLOAT64, 0)
    V = cnp.PyArray_EMPTY(1, &channels, cnp.NPY_FLOAT64, 0)
    K = cnp.PyArray_EMPTY(1, &channels, cnp.NPY_FLOAT64, 0)
    cdef void *px = _ptr(X)
    cdef double *pm = _f64(M)
    cdef double *pv = _f64(V)
    cdef double *pk = _f64(K)
    cdef void *prm = _ptr_or_null(RM)
    cdef void *prv = _ptr_or_null(RV)
    cdef void *pw = _ptr_or_null(W)
    cdef void *pb = _ptr_or_null(B)
    cdef void *po = _ptr(O)
    cdef bint f32 = _is_f32(X)
    cdef bint update = training and RM is not None and count > 0
    cdef int64_t j
    with nogil:
        if batch_stats and count == 0:  # an empty batch: nothing to normalize or sum
            for j in range(c):
                pm[j] = 0.
                pv[j] = 1.
        elif batch_stats and nhwc:
            _bn_stats_nhwc(f32, px, n, c, s, pm, pv)
        elif batch_stats:
            _bn_stats(f32, px, n, c, s, pm, pv)
        elif f32:  # the running statistics, widened to the kernels' float64
            _widen(<float*>prm, c, pm)
            _widen(<float*>prv, c, pv)
        else:
            _widen(<double*>prm, c, pm)
            _widen(<double*>prv, c, pv)
        bn_invstd(c, pv, e, pk)
        if nhwc:
            _bn_normalize_affine_nhwc(f32, px, pm, pk, pw, pb, n, c, s, relu, po)
        else:
            _bn_normalize_affine(f32, px, pm, pk, pw, pb, n, c, s, relu, po)
        if update:
            _bn_rolling_update(f32, c, m, count, d, pm, pv, prm, prv)
    return O, X, W, M, K, batch_stats, y_is_x


def standard_backward(dy, x, mean, invstd, weight, bias, bint batch_stats,
                      bint relu, out, bint nhwc=False):
    """Standard-numerics backward: (dx, sum_dy, sum_dy_xhat), the sums being
    dL/dbias and dL/dweight (float64). batch_stats: the forward normalized
    with the batch's statistics (training mode) rather than constants."""
    X = _bn_tensor(x, "x", nhwc)
    G = _tensor_like(dy, "dy", X, "x")
    M = _channels(mean, "mean", X, "x", _F64, nhwc)
    K = _channels(invstd, "invstd", X, "x", _F64, nhwc)
    W = None if weight is None else _channels(weight, "weight", X, "x", None, nhwc)
    B = None if bias is None else _channels(bias, "bias", X, "x", None, nhwc)
    O = _output(out, "out", X.shape, X.dtype,
                ((X, "x"), (G, "dy"), (M, "mean"), (K, "invstd"), (W, "weight"),
                 (B, "bias")), (G,))
    SG, SGX = _backward_reduce(G, X, M, K, W, B, relu, nhwc)
    if batch_stats:
        _backward_dx(G, X, M, K, W, B, relu, SG, SGX, O, nhwc)
    else:
        _backward_dx(G, X, M, K, W, B, relu, None, None, O, nhwc)
    return O, SG, SGX


# --------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------

def _whole_number(value, name, expected):
    """value as a Python int, or a TypeError naming the argument (bool, float,
    str and the like are not counts, even 2.0)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    return int(value)


def set_num_threads(threads):
    """Use `threads` threads in large kernel calls.

    Parameters
    ----------
    threads : int or None
        1 to 1024. 0 or None: OpenMP's default (OMP_NUM_THREADS, or what
        threadpoolctl sets, else one per core), also at most 1024. The cap
        catches a mistyped count, which the OpenMP runtime would try to start
        and end the process when it cannot ("libgomp: Thread creation
        failed"); more threads than cores only slow the kernels down. Without
        OpenMP every call runs on one thread whatever is set.

    Raises
    ------
    TypeError
        threads is not an int or None (a bool, a float, a string...).
    ValueError
        threads is negative or above 1024.

    Notes
    -----
    A child process made by fork (``os.fork``, a multiprocessing 'fork'
    pool, a torch DataLoader's workers on Linux) starts at one thread,
    whatever the parent set: an OpenMP runtime's threads do not survive
    fork, and GNU libgomp's next parallel region would wait for them
    forever. Results are the same bits on one thread. Calling
    set_num_threads in the child is the caller's responsibility: with
    libgomp, if the parent had run a call on 2 or more threads, the child's
    next call on 2 or more threads never returns (LLVM's libomp starts its
    threads anew in a child). A process started with 'spawn' is new and
    starts at the default.
    """
    expected = f"an int from 0 to {h.BN_MAX_THREADS} or None"
    count = 0 if threads is None else _whole_number(threads, "threads", expected)
    if not 0 <= count <= h.BN_MAX_THREADS:
        raise ValueError(f"threads must be {expected} (0 or None: OpenMP's default), "
                         f"got {count}")
    bn_set_num_threads(count)


def get_num_threads():
    """The number of threads a large kernel call uses: 1 without OpenMP, and
    in a child process made by fork until it calls set_num_threads (see
    there)."""
    return bn_get_num_threads()


def openmp_enabled():
    """Whether this build of bnkernels has OpenMP (multi-threaded kernels)."""
    return bool(bn_openmp_enabled())


def _threads_for(items, work_per_item):
    """The number of threads a kernel call over `items` units (channels or
    (b, c) rows) of `work_per_item` values each would use now (see
    bn_threads_for_work in bnkernels.h): small calls and calls soon after a
    team was kept waiting on a busy machine run on one thread."""
    n = _whole_number(items, "items", "an int >= 0")
    w = _whole_number(work_per_item, "work_per_item", "an int >= 0")
    if not (0 <= n < 2**31 and 0 <= w < 2**31):
        raise ValueError(f"items and work_per_item must be ints from 0 to 2**31 - 1, "
                         f"got {n} and {w}")
    return bn_threads_for_work(n, w)


def _set_thread_backoff(on):
    """Turn on (default) or off the back-off to one thread after a team was
    kept waiting by the OS; turning it either way forgets the current one."""
    bn_set_thread_backoff(1 if on else 0)


cdef extern from "parallel.h" nogil:
    void bn_team_done(int64_t work, int64_t start_ns, int64_t late_ns,
                      int64_t first_end_ns, int64_t last_end_ns)
    int64_t bn_now_ns()


def _now_ns():
    """The clock the kernels' teams are timed by (ns; 0 without OpenMP)."""
    return bn_now_ns()


def _record_team(int64_t work, int64_t start_ns, int64_t late_ns,
                 int64_t first_end_ns, int64_t last_end_ns):
    """Feed the back-off one team's times as a kernel call would
    (csrc/threads.c): a test seam, so that the policy can be checked
    without an OS that keeps threads waiting."""
    bn_team_done(work, start_ns, late_ns, first_end_ns, last_end_ns)


# --------------------------------------------------------------------------
# streaming stores
# --------------------------------------------------------------------------

def set_streaming_threshold(nbytes):
    """Write outputs of at least `nbytes` bytes with streaming (non-temporal)
    stores; None: never. The default, 16 MiB (16 << 20), streams what would
    not stay in a 32 MB cache beside its input anyway.

    Streaming stores write whole cache lines without first reading them and
    without keeping them in cache: an output larger than the cache is
    written in less time, but a small one would leave the cache just before
    the next kernel reads it. They apply to the standard forward's y
    (training and inference) and the training backward's dx without ReLU,
    NCHW with rows (H * W) of at least 16 values, and to NHWC y (unless y
    starts 1-255 bytes past x modulo 4 KB, where loads of x would wait on
    the stores), on CPUs with AVX-512 (``streaming_available``). Whether
    they pay depends on the CPU (the README's "Streaming stores" has the
    measurements and the command that repeats them). Results are the same
    bits either way.

    Raises TypeError when nbytes is not an int or None (a bool, a float...),
    ValueError when it is negative or above 2**63 - 1 (the C setting is an
    int64_t; no array is larger); the setting is then left as it was."""
    if nbytes is None:
        bn_set_stream_min_bytes(-1)
        return
    expected = "a non-negative int or None"
    count = _whole_number(nbytes, "nbytes", expected)
    if count < 0:
        raise ValueError(f"nbytes must be {expected}, got {count}")
    if count > (1 << 63) - 1:
        raise ValueError(f"nbytes must be at most 2**63 - 1 (int64), got {count}")
    bn_set_stream_min_bytes(<int64_t>count)


def get_streaming_threshold():
    """The output size in bytes from which streaming stores are used, or
    None when they are off (see set_streaming_threshold)."""
    cdef int64_t nbytes = bn_get_stream_min_bytes()
    return None if nbytes < 0 else int(nbytes)


def streaming_available():
    """Whether this CPU has the streaming stores the kernels use (x86-64 with
    AVX-512F); elsewhere every output is written through the cache."""
    return bool(bn_stream_available())


# --------------------------------------------------------------------------
# the checks, for the Python layer to validate arguments before it changes
# any state
# --------------------------------------------------------------------------

def check_tensor(x, name, bint nhwc=False):
    """x as an (N, C, *spatial) (nhwc: (N, *spatial, C)) float32/float64 C-contiguous
    array, or raise."""
    return _bn_tensor(x, name, nhwc)


def same_memory(a, b):
    """Whether two checked arrays are the very same memory (same start, shape
    and dtype): the one aliasing an elementwise output may have."""
    return _same_memory(a, b)


def check_darknet_backward(dy, out, x, x_norm, mean, variance, weight, bias):
    """The arguments of a Darknet-numerics backward, all checked before it
    writes anything (its fused ReLU writes out first): dy (checked by the
    caller) and out of x's shape and dtype, out writeable and sharing no
    memory with dy (unless it is dy itself) or with what the backward reads
    from its forward (the aliasing rule). Returns (out, x, x_norm, mean,
    variance, weight, bias) checked."""
    X = _bn_tensor(x, "x")
    XN = _tensor_like(x_norm, "x_norm", X, "x")
    M = _channels(mean, "mean", X, "x")
    V = _channels(variance, "variance", X, "x")
    W = None if weight is None else _channels(weight, "weight", X, "x")
    B = None if bias is None else _channels(bias, "bias", X, "x")
    O = None
    if out is not None:
        G = _tensor_like(dy, "dy", X, "x")
        O = _writable_like(out, "out", X)
        _check_writes(((O, "out"),), ((G, "dy"), (X, "x"), (XN, "x_norm"), (M, "mean"),
                                      (V, "variance"), (W, "weight"), (B, "bias")),
                      O, G, "dy")
    return O, X, XN, M, V, W, B


def check_writes(written, read, in_place=None):
    """The aliasing rule (see _check_writes) for checked arrays: written and
    read are sequences of (ndarray or None, name); in_place an (output,
    input) pair of them the output may be itself. Raises ValueError naming
    both arrays of the first overlap."""
    written, read = tuple(written), tuple(read)
    for pair in written + read:
        if pair[0] is not None and not isinstance(pair[0], np.ndarray):
            raise TypeError(f"{pair[1]} must be a NumPy array or None, got "
                            f"{type(pair[0]).__name__}")
    out, partner = (None, None) if in_place is None else in_place
    name = next((n for a, n in read if a is partner), None) if partner is not None else None
    _check_writes(written, read, out, partner, name)


cdef object _saved(a, str name):
    """An array a forward saved, as a plain ndarray (or None)."""
    if a is None or type(a) is np.ndarray:
        return a
    if isinstance(a, np.ndarray):
        return np.asarray(a)
    raise TypeError(f"saved.{name} must be a NumPy array or None, got {type(a).__name__}")


def check_gradients(grad_weight, grad_bias, dy, x, x_norm, mean, invstd, variance,
                    weight, bias, bint nhwc=False):
    """Check the gradients a layer's backward adds into, before it runs: (C,)
    vectors of x's dtype, writeable, sharing no memory with each other, with
    dy or with what the backward reads from its forward (x, x_norm, mean,
    invstd, variance, weight, bias: the aliasing rule)."""
    GW = _channels(_array(grad_weight, "grad_weight", True), "grad_weight", x, "x", None, nhwc)
    GB = _channels(_array(grad_bias, "grad_bias", True), "grad_bias", x, "x", None, nhwc)
    if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>GW):
        raise ValueError("grad_weight is read-only; it is updated in place, pass a "
                         "writeable array")
    if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>GB):
        raise ValueError("grad_bias is read-only; it is updated in place, pass a "
                         "writeable array")
    _check_writes(((GW, "grad_weight"), (GB, "grad_bias")),
                  ((_tensor_like(dy, "dy", x, "x"), "dy"), (_saved(x, "x"), "x"),
                   (_saved(x_norm, "x_norm"), "x_norm"), (_saved(mean, "mean"), "mean"),
                   (_saved(invstd, "invstd"), "invstd"),
                   (_saved(variance, "variance"), "variance"),
                   (_saved(weight, "weight"), "weight"), (_saved(bias, "bias"), "bias")))


def reusable_result(list recent, like, tuple inputs):
    """The index in `recent` (a layer's own recent results) of an array that
    a call may write again as its result, or -1: the list holds the only
    reference to it (no variable, view, memoryview or other buffer export,
    DLPack capsule, torch.from_numpy tensor, ...), it has no weak reference,
    owns its memory (or is the only user of a cached block: views of an
    array share its block), is writeable, has like's shape and dtype (C-contiguous,
    aligned), and shares no memory with like or with any of inputs. like and
    inputs must be ndarrays (anything else: -1)."""
    cdef Py_ssize_t i
    cdef PyObject *item
    if type(like) is not np.ndarray:
        return -1
    for other in inputs:
        if type(other) is not np.ndarray:
            return -1
    for i in range(PyList_GET_SIZE(recent)):
        item = PyList_GET_ITEM(recent, i)
        if Py_REFCNT(item) != 1:  # the list's own reference only
            continue
        a = <object>item
        if (type(a) is not np.ndarray
                or (cnp.PyArray_BASE(<cnp.ndarray>a) != NULL
                    and not _cached_alone(<cnp.ndarray>a))
                or not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a)
                or not _same_layout(<cnp.ndarray>a, <cnp.ndarray>like)
                or _getweakrefcount(a) or _overlaps(a, like)):
            continue
        for other in inputs:
            if _overlaps(a, other):
                break
        else:
            return i
    return -1


def check_tensor_like(v, name, x, x_name):
    """v as a C-contiguous array of x's shape and dtype, or raise."""
    return _tensor_like(v, name, x, x_name)


def check_channels(v, name, x, x_name, bint writeable=False, bint nhwc=False):
    """v as a (C,) vector of x's dtype, C-contiguous (and writeable), or raise.
    A writeable vector must be a view of v's memory, never a copy."""
    a = _channels(_array(v, name, writeable), name, x, x_name, None, nhwc)
    if writeable and not a.flags.writeable:
        raise ValueError(f"{name} is read-only; it is updated in place, pass a writeable array")
    return a


# --------------------------------------------------------------------------
# convolution helpers and pooling
# --------------------------------------------------------------------------

include "_conv_pool.pxi"
include "_products.pxi"


# the C kernels, exported to other Cython extensions (see _kernels.pxd)
include "_capi.pxi"
