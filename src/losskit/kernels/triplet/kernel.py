"""Triton kernel of batch-hard triplet mining (Hermans et al. 2017) in O(B) memory.

Each program takes ``BLOCK_M`` anchors and sweeps the batch in tiles of ``BLOCK_N`` candidates:
the tile's squared distances come from the Gram form ``|a|^2 + |b|^2 - 2 a.b`` (a ``tl.dot``
over ``D`` in chunks of ``BLOCK_D``), and only the running hardest positive (largest distance,
same label, not the anchor itself) and hardest negative (smallest distance, other label) of each
anchor survive the tile. No ``B x B`` matrix is ever stored. Ties go to the smallest index.
"""

import triton
import triton.language as tl


@triton.jit
def batch_hard_kernel(
    X,
    sxb,
    sxd,
    SQN,
    L,
    POS,
    NEG,
    B,
    D,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < B
    lab_r = tl.load(L + rows, mask=rmask, other=0)
    sq_r = tl.load(SQN + rows, mask=rmask, other=0.0)
    best_p = tl.full([BLOCK_M], -1.0, tl.float32)
    best_pi = tl.full([BLOCK_M], -1, tl.int32)
    best_n = tl.full([BLOCK_M], float("inf"), tl.float32)
    best_ni = tl.full([BLOCK_M], -1, tl.int32)
    big = 2147483647
    for n0 in range(0, B, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        cmask = cols < B
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + tl.arange(0, BLOCK_D)
            dmask = dd < D
            a = tl.load(
                X + rows[:, None] * sxb + dd[None, :] * sxd,
                mask=rmask[:, None] & dmask[None, :],
                other=0.0,
            )
            b = tl.load(
                X + cols[:, None] * sxb + dd[None, :] * sxd,
                mask=cmask[:, None] & dmask[None, :],
                other=0.0,
            )
            # float32 products whatever the storage dtype ("ieee", or "tf32x3": three TF32
            # products, float32-accurate): the distances only rank candidates, but a rounded
            # product could swap two of them.
            acc = tl.dot(
                a.to(tl.float32), tl.trans(b.to(tl.float32)), acc, input_precision=PRECISION
            )
        sq_c = tl.load(SQN + cols, mask=cmask, other=0.0)
        lab_c = tl.load(L + cols, mask=cmask, other=0)
        d2 = tl.maximum(sq_r[:, None] + sq_c[None, :] - 2.0 * acc, 0.0)
        same = lab_r[:, None] == lab_c[None, :]
        in_batch = cmask[None, :] & rmask[:, None]
        pos = same & in_batch & (rows[:, None] != cols[None, :])
        neg = (lab_r[:, None] != lab_c[None, :]) & in_batch
        col_idx = cols[None, :] + tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.int32)

        dp = tl.where(pos, d2, -1.0)
        tile_p = tl.max(dp, axis=1)
        tile_pi = tl.min(tl.where(dp == tile_p[:, None], col_idx, big), axis=1)
        take = tile_p > best_p
        best_pi = tl.where(take, tile_pi, best_pi)
        best_p = tl.where(take, tile_p, best_p)

        dn = tl.where(neg, d2, float("inf"))
        tile_n = tl.min(dn, axis=1)
        tile_ni = tl.min(tl.where(dn == tile_n[:, None], col_idx, big), axis=1)
        take = tile_n < best_n
        best_ni = tl.where(take, tile_ni, best_ni)
        best_n = tl.where(take, tile_n, best_n)
    tl.store(POS + rows, best_pi, mask=rmask)
    tl.store(NEG + rows, best_ni, mask=rmask)
