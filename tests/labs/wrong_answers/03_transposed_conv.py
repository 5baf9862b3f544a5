"""Realistic wrong answers for lab 03, at least one per rule an exercise's text states.

Data only: ``WRONG_ANSWERS[grade_id_of_answer_cell]`` is a list of ``(name, source)`` pairs, where ``source``
replaces that answer cell's whole source in the solution notebook. Each one must be caught by a visible check in
the student version and by the hidden tests, and lose points only in its own exercise's test cells (and those of
the exercises that declare it as a prerequisite).
"""

_SIZE = '''def transposed_conv_output_size(in_size: int, kernel_size: int, stride: int = 1, padding: int = 0,
                                output_padding: int = 0, dilation: int = 1) -> int:
    """Size of a transposed convolution's output along one dimension (as torch.nn.ConvTranspose2d)."""
'''

_LAYERS_PRINT = """with torch.no_grad():
    print("layer_plain on 2×2:", tuple(layer_plain(x_lecture[None, None]).shape[-2:]))
    print("layer_fixed on 2×2:", tuple(layer_fixed(x_lecture[None, None]).shape[-2:]))
print("n×n inputs a k=3, s=2, p=1 convolution maps to 2×2:", conv_inputs_giving_2)
"""

_LAYERS_OK = """layer_plain = nn.ConvTranspose2d(1, 1, kernel_size=3, stride=2, padding=1)
layer_fixed = nn.ConvTranspose2d(1, 1, kernel_size=3, stride=2, padding=1, output_padding=1)
"""

_INPUTS_OK = """conv_inputs_giving_2 = [
    n for n in range(1, 11)
    if F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, 3, 3), stride=2, padding=1).shape[-2:] == (2, 2)
]
"""

_NAIVE = '''def conv_transpose2d_naive(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                           stride: int = 1, padding: int = 0, output_padding: int = 0) -> torch.Tensor:
    """Transposed convolution as a scatter-add of scaled kernels, with loops (same result as F.conv_transpose2d)."""
    check_transposed_conv_args(x, weight, bias, stride, padding, output_padding)
    n, c_in, h, w = x.shape
    c_out, k = weight.shape[1], weight.shape[-1]
    full_h, full_w = (h - 1) * stride + k, (w - 1) * stride + k
    h_out, w_out = full_h - 2 * padding + output_padding, full_w - 2 * padding + output_padding
'''

_NAIVE_CANVAS = """    canvas = x.new_zeros(n, c_out, max(full_h, padding + h_out), max(full_w, padding + w_out))
"""

_NAIVE_LOOP = """    for b in range(n):
        for c in range(c_in):
            for i in range(h):
                for j in range(w):
                    canvas[b, :, i * stride : i * stride + k, j * stride : j * stride + k] += x[b, c, i, j] * weight[c]
"""

_NAIVE_END = """    out = canvas[:, :, padding : padding + h_out, padding : padding + w_out]
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
"""

_VEC = '''def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int = 1, padding: int = 0, output_padding: int = 0) -> torch.Tensor:
    """Vectorised transposed convolution (same result and gradients as F.conv_transpose2d, without calling it)."""
    check_transposed_conv_args(x, weight, bias, stride, padding, output_padding)
    n, c_in, h, w = x.shape
    k = weight.shape[-1]
'''

_STUFF = """    stuffed = x.new_zeros(n, c_in, (h - 1) * stride + 1, (w - 1) * stride + 1)
    stuffed[:, :, ::stride, ::stride] = x
    q = k - 1 - padding
"""

_MATRIX = '''def conv_matrix(weight: torch.Tensor, in_size: tuple[int, int], stride: int = 1, padding: int = 0) -> torch.Tensor:
    """The matrix C of an ordinary convolution: C @ x.flatten() == F.conv2d(x[None], weight, ...).flatten()."""
    c_out, c_in, k_h, k_w = weight.shape
    h, w = in_size
    h_out, w_out = (h + 2 * padding - k_h) // stride + 1, (w + 2 * padding - k_w) // stride + 1
'''

