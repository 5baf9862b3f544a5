"""How fast can a hand-written transposed convolution be? (lab 03, exercise 3)

Times three vectorised implementations written here against ``F.conv_transpose2d`` for the lab's
reference case N=8, C=64, 32×32 input, k=4, stride 2, padding 1, and prints each one's time ratio
(``ours / built-in``; the lab's goal is within 1.5×)::

    python benchmarks/bench_transposed_conv.py                 # CUDA, then MPS, then CPU
    python benchmarks/bench_transposed_conv.py --device cpu --threads 2 --min-run-time 2

This file is not shipped to students (they write their own in the lab), so it may hold answers.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch.utils import benchmark


def zero_insertion(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Put stride-1 zeros between input pixels, then an ordinary convolution with the flipped, transposed kernel."""
    n, c_in, h, w = x.shape
    k = weight.shape[-1]
    if stride > 1:
        z = x.new_zeros(n, c_in, (h - 1) * stride + 1, (w - 1) * stride + 1)
        z[:, :, ::stride, ::stride] = x
    else:
        z = x
    kernel = weight.flip(-1, -2).transpose(0, 1)
    q = dilation * (k - 1) - padding  # negative q crops instead of padding (F.pad accepts both)
    z = F.pad(z, (q, q + output_padding, q, q + output_padding))
    return F.conv2d(z, kernel, bias, dilation=dilation)


def matmul_fold(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    """The lecture's picture: one matmul scales the kernel by every input pixel, F.fold adds the copies."""
    n, c_in, h, w = x.shape
    k = weight.shape[-1]
    cols = weight.reshape(c_in, -1).t() @ x.reshape(n, c_in, h * w)  # N × (C_out·k·k) × (H·W)
    full_h, full_w = (h - 1) * stride + dilation * (k - 1) + 1, (w - 1) * stride + dilation * (k - 1) + 1
    canvas = F.fold(cols, (full_h, full_w), k, dilation=dilation, stride=stride)
    out = F.pad(canvas, (-padding, output_padding - padding, -padding, output_padding - padding))
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def sub_pixel(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    """stride² small convolutions at once (one per output phase), interleaved by pixel_shuffle."""
    c_in, c_out, k, _ = weight.shape
    if dilation > 1:  # a dilated kernel is an ordinary kernel with zeros between the taps
        dilated = weight.new_zeros(c_in, c_out, dilation * (k - 1) + 1, dilation * (k - 1) + 1)
        dilated[:, :, ::dilation, ::dilation] = weight
        weight, k = dilated, dilation * (k - 1) + 1
    s = stride
    taps = -(-k // s)  # taps per phase
    weight = F.pad(weight, (0, taps * s - k, 0, taps * s - k))
    # Tap (a, b) of the kernel feeds output phase (a % s, b % s): regroup, flip, phases become channels.
    weight = weight.reshape(c_in, c_out, taps, s, taps, s).permute(1, 3, 5, 0, 2, 4).flip(-1, -2)
    weight = weight.reshape(c_out * s * s, c_in, taps, taps)
    canvas = F.pixel_shuffle(F.conv2d(x, weight, padding=taps - 1), s)
    h_out = (x.shape[-2] - 1) * s - 2 * padding + k + output_padding
    w_out = (x.shape[-1] - 1) * s - 2 * padding + k + output_padding
    out = F.pad(
        canvas, (-padding, w_out + padding - canvas.shape[-1], -padding, h_out + padding - canvas.shape[-2])
    )
    return out if bias is None else out + bias.view(1, -1, 1, 1)


IMPLEMENTATIONS = {"sub-pixel": sub_pixel, "zero insertion": zero_insertion, "matmul + fold": matmul_fold}


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_correct(device: torch.device) -> None:
    """Every implementation matches the built-in on a few awkward configurations before it is timed."""
    g = torch.Generator().manual_seed(0)
    for stride, padding, output_padding, dilation, k in [(2, 1, 1, 1, 3), (3, 2, 0, 1, 4), (1, 0, 1, 2, 3)]:
        x = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64).to(device)
        w = torch.randn(3, 2, k, k, generator=g, dtype=torch.float64).to(device)
        b = torch.randn(2, generator=g, dtype=torch.float64).to(device)
        args = (stride, padding, output_padding, dilation)
        ref = F.conv_transpose2d(x, w, b, stride, padding, output_padding, 1, dilation)
        for name, fn in IMPLEMENTATIONS.items():
            if name == "matmul + fold" and output_padding >= stride:
                continue  # F.fold needs one block per input pixel; this layout is rare
            out = fn(x, w, b, *args)
            if out.shape != ref.shape or not torch.allclose(out, ref, rtol=1e-10, atol=1e-10):
                sys.exit(
                    f"{name} disagrees with F.conv_transpose2d for stride, padding, output_padding, dilation={args}"
                )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--min-run-time", type=float, default=1.0, help="seconds of timing per implementation"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    check_correct(device)

    n, c, size, k, stride, padding = args.batch, args.channels, args.size, 4, 2, 1
    x = torch.randn(n, c, size, size, device=device)
    w = torch.randn(c, c, k, k, device=device)
    print(f"device {device}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print(f"N={n}, C_in=C_out={c}, {size}x{size} input, k={k}, stride={stride}, padding={padding}")

    def time_it(fn) -> float:
        for _ in range(3):  # warm-up: allocator, kernel selection, caches
            fn(x, w, None, stride, padding)
        timer = benchmark.Timer(
            "fn(x, w, None, stride, padding)", globals=dict(fn=fn, x=x, w=w, stride=stride, padding=padding)
        )
        return timer.blocked_autorange(min_run_time=args.min_run_time).median

    builtin = time_it(F.conv_transpose2d)
    print(f"{'F.conv_transpose2d':>20}: {builtin * 1e3:8.2f} ms")
    for name, fn in IMPLEMENTATIONS.items():
        t = time_it(fn)
        print(f"{name:>20}: {t * 1e3:8.2f} ms   ratio {t / builtin:5.2f}x  (goal <= 1.5x)")


if __name__ == "__main__":
    main()
