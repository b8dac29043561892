"""Child process of tests/test_linear_head.py: peak extra memory of one forward + backward.

Run with ``MALLOC_MMAP_THRESHOLD_=65536`` so glibc maps every buffer over 64 KiB on its own and
a freed buffer leaves the resident set at once: the resident-set high-water mark (``VmHWM``,
reset through ``/proc/self/clear_refs``) is then the peak of live bytes. Prints, per case, the
peak beyond the resident set before the step, beyond the gradients (and, under autocast, beyond
the weight's bf16 copy), in units of the chunk budget.
"""

import gc
import json

import torch

import losskit

torch.set_num_threads(1)


def rss(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def main():
    n, h, v, cb = 512, 64, 8192, 1 << 20
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, h, generator=g).requires_grad_()
    w = (torch.randn(v, h, generator=g) / 8).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    cases = [
        ("float32", {}, False),
        ("softcap", {"softcap": 5.0}, False),
        ("autocast_bf16", {}, True),
        ("eager", None, False),
    ]
    res = {}
    for name, kw, ac in cases:
        for _ in range(2):  # the second step is measured (lazy initialisations done)
            x.grad = w.grad = None
            gc.collect()
            base = rss("VmRSS:")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            with torch.autocast("cpu", torch.bfloat16, enabled=ac):
                if kw is None:
                    logits = torch.nn.functional.linear(x, w)
                    loss = torch.nn.functional.cross_entropy(logits, t)
                    del logits
                else:
                    loss = losskit.linear_cross_entropy(x, w, t, chunk_bytes=cb, **kw)
            loss.backward()
            peak = rss("VmHWM:")
        grads = (x.numel() + w.numel()) * 4
        # Under autocast the weight's bf16 copy (which autocast itself would make) is apart.
        weight_copy = w.numel() * 2 if ac else 0
        res[name] = (peak - base - grads - weight_copy) / cb
    # A small vocabulary with the default budget: a quarter of the rows per chunk at most, so
    # still well below the unfused formula (the old default put the whole batch in one chunk).
    v = 1024
    w = (torch.randn(v, h, generator=g) / 8).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    small = {}
    for name in ("losskit", "eager"):
        for _ in range(2):
            x.grad = w.grad = None
            gc.collect()
            base = rss("VmRSS:")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            if name == "eager":
                loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(x, w), t)
            else:
                loss = losskit.linear_cross_entropy(x, w, t)
            loss.backward()
            small[name] = rss("VmHWM:") - base - (x.numel() + w.numel()) * 4
    res["small_vocab_vs_eager"] = small["losskit"] / small["eager"]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