_MATRIX_LOOP = """    for oi in range(h_out):
        for oj in range(w_out):
            for a in range(k_h):
                for b in range(k_w):
                    i, j = oi * stride - padding + a, oj * stride - padding + b
                    if 0 <= i < h and 0 <= j < w:
                        matrix[:, oi, oj, :, i, j] = weight[:, :, a, b]
"""

_DEMO_OK_REST = """via_transposed_conv = F.conv_transpose2d(y4[None], w4, stride=2, padding=1, output_padding=1)[0]
x_var = x4.clone().requires_grad_(True)
out4 = F.conv2d(x_var[None], w4, stride=2, padding=1)
(via_autograd,) = torch.autograd.grad(out4, x_var, grad_outputs=y4[None])
"""

_OVERLAP = '''def overlap_count(in_size: int | tuple[int, int], kernel_size: int, stride: int, padding: int = 0) -> torch.Tensor:
    """How many kernel copies a transposed convolution adds into each output pixel (int64, H_out×W_out)."""
'''

_OVERLAP_1D = """    def counts_1d(n):
        full = (n - 1) * stride + kernel_size
        counts = torch.zeros(full, dtype=torch.int64)
        for i in range(n):
            counts[i * stride : i * stride + kernel_size] += 1
        return counts[padding : full - padding]

"""

_KERNEL = '''def bilinear_kernel(kernel_size: int) -> torch.Tensor:
    """The k×k bilinear upsampling kernel of FCN (float32)."""
'''

