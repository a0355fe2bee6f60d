"""Per-call overhead of bnkernels._kernels entry points, two builds side by
side in one process (docs/design/bindings.md):

    python benchmarks/binding_overhead.py DIR [ROUNDS]

DIR holds another build's _kernels*.so (before: a copy of the old build);
after is the installed bnkernels._kernels. Both must give the same results
(checked first). Each round times every entry point on each build in turn,
alternating which goes first; printed: the median over ROUNDS (7) of the
best of 5 x 2000 calls, in microseconds per call, on a (1, 8, 4, 4) tensor.
"""
import glob
import importlib.util
import statistics
import sys
import timeit

import numpy as np

import bnkernels._kernels as new

base_so = glob.glob(sys.argv[1] + "/_kernels*.so")[0]
spec = importlib.util.spec_from_file_location("bnkernels_base._kernels", base_so)
base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base)
assert base is not new

rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
rng = np.random.default_rng(0)
cases = {}
for dt in (np.float32, np.float64):
    x = rng.standard_normal((1, 8, 4, 4)).astype(dt)
    c = x.shape[1]
    w, b = np.ones(c, dt), np.zeros(c, dt)
    m64, k64 = x.astype(np.float64).mean(axis=(0, 2, 3)), np.ones(c)
    mean, var = x.mean(axis=(0, 2, 3)).astype(dt), x.var(axis=(0, 2, 3)).astype(dt)
    rm, rv = np.zeros(c, dt), np.ones(c, dt)
    out, dy = np.empty_like(x), np.ones_like(x)
    n = dt.__name__
    cases[f"stats {n}"] = lambda K, x=x: K.stats(x)
    cases[f"normalize_affine {n}"] = lambda K, x=x, m=m64, k=k64, w=w, b=b, o=out: K.normalize_affine(x, m, k, w, b, o)
    cases[f"standard_forward train {n}"] = lambda K, x=x, w=w, b=b, rm=rm, rv=rv, o=out: K.standard_forward(x, w, b, rm, rv, True, 0.1, 1e-5, False, o)
    cases[f"standard_forward eval {n}"] = lambda K, x=x, w=w, b=b, rm=rm, rv=rv, o=out: K.standard_forward(x, w, b, rm, rv, False, 0.1, 1e-5, False, o)
    cases[f"standard_backward {n}"] = lambda K, x=x, dy=dy, m=m64, k=k64, w=w, b=b, o=out: K.standard_backward(dy, x, m, k, w, b, True, False, o)
    cases[f"dk_mean {n}"] = lambda K, x=x: K.dk_mean(x)
    cases[f"dk_normalize {n}"] = lambda K, x=x, m=mean, v=var, o=out: K.dk_normalize(x, m, v, 1e-5, False, o)
    cases[f"dk_backward {n}"] = lambda K, x=x, dy=dy, m=mean, v=var, w=w: K.dk_backward(x, x, dy, m, v, w, 1e-5, False)
    cases[f"max_pool2d_forward {n}"] = lambda K, x=x: K.max_pool2d_forward(x, 2, 2, 0)

for name, f in cases.items():  # same results from both builds
    a, b2 = f(base), f(new)
    for u, v in zip(a if isinstance(a, tuple) else (a,), b2 if isinstance(b2, tuple) else (b2,)):
        if isinstance(u, np.ndarray):
            assert np.array_equal(u, v, equal_nan=True), name

res = {k: ([], []) for k in cases}
for r in range(rounds):
    for name, f in cases.items():
        order = ((0, base), (1, new)) if r % 2 == 0 else ((1, new), (0, base))
        for i, K in order:
            t = min(timeit.repeat(lambda: f(K), number=2000, repeat=5)) / 2000 * 1e6
            res[name][i].append(t)
print(f"{'entry point (1, 8, 4, 4)':34s} {'before us':>10s} {'after us':>10s} {'after/before':>12s}")
for name, (a, b2) in res.items():
    ma, mb = statistics.median(a), statistics.median(b2)
    print(f"{name:34s} {ma:10.3f} {mb:10.3f} {mb / ma:12.3f}")
