"""Fused Triton kernels of the hot losses, chosen automatically for CUDA tensors.

The functional API (``losskit.cross_entropy``, ``losskit.binary_cross_entropy_with_logits``,
``losskit.sigmoid_focal_loss``, ``losskit.kl_div``, the distillation losses, the batch-hard triplet
miner, ``losskit.lm.token_logprobs``) calls the kernels through :mod:`losskit.kernels.dispatch`
when every tensor is on a CUDA device and ``triton`` is importable (the ``[kernels]`` extra);
otherwise it runs its PyTorch formula. :class:`use_kernels` forces or forbids the kernels::

    losskit.kernels.use_kernels("never")        # PyTorch everywhere
    with losskit.kernels.use_kernels("always"):  # kernels or an error saying why not
        loss = losskit.cross_entropy(logits, target)

Every kernel agrees with the PyTorch path on every convention (reductions, ignored targets, empty
batches, dtypes); the tests in ``tests/kernels`` check that on the CPU under ``TRITON_INTERPRET=1``.
Kernels never write into their inputs unless asked (``inplace_backward=True``).
"""

from .dispatch import (
    KernelUnsupportedError,
    get_kernel_mode,
    kernels_available,
    use_kernels,
)

__all__ = ["KernelUnsupportedError", "get_kernel_mode", "kernels_available", "use_kernels"]