WRONG_ANSWERS: dict[str, list[tuple[str, str]]] = {
    "ex1_output_size": [
        (
            "ignores dilation",
            _SIZE + "    return (in_size - 1) * stride + kernel_size - 2 * padding + output_padding\n",
        ),
        (
            "output_padding on both sides",
            _SIZE
            + "    return (in_size - 1) * stride + dilation * (kernel_size - 1) + 1 - 2 * padding + 2 * output_padding\n",
        ),
        (
            "padding cropped once",
            _SIZE
            + "    return (in_size - 1) * stride + dilation * (kernel_size - 1) + 1 - padding + output_padding\n",
        ),
        (
            "runs F.conv_transpose2d to read the size",
            _SIZE
            + """    x = torch.zeros(1, 1, in_size, in_size)
    w = torch.zeros(1, 1, kernel_size, kernel_size)
    return F.conv_transpose2d(x, w, stride=stride, padding=padding, output_padding=output_padding,
                              dilation=dilation).shape[-1]
""",
        ),
        (
            "returns a float",
            _SIZE
            + "    return float((in_size - 1) * stride + dilation * (kernel_size - 1) + 1 - 2 * padding + output_padding)\n",
        ),
    ],
    "ex1_lecture_layers": [
        (
            "layer_fixed without output_padding",
            """layer_plain = nn.ConvTranspose2d(1, 1, kernel_size=3, stride=2, padding=1)
layer_fixed = nn.ConvTranspose2d(1, 1, kernel_size=3, stride=2, padding=1)
"""
            + _INPUTS_OK
            + _LAYERS_PRINT,
        ),
        (
            "layer_plain with output_padding too",
            """layer_plain = nn.ConvTranspose2d(1, 1, kernel_size=3, stride=2, padding=1, output_padding=1)
layer_fixed = nn.ConvTranspose2d(1, 1, kernel_size=3, stride=2, padding=1, output_padding=1)
"""
            + _INPUTS_OK
            + _LAYERS_PRINT,
        ),
        (
            "conv_inputs_giving_2 from the formula, only 3",
            _LAYERS_OK + "conv_inputs_giving_2 = [(2 - 1) * 2 - 2 * 1 + 3]\n" + _LAYERS_PRINT,
        ),
        (
            "conv_inputs_giving_2 as a tuple",
            _LAYERS_OK + "conv_inputs_giving_2 = (3, 4)\n" + _LAYERS_PRINT,
        ),
        (
            "a Conv2d for layer_fixed",
            """layer_plain = nn.ConvTranspose2d(1, 1, kernel_size=3, stride=2, padding=1)
layer_fixed = nn.Conv2d(1, 1, kernel_size=3, stride=2, padding=1)
"""
            + _INPUTS_OK
            + """with torch.no_grad():
    print("layer_plain on 2×2:", tuple(layer_plain(x_lecture[None, None]).shape[-2:]))
print("n×n inputs a k=3, s=2, p=1 convolution maps to 2×2:", conv_inputs_giving_2)
""",
        ),
    ],
    "ex2_naive": [
        (
            "canvas too small when output_padding > padding",
            _NAIVE + "    canvas = x.new_zeros(n, c_out, full_h, full_w)\n" + _NAIVE_LOOP + _NAIVE_END,
        ),
        (
            "weight read as C_out × C_in",
            _NAIVE
            + _NAIVE_CANVAS
            + """    for b in range(n):
        for c in range(c_in):
            for i in range(h):
                for j in range(w):
                    canvas[b, :, i * stride : i * stride + k, j * stride : j * stride + k] += x[b, c, i, j] * weight[:, c]
"""
            + _NAIVE_END,
        ),
        (
            ".item() breaks the gradient",
            _NAIVE
            + _NAIVE_CANVAS
            + """    for b in range(n):
        for c in range(c_in):
            for i in range(h):
                for j in range(w):
                    canvas[b, :, i * stride : i * stride + k, j * stride : j * stride + k] += x[b, c, i, j].item() * weight[c]
"""
            + _NAIVE_END,
        ),
        (
            "float32 canvas for every input",
            _NAIVE
            + "    canvas = torch.zeros(n, c_out, max(full_h, padding + h_out), max(full_w, padding + w_out))\n"
            + _NAIVE_LOOP
            + _NAIVE_END,
        ),
        (
            "bias ignored",
            _NAIVE
            + _NAIVE_CANVAS
            + _NAIVE_LOOP
            + "    return canvas[:, :, padding : padding + h_out, padding : padding + w_out]\n",
        ),
        (
            "calls F.conv_transpose2d",
            _NAIVE
            + "    return F.conv_transpose2d(x, weight, bias, stride=stride, padding=padding, output_padding=output_padding)\n",
        ),
        (
            "drops the given argument check",
            '''def conv_transpose2d_naive(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                           stride: int = 1, padding: int = 0, output_padding: int = 0) -> torch.Tensor:
    """Transposed convolution as a scatter-add of scaled kernels, with loops (same result as F.conv_transpose2d)."""
    n, c_in, h, w = x.shape
    c_out, k = weight.shape[1], weight.shape[-1]
    full_h, full_w = (h - 1) * stride + k, (w - 1) * stride + k
    h_out, w_out = full_h - 2 * padding + output_padding, full_w - 2 * padding + output_padding
'''
            + _NAIVE_CANVAS
            + """    for b in range(n):
        for c in range(min(c_in, weight.shape[0])):
            for i in range(h):
                for j in range(w):
                    canvas[b, :, i * stride : i * stride + k, j * stride : j * stride + k] += x[b, c, i, j] * weight[c]
"""
            + _NAIVE_END,
        ),
    ],
    "ex3_vectorised": [
        ("is the loop version", "conv_transpose2d = conv_transpose2d_naive\n"),
        (
            "calls F.conv_transpose2d",
            _VEC
            + "    return F.conv_transpose2d(x, weight, bias, stride=stride, padding=padding, output_padding=output_padding)\n",
        ),
        (
            "calls torch.nn.grad.conv2d_input",
            _VEC
            + """    h_out = (h - 1) * stride + k - 2 * padding + output_padding
    w_out = (w - 1) * stride + k - 2 * padding + output_padding
    out = torch.nn.grad.conv2d_input((n, weight.shape[1], h_out, w_out), weight, x, stride=stride, padding=padding)
    return out if bias is None else out + bias.view(1, -1, 1, 1)
""",
        ),
        (
            "kernel not flipped",
            _VEC
            + _STUFF
            + """    stuffed = F.pad(stuffed, (q, q + output_padding, q, q + output_padding))
    return F.conv2d(stuffed, weight.transpose(0, 1), bias)
""",
        ),
        (
            "output_padding forgotten",
            _VEC
            + _STUFF
            + """    stuffed = F.pad(stuffed, (q, q, q, q))
    return F.conv2d(stuffed, weight.flip(-1, -2).transpose(0, 1), bias)
""",
        ),
        (
            "bias ignored",
            _VEC
            + _STUFF
            + """    stuffed = F.pad(stuffed, (q, q + output_padding, q, q + output_padding))
    return F.conv2d(stuffed, weight.flip(-1, -2).transpose(0, 1))
""",
        ),
        (
            "loops over the input channels",
            _VEC
            + _STUFF
            + """    stuffed = F.pad(stuffed, (q, q + output_padding, q, q + output_padding))
    flipped = weight.flip(-1, -2).transpose(0, 1)
    out = sum(F.conv2d(stuffed[:, c : c + 1], flipped[:, c : c + 1]) for c in range(c_in))
    return out if bias is None else out + bias.view(1, -1, 1, 1)
""",
        ),
        (
            "loops over the output rows",
            _VEC
            + _STUFF
            + """    stuffed = F.pad(stuffed, (q, q + output_padding, q, q + output_padding))
    flipped = weight.flip(-1, -2).transpose(0, 1)
    rows = [F.conv2d(stuffed[:, :, r : r + k], flipped) for r in range(stuffed.shape[-2] - k + 1)]
    out = torch.cat(rows, dim=-2)
    return out if bias is None else out + bias.view(1, -1, 1, 1)
""",
        ),
        (
            "NumPy breaks the gradient",
            _VEC
            + _STUFF
            + """    stuffed = F.pad(stuffed, (q, q + output_padding, q, q + output_padding))
    flipped = torch.from_numpy(weight.detach().cpu().numpy()[:, :, ::-1, ::-1].copy()).transpose(0, 1)
    return F.conv2d(stuffed, flipped.to(weight.dtype), bias)
""",
        ),
    ],
    "ex4_conv_matrix": [
        (
            "taps on the padding wrap around",
            _MATRIX
            + """    matrix = weight.new_zeros(c_out, h_out, w_out, c_in, h, w)
    for oi in range(h_out):
        for oj in range(w_out):
            for a in range(k_h):
                for b in range(k_w):
                    i, j = oi * stride - padding + a, oj * stride - padding + b
                    if i < h and j < w:
                        matrix[:, oi, oj, :, i, j] = weight[:, :, a, b]
    return matrix.reshape(c_out * h_out * w_out, c_in * h * w)
""",
        ),
        (
            "channels flattened last",
            _MATRIX
            + """    matrix = weight.new_zeros(h_out, w_out, c_out, h, w, c_in)
    for oi in range(h_out):
        for oj in range(w_out):
            for a in range(k_h):
                for b in range(k_w):
                    i, j = oi * stride - padding + a, oj * stride - padding + b
                    if 0 <= i < h and 0 <= j < w:
                        matrix[oi, oj, :, i, j, :] = weight[:, :, a, b]
    return matrix.reshape(c_out * h_out * w_out, c_in * h * w)
""",
        ),
        (
            "float32 matrix for every weight",
            _MATRIX
            + "    matrix = torch.zeros(c_out, h_out, w_out, c_in, h, w)\n"
            + _MATRIX_LOOP
            + "    return matrix.reshape(c_out * h_out * w_out, c_in * h * w)\n",
        ),
        (
            "the Jacobian of F.conv2d",
            _MATRIX
            + """    fn = lambda x: F.conv2d(x.reshape(1, c_in, h, w), weight, stride=stride, padding=padding).reshape(-1)
    return torch.autograd.functional.jacobian(fn, weight.new_zeros(c_in * h * w))
""",
        ),
        (
            "kernel flipped (a transposed convolution's taps)",
            _MATRIX
            + """    matrix = weight.new_zeros(c_out, h_out, w_out, c_in, h, w)
    for oi in range(h_out):
        for oj in range(w_out):
            for a in range(k_h):
                for b in range(k_w):
                    i, j = oi * stride - padding + a, oj * stride - padding + b
                    if 0 <= i < h and 0 <= j < w:
                        matrix[:, oi, oj, :, i, j] = weight[:, :, k_h - 1 - a, k_w - 1 - b]
    return matrix.reshape(c_out * h_out * w_out, c_in * h * w)
""",
        ),
    ],
    "ex4_transpose_demo": [
        (
            "via_transposed_conv without output_padding",
            """C4 = conv_matrix(w4, (6, 6), stride=2, padding=1)
via_matrix = (C4.T @ y4.reshape(-1)).reshape(x4.shape)
via_transposed_conv = F.conv_transpose2d(y4[None], w4, stride=2, padding=1)[0]
x_var = x4.clone().requires_grad_(True)
out4 = F.conv2d(x_var[None], w4, stride=2, padding=1)
(via_autograd,) = torch.autograd.grad(out4, x_var, grad_outputs=y4[None])
""",
        ),
        (
            "via_matrix reshapes C instead of transposing it",
            """C4 = conv_matrix(w4, (6, 6), stride=2, padding=1)
via_matrix = (C4.reshape(C4.shape[1], C4.shape[0]) @ y4.reshape(-1)).reshape(x4.shape)
"""
            + _DEMO_OK_REST,
        ),
        (
            "via_autograd with an upstream gradient of ones",
            """C4 = conv_matrix(w4, (6, 6), stride=2, padding=1)
via_matrix = (C4.T @ y4.reshape(-1)).reshape(x4.shape)
via_transposed_conv = F.conv_transpose2d(y4[None], w4, stride=2, padding=1, output_padding=1)[0]
x_var = x4.clone().requires_grad_(True)
F.conv2d(x_var[None], w4, stride=2, padding=1).sum().backward()
via_autograd = x_var.grad
""",
        ),
        (
            "the matrix called C, not C4",
            """C = conv_matrix(w4, (6, 6), stride=2, padding=1)
via_matrix = (C.T @ y4.reshape(-1)).reshape(x4.shape)
"""
            + _DEMO_OK_REST,
        ),
    ],
    "ex5_overlap_count": [
        (
            "float counts",
            _OVERLAP
            + """    h, w = (in_size, in_size) if isinstance(in_size, int) else in_size

    def counts_1d(n):
        full = (n - 1) * stride + kernel_size
        counts = torch.zeros(full)
        for i in range(n):
            counts[i * stride : i * stride + kernel_size] += 1
        return counts[padding : full - padding]

    return counts_1d(h)[:, None] * counts_1d(w)[None, :]
""",
        ),
        (
            "padding cropped at the start only",
            _OVERLAP
            + """    h, w = (in_size, in_size) if isinstance(in_size, int) else in_size

    def counts_1d(n):
        full = (n - 1) * stride + kernel_size
        counts = torch.zeros(full, dtype=torch.int64)
        for i in range(n):
            counts[i * stride : i * stride + kernel_size] += 1
        return counts[padding:]

    return counts_1d(h)[:, None] * counts_1d(w)[None, :]
""",
        ),
        (
            "uses H for both sides of a pair",
            _OVERLAP
            + "    h = w = in_size if isinstance(in_size, int) else in_size[0]\n\n"
            + _OVERLAP_1D
            + "    return counts_1d(h)[:, None] * counts_1d(w)[None, :]\n",
        ),
        (
            "F.conv_transpose2d of ones",
            _OVERLAP
            + """    h, w = (in_size, in_size) if isinstance(in_size, int) else in_size
    ones = torch.ones(1, 1, h, w, dtype=torch.float64)
    kernel = torch.ones(1, 1, kernel_size, kernel_size, dtype=torch.float64)
    return F.conv_transpose2d(ones, kernel, stride=stride, padding=padding)[0, 0].round().long()
""",
        ),
        (
            "each copy one row short",
            _OVERLAP
            + """    h, w = (in_size, in_size) if isinstance(in_size, int) else in_size

    def counts_1d(n):
        full = (n - 1) * stride + kernel_size
        counts = torch.zeros(full, dtype=torch.int64)
        for i in range(n):
            counts[i * stride : i * stride + kernel_size - 1] += 1
        return counts[padding : full - padding]

    return counts_1d(h)[:, None] * counts_1d(w)[None, :]
""",
        ),
    ],
    "ex6_bilinear_kernel": [
        (
            "centre at (k - 1) / 2 and factor k / 2 for every k",
            _KERNEL
            + """    taps = torch.arange(kernel_size, dtype=torch.float64)
    tent = 1 - (taps - (kernel_size - 1) / 2).abs() / (kernel_size / 2)
    return torch.outer(tent, tent).float()
""",
        ),
        (
            "factor k // 2 (wrong for odd k)",
            _KERNEL
            + """    factor = kernel_size // 2 if kernel_size > 1 else 1
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = torch.arange(kernel_size, dtype=torch.float64)
    tent = 1 - (taps - centre).abs() / factor
    return torch.outer(tent, tent).float()
""",
        ),
        (
            "float64 kernel",
            _KERNEL
            + """    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = torch.arange(kernel_size, dtype=torch.float64)
    tent = 1 - (taps - centre).abs() / factor
    return torch.outer(tent, tent)
""",
        ),
        (
            "F.interpolate of a delta",
            _KERNEL
            + """    factor = (kernel_size + 1) // 2
    delta = torch.zeros(1, 1, 3, 3)
    delta[0, 0, 1, 1] = 1
    up = F.interpolate(delta, scale_factor=factor, mode="bilinear", align_corners=False)[0, 0]
    start = (up.shape[-1] - kernel_size) // 2
    return (up[start : start + kernel_size, start : start + kernel_size] * factor**2).float()
""",
        ),
        (
            "kernel normalised to sum 1",
            _KERNEL
            + """    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = torch.arange(kernel_size, dtype=torch.float64)
    tent = 1 - (taps - centre).abs() / factor
    kernel = torch.outer(tent, tent)
    return (kernel / kernel.sum()).float()
""",
        ),
    ],
}

CORRECT_ALTERNATIVES: dict[str, list[tuple[str, str]]] = {
    "ex3_vectorised": [
        (
            "zero insertion (the recipe of the text)",
            _VEC
            + _STUFF
            + """    stuffed = F.pad(stuffed, (q, q + output_padding, q, q + output_padding))
    return F.conv2d(stuffed, weight.flip(-1, -2).transpose(0, 1), bias)
""",
        ),
    ],
    "ex5_overlap_count": [
        (
            "a 2-D loop over input pixels",
            _OVERLAP
            + """    h, w = (in_size, in_size) if isinstance(in_size, int) else in_size
    full_h, full_w = (h - 1) * stride + kernel_size, (w - 1) * stride + kernel_size
    counts = torch.zeros(full_h, full_w, dtype=torch.int64)
    for i in range(h):
        for j in range(w):
            counts[i * stride : i * stride + kernel_size, j * stride : j * stride + kernel_size] += 1
    return counts[padding : full_h - padding, padding : full_w - padding]
""",
        ),
    ],
}
