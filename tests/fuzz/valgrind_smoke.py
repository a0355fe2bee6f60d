"""Every public function a few times, for a memory checker:

    PYTHONMALLOC=malloc valgrind --error-exitcode=1 --leak-check=full \\
        --errors-for-leak-kinds=definite --show-leak-kinds=definite \\
        python tests/fuzz/valgrind_smoke.py

(the README reports what it printed). Uses the leak test's list of calls,
then the convolution and pooling kernels on hostile geometries: sizes they
must refuse before any C runs, and huge strides and paddings they accept.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent))

from test_reliability import public_calls  # noqa: E402

from bnkernels import _kernels  # noqa: E402

for name, call in public_calls().items():
    for _ in range(3):
        call()
print("ran", len(public_calls()), "public calls 3 times each")

x = np.arange(18, dtype=np.float32).reshape(1, 2, 3, 3)
refused = [
    lambda: _kernels.im2col(x, 2, 1, 2**31),
    lambda: _kernels.col2im(np.zeros((1, 8, 1), np.float32), (1, 2, 3, 3), 2, 1, 2**31),
    lambda: _kernels.im2col(x, 2**60 + 1, 1, 0),
    lambda: _kernels.max_pool2d_forward(x, 2**40, 1, 2**39),
    lambda: _kernels.avg_pool2d_backward(np.zeros((1, 1, 1, 1), np.float32),
                                         (1, 1, 2**62, 1), 2, 1, 0),
    lambda: _kernels.max_pool2d_backward(np.zeros((1, 1, 1, 1), np.float32),
                                         np.zeros((1, 1, 1, 1), np.int64), (1, 1, 2**40, 2**40)),
]
for call in refused:
    try:
        call()
    except ValueError:
        continue
    raise SystemExit("a hostile geometry was accepted")
for k, s, p in [((2, 2), (2**60, 2**60), (2**59, 2**59)), ((3, 1), (2**40, 1), (2**40, 0))]:
    _kernels.col2im(_kernels.im2col(x, k, s, p), x.shape, k, s, p)
for k, s, p in [((2**30, 3), (2**60, 1), (2**29, 1)), ((2**20, 2), (2**60, 2**60), (2**19, 1))]:
    y, indices = _kernels.max_pool2d_forward(x, k, s, p, ceil_mode=True)
    _kernels.max_pool2d_backward(y, indices, x.shape)
    _kernels.avg_pool2d_backward(_kernels.avg_pool2d_forward(x, k, s, p, ceil_mode=True,
                                                             count_include_pad=False),
                                 x.shape, k, s, p, ceil_mode=True, count_include_pad=False)
print("refused", len(refused), "hostile geometries; ran 4 near the limits")
