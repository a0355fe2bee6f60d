"""Self-check of an installation: Darknet vectors bit for bit, gradients by
finite differences. ``python -m bnkernels verify`` runs it.

The vectors are checked for both Darknet builds (bnkernels.darknet's
``build=``): "strict" against their primary keys, "ofast" against their
``ofast_*`` keys where -Ofast changes an output and against the primary keys
where it does not. Each row of the table says which build it checks.
"""
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
import hashlib
import os
import warnings
from pathlib import Path
import zipfile

import numpy as np
import numpy.typing as npt

from bnkernels import darknet
from bnkernels._deprecation import renamed_keyword
from bnkernels.batchnorm import BatchNorm2d, batch_norm_backward, batch_norm_forward

VECTOR_DIR = Path(__file__).parent.parent / "data" / "darknet_vectors"
FORKS = {"pjreddie": "pjreddie", "AlexeyAB": "alexeyab"}  # directory -> flavor
_ELEMENTWISE = ("x_norm", "out_train", "out_infer", "dx")
_LABELS = {  # output key -> what computed it
    "mean": "mean_cpu", "variance": "variance_cpu", "x_norm": "normalize_cpu",
    "out_train": "scale_bias + add_bias (train)",
    "rolling_mean_out": "rolling_update (mean)",
    "rolling_variance_out": "rolling_update (variance)",
    "out_infer": "normalize/scale/add (inference)",
    "backward_bias": "backward_bias", "backward_scale": "backward_scale_cpu",
    "mean_delta": "mean_delta_cpu", "variance_delta": "variance_delta_cpu",
    "dx": "normalize_delta_cpu (dx)",
    "layer:out_infer": "BatchNorm2d forward (inference)",
    "layer:out_train": "BatchNorm2d forward (train)",
    "layer:rolling_mean_out": "BatchNorm2d running_mean",
    "layer:rolling_variance_out": "BatchNorm2d running_var",
    "layer:dx": "BatchNorm2d backward dx",
    "layer:scale_updates": "BatchNorm2d grad_weight",
    "layer:backward_bias": "BatchNorm2d grad_bias",
}


# ---------------------------------------------------------------------------
# comparing float arrays
# ---------------------------------------------------------------------------

def _ordered(a):
    """float32 bits as integers that count ulps across zero."""
    bits = np.asarray(a, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def bitwise_equal(a: npt.ArrayLike, b: npt.ArrayLike) -> bool:
    """Same shape, NaN in the same places, and every other float32 bit equal."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        return False
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    return bool((nan_a == nan_b).all()
                and (a[~nan_a].view(np.uint32) == b[~nan_b].view(np.uint32)).all())


def max_errors(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[float, float]:
    """(max abs error, max ulp error) over the positions where neither is NaN;
    (inf, inf) if the shapes or NaN positions differ."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape or (np.isnan(a) != np.isnan(b)).any():
        return float("inf"), float("inf")
    keep = ~np.isnan(a)
    if not keep.any():
        return 0.0, 0
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a[keep].astype(np.float64) - b[keep].astype(np.float64))
    abs_err = float(np.nan_to_num(diff, nan=0.0).max())  # inf - inf: same bits
    ulp_err = int(np.abs(_ordered(a[keep]) - _ordered(b[keep])).max())
    return abs_err, ulp_err


