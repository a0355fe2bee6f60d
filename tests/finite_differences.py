"""Central finite differences, the gradient oracle of the layer and block tests."""
import numpy as np


def finite_difference(loss, a, indices=None, h=1e-6):
    """d loss / d a at each flat index in indices (all of a if None), by
    central differences; a is perturbed in place and restored. Returns an
    array of a's shape (indices None) or one value per index."""
    flat = a.reshape(-1)
    picked = range(flat.size) if indices is None else indices
    grad = []
    for i in picked:
        saved = flat[i]
        flat[i] = saved + h
        plus = loss()
        flat[i] = saved - h
        minus = loss()
        flat[i] = saved
        grad.append((plus - minus) / (2 * h))
    grad = np.array(grad, dtype=np.float64)
    return grad.reshape(a.shape) if indices is None else grad
