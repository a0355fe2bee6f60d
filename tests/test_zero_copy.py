"""Arrays from other libraries, without copies: PyTorch CPU tensors (via
DLPack), any object with __dlpack__, the buffer protocol. What a call writes
(out=, running statistics) lands in the caller's memory; non-contiguous
inputs are rejected with a message, never copied behind the caller's back.
The oracle is the same call on plain NumPy arrays."""
import numpy as np
import pytest

import bnkernels
from bnkernels import darknet

torch = pytest.importorskip("torch", reason="PyTorch is optional (pip install .[torch])")


class DLPackOnly:
    """An array-like that offers nothing but DLPack (as JAX or CuPy arrays do)."""

    def __init__(self, tensor):
        self._tensor = tensor

    def __dlpack__(self, **kwargs):
        return self._tensor.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._tensor.__dlpack_device__()


def tensors(dtype=torch.float32, shape=(2, 3, 4, 5), seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    c = shape[1]
    return x, torch.rand(c, generator=generator, dtype=dtype) + 0.5, torch.randn(
        c, generator=generator, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_tensors_in_and_out_share_memory(dtype):
    x, weight, bias = tensors(dtype)
    running_mean, running_var = torch.zeros(3, dtype=dtype), torch.ones(3, dtype=dtype)
    out = torch.empty_like(x)
    pointers = [t.data_ptr() for t in (running_mean, running_var, out)]
    y, saved = bnkernels.batch_norm_forward(x, weight, bias, running_mean, running_var,
                                            out=out)
    # the result is a view of out's memory, and the running statistics were
    # updated inside the torch tensors themselves
    assert y.ctypes.data == out.data_ptr()
    assert saved.x.ctypes.data == x.data_ptr()
    assert [t.data_ptr() for t in (running_mean, running_var, out)] == pointers
    rm, rv = np.zeros(3, y.dtype), np.ones(3, y.dtype)
    y_np, _ = bnkernels.batch_norm_forward(x.numpy(), weight.numpy(), bias.numpy(), rm, rv)
    np.testing.assert_array_equal(out.numpy(), y_np)
    np.testing.assert_array_equal(running_mean.numpy(), rm)
    np.testing.assert_array_equal(running_var.numpy(), rv)

    dy = torch.ones_like(x)
    dx = torch.empty_like(x)
    result, _, _ = bnkernels.batch_norm_backward(dy, saved, out=dx)
    assert result.ctypes.data == dx.data_ptr()


def test_an_object_with_only_dlpack_is_viewed_not_copied():
    x, weight, bias = tensors()
    out = torch.empty_like(x)
    y, _ = bnkernels.batch_norm_forward(DLPackOnly(x), DLPackOnly(weight), DLPackOnly(bias),
                                        None, None, out=DLPackOnly(out))
    assert y.ctypes.data == out.data_ptr()
    expected, _ = bnkernels.batch_norm_forward(x.numpy(), weight.numpy(), bias.numpy(),
                                               None, None)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_channels_last_torch_tensor_runs_as_nhwc_without_copy():
    x, weight, bias = tensors(shape=(2, 8, 5, 6))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    nhwc = x_cl.permute(0, 2, 3, 1)  # (N, H, W, C), C-contiguous, the same memory
    assert nhwc.is_contiguous() and nhwc.data_ptr() == x_cl.data_ptr()
    y, saved = bnkernels.batch_norm_forward(nhwc, weight, bias, None, None, layout="NHWC")
    assert saved.x.ctypes.data == x_cl.data_ptr()
    expected, _ = bnkernels.batch_norm_forward(x.numpy(), weight.numpy(), bias.numpy(),
                                               None, None)
    np.testing.assert_allclose(y, expected.transpose(0, 2, 3, 1), atol=4e-6, rtol=0)


def test_buffer_protocol_objects_are_accepted():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    expected = darknet.mean_cpu(x)
    np.testing.assert_array_equal(darknet.mean_cpu(memoryview(x)), expected)
    out = np.empty(3, np.float32)
    darknet.mean_cpu(x, out=memoryview(out))
    np.testing.assert_array_equal(out, expected)


def test_darknet_kernels_take_torch_tensors_and_write_in_place():
    x, scales, biases = tensors()
    expected = darknet.scale_add_bias(x.numpy(), scales.numpy(), biases.numpy())
    darknet.scale_add_bias(x, scales, biases, out=x)   # Darknet works in place
    np.testing.assert_array_equal(x.numpy(), expected)


def test_non_contiguous_torch_tensor_is_rejected_with_a_message():
    x, weight, bias = tensors(shape=(2, 3, 4, 6))
    with pytest.raises(ValueError, match=r"x must be C-contiguous, got a non-contiguous "
                                         r"float32 array of shape \(2, 3, 4, 3\)"):
        bnkernels.batch_norm_forward(x[..., ::2], weight, bias, None, None)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        bnkernels.batch_norm_forward(x.contiguous(memory_format=torch.channels_last),
                                     weight, bias, None, None)


def test_tensor_that_requires_grad_is_rejected_naming_the_argument():
    x, weight, bias = tensors()
    weight.requires_grad_(True)
    with pytest.raises(TypeError, match=r"weight: cannot view this Tensor as a NumPy array "
                                        r"without a copy \(DLPack says: .*detach"):
        bnkernels.batch_norm_forward(x, weight, bias, None, None)


def test_running_statistics_that_would_be_copied_are_rejected_in_training():
    x, _, _ = tensors()
    with pytest.raises(TypeError, match="running_mean must be an array bnkernels can write"):
        bnkernels.batch_norm_forward(x, None, None, [0.0] * 3, torch.ones(3))


def test_torch_adapter_runs_channels_last_input_on_the_nhwc_kernels_without_copy(monkeypatch):
    from bnkernels import batchnorm
    from bnkernels import torch as bn_torch
    seen = {}
    forward = batchnorm.batch_norm_forward

    def spy(x, *args, **kwargs):
        seen["pointer"], seen["layout"] = x.ctypes.data, kwargs.get("layout")
        return forward(x, *args, **kwargs)

    monkeypatch.setattr(batchnorm, "batch_norm_forward", spy)
    x, _, _ = tensors(shape=(4, 8, 5, 5))
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    ours, theirs = bn_torch.BatchNorm2d(8), torch.nn.BatchNorm2d(8)
    y, y_torch = ours(x), theirs(x)
    assert seen == {"pointer": x.data_ptr(), "layout": "NHWC"}
    assert y.is_contiguous(memory_format=torch.channels_last)
    # torch sums in float32, bnkernels in float64: rounding-level differences
    torch.testing.assert_close(y, y_torch, atol=2e-6, rtol=0)
    grad = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, grad)
    (dx_torch,) = torch.autograd.grad(y_torch, x, grad)
    torch.testing.assert_close(dx, dx_torch, atol=4e-6, rtol=0)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