def sha256_of(array: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    return np.frombuffer(
        hashlib.sha256(np.ascontiguousarray(array, "<f4").tobytes()).digest(), np.uint8)


# ---------------------------------------------------------------------------
# the vectors
# ---------------------------------------------------------------------------

class VectorFileError(ValueError):
    """A vector directory or file that verify cannot use, with where and why."""


# what each vector file holds: per-channel arrays (C,), and whole tensors
# (N, C, H, W) of which the elementwise outputs keep the samples out_batch_index
_CHANNEL_KEYS = ("scales", "biases", "rolling_mean_in", "rolling_variance_in", "mean",
                 "variance", "rolling_mean_out", "rolling_variance_out", "backward_bias",
                 "backward_scale", "mean_delta", "variance_delta", "scale_updates")
# -Ofast: the output keys it changes -> the key holding what it gives
_OFAST_KEYS = {"backward_bias": "ofast_backward_bias",
               "backward_scale": "ofast_scale_updates",
               "scale_updates": "ofast_scale_updates"}
_LAYOUT = "a directory holding pjreddie/<case>.npz and/or AlexeyAB/<case>.npz"


def _vector_files_in(root):
    return [(flavor, p) for fork, flavor in FORKS.items()
            for p in sorted((root / fork).glob("*.npz"))]


def check_vector_dir(path: str | os.PathLike[str]) -> Path:
    """path as a Path, if it is a directory with vector files in it (laid
    out like data/darknet_vectors: <fork>/<case>.npz); VectorFileError if not."""
    root = Path(path)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise VectorFileError(f"{str(path)!r} {what}; expected {_LAYOUT}")
    if not _vector_files_in(root):
        raise VectorFileError(f"{str(path)!r} has no vector files; expected {_LAYOUT}")
    return root


def vector_files(*extra_dirs: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """Every (flavor, path) of the shipped vectors, plus those in extra_dirs
    (directories laid out like data/darknet_vectors: <fork>/<case>.npz;
    VectorFileError for one that is not, or holds none)."""
    roots = [VECTOR_DIR] + [check_vector_dir(d) for d in extra_dirs]
    return [found for root in roots for found in _vector_files_in(root)]


def load_vector(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """{key: array} of one vector file, checked to hold every array
    compare_case reads, float32 and of consistent shapes; VectorFileError
    (naming the file and the array) if not."""
    if not zipfile.is_zipfile(path):
        raise VectorFileError(f"{path}: not an .npz file (a zip archive of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {key: z[key] for key in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise VectorFileError(f"{path}: not a readable .npz file ({error})") from None

    def need(key, shape, dtype=np.float32):
        value = data.get(key)
        if not isinstance(value, np.ndarray):
            raise VectorFileError(f"{path}: has no array {key!r}")
        if value.dtype != dtype or value.shape != shape:
            raise VectorFileError(f"{path}: {key} is {value.dtype} {value.shape}, expected "
                                  f"{np.dtype(dtype)} {shape}")

    x = data.get("x")
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        given = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else "missing"
        raise VectorFileError(f"{path}: x is {given}, expected a float32 (N, C, H, W) array")
    need("x", x.shape)
    need("delta", x.shape)
    for key in _CHANNEL_KEYS:
        need(key, (x.shape[1],))
    index = data.get("out_batch_index")
    if not isinstance(index, np.ndarray) or index.ndim != 1 or index.dtype.kind not in "iu" \
            or not ((0 <= index) & (index < x.shape[0])).all():
        raise VectorFileError(f"{path}: out_batch_index must be a 1-D integer array of "
                              f"sample indices in [0, {x.shape[0]})")
    for key in _ELEMENTWISE:
        need(key, (len(index),) + x.shape[1:])
        if f"sha256_{key}" in data:
            need(f"sha256_{key}", (32,), np.uint8)
    if has_ofast(data):  # all of the -Ofast keys, or none
        for key in ("ofast_backward_bias", "ofast_scale_updates"):
            need(key, (x.shape[1],))
        need("sha256_ofast_dx", (32,), np.uint8)
        idx, val = data.get("ofast_dx_idx"), data.get("ofast_dx_val")
        if not (isinstance(idx, np.ndarray) and idx.ndim == 1 and idx.dtype.kind in "iu"
                and ((0 <= idx) & (idx < x.size)).all()):
            raise VectorFileError(f"{path}: ofast_dx_idx must be a 1-D integer array of "
                                  f"indices in [0, {x.size})")
        need("ofast_dx_val", idx.shape)
    return data


def has_ofast(z: Mapping[str, np.ndarray]) -> bool:
    """Whether a vector file holds what Darknet's -Ofast build gives."""
    return any(key.startswith("ofast_") for key in z)


def _expected(z: Mapping[str, np.ndarray], key: str, build: str
              ) -> tuple[np.ndarray, str | None]:
    """(what the vectors say key is for build, its SHA-256 key or None); the
    elementwise ones on the stored batch items (the first ones)."""
    if build == "ofast" and key == "dx":
        dx = z["dx"].ravel().copy()
        idx = z["ofast_dx_idx"]
        stored = idx < dx.size
        dx[idx[stored]] = z["ofast_dx_val"][stored]
        return dx.reshape(z["dx"].shape), "sha256_ofast_dx"
    if build == "ofast" and key in _OFAST_KEYS:
        return z[_OFAST_KEYS[key]], None
    return z[key], (f"sha256_{key}" if f"sha256_{key}" in z else None)


def darknet_outputs(z: Mapping[str, np.ndarray], flavor: str, build: str = "strict"
                    ) -> dict[str, np.ndarray]:
    """Everything the vectors store, computed by bnkernels from their inputs,
    as the given Darknet build ("strict" or "ofast") computes it.

    Returns {vector key: array}. Kernel-level keys come from calling the
    bnkernels.darknet kernels one by one as Darknet's layer does; layer-level
    keys (prefixed "layer:") come from BatchNorm2d.
    """
    x, delta = z["x"], z["delta"]
    scales, biases = z["scales"], z["biases"]
    out = {}
    mean = out["mean"] = darknet.mean_cpu(x)
    variance = out["variance"] = darknet.variance_cpu(x, mean)
    numerics = darknet._NUMERICS_OF[flavor]
    x_norm = out["x_norm"] = darknet.normalize_cpu(x, mean, variance, numerics=numerics)
    out["out_train"] = darknet.add_bias(darknet.scale_bias(x_norm, scales), biases)
    out["rolling_mean_out"] = darknet.rolling_update(
        z["rolling_mean_in"].copy(), mean, numerics=numerics)
    out["rolling_variance_out"] = darknet.rolling_update(
        z["rolling_variance_in"].copy(), variance, numerics=numerics)
    infer_norm = darknet.normalize_cpu(x, z["rolling_mean_in"], z["rolling_variance_in"],
                                       numerics=numerics)
    out["out_infer"] = darknet.add_bias(darknet.scale_bias(infer_norm, scales), biases)
    out["backward_bias"] = darknet.backward_bias(delta, build=build)
    out["backward_scale"] = darknet.backward_scale_cpu(x_norm, delta, build=build)
    scaled = darknet.scale_bias(delta, scales)
    mean_delta = out["mean_delta"] = darknet.mean_delta_cpu(scaled, variance)
    variance_delta = out["variance_delta"] = darknet.variance_delta_cpu(
        x, scaled, mean, variance)
    out["dx"] = darknet.normalize_delta_cpu(x, mean, variance, mean_delta,
                                            variance_delta, scaled, numerics=numerics,
                                            build=build)

    # the layer of the same fork and build ("strict" or "ofast": the builds
    # the vectors hold)
    layer_numerics = numerics if darknet.check_build(build) == "strict" else f"{numerics}-{build}"
    layer = BatchNorm2d(x.shape[1], numerics=layer_numerics)
    layer.weight[...], layer.bias[...] = scales, biases
    layer.running_mean[...] = z["rolling_mean_in"]
    layer.running_var[...] = z["rolling_variance_in"]
    out["layer:out_infer"] = layer.forward(x, training=False)
    with warnings.catch_warnings():  # n = 1: Darknet's NaN is what we check
        warnings.simplefilter("ignore", RuntimeWarning)
        out["layer:out_train"] = layer.forward(x, training=True)
    out["layer:rolling_mean_out"] = layer.running_mean.copy()
    out["layer:rolling_variance_out"] = layer.running_var.copy()
    out["layer:dx"] = layer.backward(delta)
    out["layer:scale_updates"] = layer.grad_weight.copy()
    out["layer:backward_bias"] = layer.grad_bias.copy()
    return out


def compare_case(z: Mapping[str, np.ndarray], flavor: str, build: str = "strict"
                 ) -> list[tuple[str, bool, float, float]]:
    """[(key, ok, max abs error, max ulp error)] for one vector file and one
    Darknet build."""
    rows = []
    index = z["out_batch_index"]
    for key, mine in darknet_outputs(z, flavor, build).items():
        vector_key = key.removeprefix("layer:")
        expected, sha_key = _expected(z, vector_key, build)
        ok = True
        if vector_key in _ELEMENTWISE:
            if sha_key is not None:
                ok = bool((sha256_of(mine) == z[sha_key]).all())
            mine = mine[index]
        abs_err, ulp_err = max_errors(mine, expected)
        rows.append((key, ok and bitwise_equal(mine, expected), abs_err, ulp_err))
    return rows


@dataclass
class Row:
    check: str
    flavor: str
    build: str = "-"    # the Darknet build a vector row checks
    cases: int = 0
    max_abs: float = 0.0
    max_ulp: float = 0
    ok: bool = True

    def add(self, ok: bool, abs_err: float, ulp_err: float) -> None:
        self.cases += 1
        self.max_abs = max(self.max_abs, abs_err)
        self.max_ulp = max(self.max_ulp, ulp_err)
        self.ok = self.ok and ok


def darknet_rows(*extra_dirs: str | os.PathLike[str]) -> list[Row]:
    """One Row per (output, flavor, build) over every vector file (the "ofast"
    rows over the files that hold -Ofast keys)."""
    rows: dict[tuple[str, str, str], Row] = {}
    files = vector_files(*extra_dirs)
    if not files:
        raise FileNotFoundError(f"no Darknet vectors under {VECTOR_DIR}")
    cases = [(flavor, load_vector(path)) for flavor, path in files]   # all checked first
    for build in ("strict", "ofast"):   # the builds the vectors hold
        for flavor, case in cases:
            if build == "ofast" and not has_ofast(case):
                continue
            for key, ok, abs_err, ulp_err in compare_case(case, flavor, build):
                row = rows.setdefault((key, flavor, build), Row(_LABELS[key], flavor, build))
                row.add(ok, abs_err, ulp_err)
    return list(rows.values())


# ---------------------------------------------------------------------------
# standard numerics: gradients against central finite differences
# ---------------------------------------------------------------------------

def finite_difference_errors(shape: tuple[int, int, int, int], training: bool, *,
                             rng: int | np.random.Generator | None = 0, h: float = 1e-6,
                             activation: str | None = None, seed: int | None = None
                             ) -> list[float]:
    """Max relative error of (dx, dweight, dbias) of standard numerics against
    central differences of L = sum(y * g), in float64."""
    rng = np.random.default_rng(renamed_keyword("seed", seed, "rng", rng, 0))
    x = rng.standard_normal(shape) * 2.0 + 0.5
    weight = rng.uniform(0.5, 1.5, shape[1])
    bias = rng.standard_normal(shape[1])
    running = (rng.standard_normal(shape[1]) * 0.1, rng.uniform(0.5, 2, shape[1]))
    g = rng.standard_normal(shape)

    def loss(x_, w_, b_):
        rm, rv = running[0].copy(), running[1].copy()
        y, _ = batch_norm_forward(x_, w_, b_, rm, rv, training=training,
                                  activation=activation)
        return float((y * g).sum())

    _, saved = batch_norm_forward(x, weight, bias, running[0].copy(),
                                  running[1].copy(), training=training,
                                  activation=activation)
    analytic = batch_norm_backward(g, saved)
    errors = []
    for which, value in enumerate((x, weight, bias)):
        numeric = np.empty_like(value)
        for i in np.ndindex(value.shape):
            args = [x, weight, bias]
            plus, minus = value.copy(), value.copy()
            plus[i] += h
            minus[i] -= h
            args[which] = plus
            up = loss(*args)
            args[which] = minus
            numeric[i] = (up - loss(*args)) / (2 * h)
        scale = max(np.abs(numeric).max(), 1.0)
        errors.append(float(np.abs(analytic[which] - numeric).max() / scale))
    return errors


def gradient_rows(tolerance: float = 1e-6) -> list[Row]:
    """One Row per gradient and mode; the error column is relative to
    max(|finite difference|, 1)."""
    rows: dict[str, Row] = {}
    for shape in ((2, 3, 2, 3), (1, 2, 3, 1), (5, 1, 1, 1)):
        for training in (True, False):
            mode = "train" if training else "eval"
            errors = finite_difference_errors(shape, training)
            for name, err in zip(("dx", "dweight", "dbias"), errors):
                check = f"standard {name} ({mode}) vs finite diff"
                row = rows.setdefault(check, Row(check, "-", max_ulp=float("nan")))
                row.add(err < tolerance, err, float("nan"))
    return list(rows.values())


def selftest_rows() -> list[Row]:
    """Short checks of this installation's behaviour at the edges: sizes of 0,
    NaN and Inf, constant channels, huge offsets and values, threads, bad
    input. One Row each; an exception counts as a failure."""
    from concurrent.futures import ThreadPoolExecutor

    from bnkernels import _kernels, set_num_threads

    rng = np.random.default_rng(0)
    rows = []

    def check(name, fn):
        row = Row(name, "-", max_ulp=float("nan"))
        try:
            ok, cases, err = fn()
        except Exception as error:  # noqa: BLE001 - reported as a failed check
            ok, cases, err = False, 1, float("nan")
            row.check = f"{name} ({type(error).__name__})"
        row.cases, row.max_abs, row.ok = cases, err, bool(ok)
        rows.append(row)

    def zero_sizes():
        shapes = [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4)]
        for shape in shapes:
            x = np.ones(shape, np.float32)
            for numerics in ("standard", "darknet"):
                with np.errstate(all="ignore"):
                    y, saved = batch_norm_forward(x, None, None, None, None, numerics=numerics)
                assert y.shape == shape
        return True, len(shapes), 0.0

    def poison():
        x = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
        x[1, 2, 3, 4] = np.nan
        with np.errstate(all="ignore"):
            y, _ = batch_norm_forward(x, None, None, None, None)
        ok = np.isfinite(y[:, [0, 1, 3]]).all() and np.isnan(y[:, 2]).all()
        return ok, 1, 0.0

    def constant():
        x = np.full((4, 2, 3, 3), 7.25, np.float32)
        bias = np.array([0.5, -1.0], np.float32)
        y, _ = batch_norm_forward(x, None, bias, None, None)
        return bool((y == bias[None, :, None, None]).all()), 1, 0.0

    def offset(loc, scale_to):
        def fn():
            x = rng.standard_normal((8, 3, 8, 8)) * scale_to
            x = (x + loc).astype(np.float32)
            y, _ = batch_norm_forward(x, None, None, None, None, eps=1e-300)  # eps far below every variance: y = (x - mean) / std
            x64 = x.astype(np.float64)
            mean = x64.mean(axis=(0, 2, 3), keepdims=True)
            exact = (x64 - mean) / np.sqrt(((x64 - mean) ** 2).mean(axis=(0, 2, 3),
                                                                    keepdims=True))
            err = float(np.abs(y - exact).max())
            return np.isfinite(y).all() and err <= 4 * np.spacing(np.float32(
                np.abs(exact).max())), 1, err
        return fn

    def openmp_threads():
        x = rng.standard_normal((5, 37, 24, 24)).astype(np.float32)
        results = []
        try:
            for n in (1, 2, 3, 4):
                set_num_threads(n)
                y, saved = batch_norm_forward(x, None, None, None, None)
                results.append(y.tobytes() + batch_norm_backward(x, saved)[0].tobytes())
        finally:
            set_num_threads(None)
        return len(set(results)) == 1, 4, 0.0

    def python_threads():
        xs = [rng.standard_normal((4, 8, 12, 12)) for _ in range(16)]
        step = lambda x: batch_norm_forward(x, None, None, None, None)[0].tobytes()
        serial = [step(x) for x in xs]
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(step, xs)) == serial, len(xs), 0.0

    def bad_input():
        x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
        before = x.tobytes()
        bad = [x[:, :, ::2], x.astype(np.float16), x.astype(">f4"), x[0, 0, 0], x.astype(int)]
        rejected = 0
        for b in bad:
            try:
                batch_norm_forward(b, None, None, None, None)
            except (TypeError, ValueError):
                rejected += 1
        outs = (x[::-1], x[:, :, :2].copy(), np.empty_like(x).view(">f4"))
        for out in outs:
            try:
                batch_norm_forward(x, None, None, np.zeros(3, np.float32),
                                   np.ones(3, np.float32), out=out)
            except (TypeError, ValueError):
                rejected += 1
        return rejected == len(bad) + len(outs) and x.tobytes() == before, rejected, 0.0

    check("self-test: sizes of 0 (N, C, H*W)", zero_sizes)
    check("self-test: NaN poisons its channel only", poison)
    check("self-test: constant channel gives beta", constant)
    check("self-test: float32 at mean/std = 1e6", offset(1e6, 1.0))
    check("self-test: float32 near its max value", offset(0.0, 1e37))
    check("self-test: 1-4 OpenMP threads, same bits", openmp_threads)
    check("self-test: 8 Python threads, same bits", python_threads)
    check("self-test: bad input raises, x unchanged", bad_input)
    return rows


def format_table(rows: Sequence[Row]) -> str:
    lines = [f"{'check':<40} {'fork':<9} {'build':<6} {'cases':>5} {'max abs err':>12} "
             f"{'max ulp':>8}  result",
             "-" * 93]
    for r in rows:
        ulp = "-" if r.max_ulp != r.max_ulp else f"{r.max_ulp:g}"
        lines.append(f"{r.check:<40} {r.flavor:<9} {r.build:<6} {r.cases:>5} {r.max_abs:>12.3g} "
                     f"{ulp:>8}  {'pass' if r.ok else 'FAIL'}")
    return "\n".join(lines)


def run(extra_dirs: Sequence[str | os.PathLike[str]] = (), print_: Callable[[str], object] = print
        ) -> bool:
    """Run every check, print the table, return True if all pass."""
    rows = darknet_rows(*extra_dirs) + gradient_rows() + selftest_rows()
    print_(format_table(rows))
    failed = [r for r in rows if not r.ok]
    print_(f"\n{len(rows) - len(failed)} of {len(rows)} checks pass"
           + ("" if not failed else "; FAILED: " + ", ".join(
               r.check + ("" if r.build == "-" else f" [{r.build}]") for r in failed)))
    print_(openmp_line())
    return not failed


def openmp_line() -> str:
    """Whether this build has OpenMP, in one line."""
    from bnkernels import get_num_threads, openmp_enabled
    if openmp_enabled():
        return f"OpenMP: on ({get_num_threads()} threads)"
    return "OpenMP: off (this build has no OpenMP: the kernels run on one thread)"
