"""Exact, order-free sums of floating-point partials (docs/method.md §4, distributed VPL).

A float sum depends on the order of its terms, so a gradient summed over pixels on N
processes differs in its last bits from the same sum on one, and the odd pseudo-label
flips. Here every partial (a per-chunk matrix product in float32, computed identically
whichever rank holds the chunk) is rounded once to a 64-bit integer count of ``2**-bits``
units; integer addition is associative, so the total — local, then all-reduced — is the
same bits for any split of the chunks over ranks and any order.

Resolution and range: with ``bits = 32`` one unit is 2.3e-10 and the total must stay
below 2**62 units (~1.1e9): a sum of at most 1e9 terms of magnitude ≤ 1 (the VPL gradient
sums ``p·x`` with ``p ∈ [0, 1]``, ``|x_d| ≤ 1``; COCO train has ~9e7 patches). Larger
magnitudes (the loss, ~1/τ per pixel) use fewer fractional bits. An overflow raises.
"""
import torch

#: fractional bits of the gradient sums (unit 2**-32).
GRAD_BITS = 32
#: fractional bits of the loss sums (terms up to ~1/τ + log(C+B) ≈ 110; unit 2**-20).
LOSS_BITS = 20
_LIMIT = 2.0 ** 62


def max_terms(bits: int = GRAD_BITS, magnitude: float = 1.0) -> int:
    """How many terms of magnitude ≤ ``magnitude`` a sum may have before it could leave
    the int64 range at ``bits`` fractional bits."""
    return int(_LIMIT / (2.0 ** bits) / magnitude)


def to_fixed(x: torch.Tensor, bits: int = GRAD_BITS, check: bool = True) -> torch.Tensor:
    """``round(x · 2**bits)`` as int64 (computed in float64).

    ``check=False`` skips the range test (a device sync on GPUs): the caller bounds the
    values itself (:func:`max_terms`) and checks finiteness once per step.

    Raises:
        OverflowError: a value at or beyond ``2**62`` units (or not finite).
    """
    scaled = x.double() * (2.0 ** bits)
    if not check:
        return torch.round(scaled).long()
    big = scaled.abs().max() if scaled.numel() else scaled.new_zeros(())
    if not bool(big < _LIMIT):  # also catches NaN / inf
        raise OverflowError(f'fixed-point sum out of range: |x| up to {float(big):.3g} '
                            f'units of 2**-{bits} (limit 2**62)')
    return torch.round(scaled).long()


def from_fixed(x: torch.Tensor, bits: int = GRAD_BITS) -> torch.Tensor:
    """float64 value of a fixed-point tensor."""
    return x.double() / (2.0 ** bits)
