"""Realistic wrong answers for lab 02, at least one per rule an exercise's text states.

Data only: ``WRONG_ANSWERS[grade_id_of_answer_cell]`` is a list of ``(name, source)`` pairs, where ``source``
replaces that answer cell's whole source in the solution notebook. Each one must be caught by a visible check in
the student version and by the hidden tests, and lose points only in its own exercise's test cells (and those of
the exercises that declare it as a prerequisite).
"""

_CONV_SIGNATURE = '''def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Number of outputs along one dimension of a convolution or pooling layer (floor mode)."""
'''

_CONV_CHECKS = """    for name, value, least in (
        ("kernel_size", kernel_size, 1),
        ("stride", stride, 1),
        ("dilation", dilation, 1),
        ("padding", padding, 0),
    ):
        if value < least:
            raise ValueError(f"{name}={value} must be at least {least}")
"""

_SHAPES_SIGNATURE = '''def encoder_shapes(encoder: nn.Sequential, in_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Shape (C, H, W) after each layer of ``encoder`` for an input of shape ``in_shape``, computed by formula."""

    def pair(value):
        return tuple(value) if isinstance(value, (tuple, list)) else (value, value)

'''

_NEAREST_SIGNATURE = '''def nearest_unpool(x: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling of an N×C×H×W tensor by an integer factor: each value fills a scale×scale block."""
'''

_NEAREST_CHECKS = """    if x.dim() != 4:
        raise ValueError("x must be 4-D")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError("scale must be a positive int")
"""

_NAILS_SIGNATURE = '''def bed_of_nails_unpool(x: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """Bed-of-nails upsampling: each value goes to the top-left corner of its scale×scale block, zeros elsewhere."""
'''

_POOL_SIGNATURE = '''def max_pool_with_switches(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2×2 stride-2 max-pooling that also returns the flat position (row·W + col) of every maximum."""
'''

_POOL_CHECKS = """    if x.dim() != 4:
        raise ValueError("x must be 4-D")
    n, c, height, width = x.shape
    if height < 2 or width < 2:
        raise ValueError("H and W must be at least 2")
    h, w = height // 2, width // 2
"""

_WINDOWS = """    windows = (
        x[:, :, : 2 * h, : 2 * w].reshape(n, c, h, 2, w, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w, 4)
    )
"""

_UNPOOL_SIGNATURE = '''def max_unpool(values: torch.Tensor, indices: torch.Tensor, output_size=None) -> torch.Tensor:
    """Put each value back at its switch position (flat index in an H_out×W_out plane); zeros elsewhere."""
'''

_UNPOOL_CHECKS = """    if values.dim() != 4:
        raise ValueError("values must be 4-D")
    if tuple(indices.shape) != tuple(values.shape):
        raise ValueError("indices and values differ in shape")
    n, c, h, w = values.shape
    height, width = (2 * h, 2 * w) if output_size is None else (int(v) for v in tuple(output_size)[-2:])
    flat = indices.reshape(n, c, h * w).long()
"""

_SEGNET_HEAD = '''def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 convolution (size kept) → batch norm → ReLU: one stage of SegNet."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SegNetLite(nn.Module):
    """Symmetric encoder–decoder: each max-unpooling reuses the switches of its own max-pooling layer."""

    def __init__(self, in_channels: int = 3, num_classes: int = 5, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        widths = tuple(widths)
        inputs = (in_channels, *widths[:-1])
        outputs = (widths[0], *widths[:-1])
        self.encoders = nn.ModuleList(conv_bn_relu(i, o) for i, o in zip(inputs, widths))
        self.decoders = nn.ModuleList(conv_bn_relu(i, o) for i, o in zip(widths, outputs))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
'''

_SEGNET_PAD = """        stride = 2 ** len(self.encoders)
        x = F.pad(x, (0, -width % stride, 0, -height % stride))
"""

_SEGNET_ENCODE = """        switches = []
        for encoder in self.encoders:
            x, indices = F.max_pool2d(encoder(x), 2, 2, return_indices=True)
            switches.append(indices)
"""

_ROUND_TRIP_HEAD = '''UNPOOLING_METHODS = ("nearest", "bed_of_nails", "max_unpool")


def round_trip(x: torch.Tensor, method: str, levels: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Downsample ``x`` by ``levels`` 2×2 max-poolings, then upsample back with ``method``; return (pooled, restored)."""
'''

_ROUND_TRIP_CHECKS = """    if method not in UNPOOLING_METHODS:
        raise ValueError(f"unknown method {method!r}")
    factor = 2**levels
    if x.shape[-2] % factor or x.shape[-1] % factor:
        raise ValueError("H and W must be divisible by 2**levels")
"""

_ROUND_TRIP_UP = """    restored = pooled
    for indices in reversed(switches):
        if method == "nearest":
            restored = nearest_unpool(restored, 2)
        elif method == "bed_of_nails":
            restored = bed_of_nails_unpool(restored, 2)
        else:
            restored = max_unpool(restored, indices)
    return pooled, restored
"""

_POOL_LEVELS = """    pooled, switches = x, []
    for _ in range(levels):
        pooled, indices = F.max_pool2d(pooled, 2, 2, return_indices=True)
        switches.append(indices)
"""

WRONG_ANSWERS: dict[str, list[tuple[str, str]]] = {
    "ex1_conv_output_size": [
        (
            "ignores dilation",
            _CONV_SIGNATURE
            + _CONV_CHECKS
            + """    if size + 2 * padding < kernel_size:
        raise ValueError("the window does not fit")
    return (size + 2 * padding - kernel_size) // stride + 1
""",
        ),
        (
            "rounds up instead of down",
            _CONV_SIGNATURE
            + _CONV_CHECKS
            + """    span = dilation * (kernel_size - 1) + 1
    if size + 2 * padding < span:
        raise ValueError("the window does not fit")
    return -(-(size + 2 * padding - span) // stride) + 1
""",
        ),
        (
            "pads one side only",
            _CONV_SIGNATURE
            + _CONV_CHECKS
            + """    span = dilation * (kernel_size - 1) + 1
    if size + padding < span:
        raise ValueError("the window does not fit")
    return (size + padding - span) // stride + 1
""",
        ),
        (
            "returns a float",
            _CONV_SIGNATURE
            + _CONV_CHECKS
            + """    span = dilation * (kernel_size - 1) + 1
    if size + 2 * padding < span:
        raise ValueError("the window does not fit")
    return float((size + 2 * padding - span) // stride + 1)
""",
        ),
        (
            "no argument checks at all",
            _CONV_SIGNATURE
            + """    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1
""",
        ),
        (
            "does not check that the window fits",
            _CONV_SIGNATURE
            + _CONV_CHECKS
            + """    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1
""",
        ),
        (
            "stride 0 divides by zero instead of raising ValueError",
            _CONV_SIGNATURE
            + """    if kernel_size < 1 or dilation < 1 or padding < 0:
        raise ValueError("bad kernel_size, dilation or padding")
    span = dilation * (kernel_size - 1) + 1
    if size + 2 * padding < span:
        raise ValueError("the window does not fit")
    return (size + 2 * padding - span) // stride + 1
""",
        ),
        (
            "negative padding accepted",
            _CONV_SIGNATURE
            + """    if kernel_size < 1 or stride < 1 or dilation < 1:
        raise ValueError("bad kernel_size, stride or dilation")
    span = dilation * (kernel_size - 1) + 1
    if size + 2 * padding < span:
        raise ValueError("the window does not fit")
    return (size + 2 * padding - span) // stride + 1
""",
        ),
    ],
    "ex1_encoder_shapes": [
        (
            "runs the layers on a zero tensor",
            _SHAPES_SIGNATURE
            + """    x, shapes = torch.zeros(1, *in_shape), []
    with torch.no_grad():
        for layer in encoder:
            x = layer(x)
            shapes.append(tuple(x.shape[1:]))
    return shapes
""",
        ),
        (
            "never updates the channels",
            _SHAPES_SIGNATURE
            + """    c, h, w = (int(v) for v in in_shape)
    shapes = []
    for layer in encoder:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            k, s, p, d = pair(layer.kernel_size), pair(layer.stride), pair(layer.padding), pair(layer.dilation)
            h = conv_output_size(h, k[0], s[0], p[0], d[0])
            w = conv_output_size(w, k[1], s[1], p[1], d[1])
        elif not isinstance(layer, (nn.BatchNorm2d, nn.ReLU)):
            raise TypeError(f"cannot handle {layer!r}")
        shapes.append((c, h, w))
    return shapes
""",
        ),
        (
            "uses the H hyperparameters along W too",
            _SHAPES_SIGNATURE
            + """    c, h, w = (int(v) for v in in_shape)
    shapes = []
    for layer in encoder:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            k, s, p, d = pair(layer.kernel_size), pair(layer.stride), pair(layer.padding), pair(layer.dilation)
            h = conv_output_size(h, k[0], s[0], p[0], d[0])
            w = conv_output_size(w, k[0], s[0], p[0], d[0])
            if isinstance(layer, nn.Conv2d):
                c = layer.out_channels
        elif not isinstance(layer, (nn.BatchNorm2d, nn.ReLU)):
            raise TypeError(f"cannot handle {layer!r}")
        shapes.append((c, h, w))
    return shapes
""",
        ),
        (
            "ignores the pooling's dilation and padding",
            _SHAPES_SIGNATURE
            + """    c, h, w = (int(v) for v in in_shape)
    shapes = []
    for layer in encoder:
        if isinstance(layer, nn.Conv2d):
            k, s, p, d = layer.kernel_size, layer.stride, layer.padding, layer.dilation
            h = conv_output_size(h, k[0], s[0], p[0], d[0])
            w = conv_output_size(w, k[1], s[1], p[1], d[1])
            c = layer.out_channels
        elif isinstance(layer, nn.MaxPool2d):
            k, s = pair(layer.kernel_size), pair(layer.stride)
            h = conv_output_size(h, k[0], s[0])
            w = conv_output_size(w, k[1], s[1])
        elif not isinstance(layer, (nn.BatchNorm2d, nn.ReLU)):
            raise TypeError(f"cannot handle {layer!r}")
        shapes.append((c, h, w))
    return shapes
""",
        ),
        (
            "skips unknown layers instead of raising TypeError",
            _SHAPES_SIGNATURE
            + """    c, h, w = (int(v) for v in in_shape)
    shapes = []
    for layer in encoder:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            k, s, p, d = pair(layer.kernel_size), pair(layer.stride), pair(layer.padding), pair(layer.dilation)
            h = conv_output_size(h, k[0], s[0], p[0], d[0])
            w = conv_output_size(w, k[1], s[1], p[1], d[1])
            if isinstance(layer, nn.Conv2d):
                c = layer.out_channels
        shapes.append((c, h, w))
    return shapes
""",
        ),
        (
            "lists only the layers that change the shape",
            _SHAPES_SIGNATURE
            + """    c, h, w = (int(v) for v in in_shape)
    shapes = []
    for layer in encoder:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            k, s, p, d = pair(layer.kernel_size), pair(layer.stride), pair(layer.padding), pair(layer.dilation)
            h = conv_output_size(h, k[0], s[0], p[0], d[0])
            w = conv_output_size(w, k[1], s[1], p[1], d[1])
            if isinstance(layer, nn.Conv2d):
                c = layer.out_channels
            shapes.append((c, h, w))
        elif not isinstance(layer, (nn.BatchNorm2d, nn.ReLU)):
            raise TypeError(f"cannot handle {layer!r}")
    return shapes
""",
        ),
    ],
    "ex2_nearest_unpool": [
        (
            "calls F.interpolate",
            _NEAREST_SIGNATURE
            + _NEAREST_CHECKS
            + """    return F.interpolate(x, scale_factor=scale, mode="nearest")
""",
        ),
        (
            "no argument checks",
            _NEAREST_SIGNATURE
            + """    rows = torch.arange(x.shape[-2] * scale, device=x.device) // scale
    cols = torch.arange(x.shape[-1] * scale, device=x.device) // scale
    return x[:, :, rows[:, None], cols[None, :]]
""",
        ),
        (
            "accepts a float scale",
            _NEAREST_SIGNATURE
            + """    if x.dim() != 4:
        raise ValueError("x must be 4-D")
    if scale < 1:
        raise ValueError("scale must be at least 1")
    return x.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
""",
        ),
        (
            "float32 output for an integer label map",
            _NEAREST_SIGNATURE
            + _NEAREST_CHECKS
            + """    n, c, h, w = x.shape
    out = torch.zeros(n, c, h * scale, w * scale)
    for a in range(scale):
        for b in range(scale):
            out[:, :, a::scale, b::scale] = x
    return out
""",
        ),
        (
            "detaches: no gradient reaches x",
            _NEAREST_SIGNATURE
            + _NEAREST_CHECKS
            + """    rows = torch.arange(x.shape[-2] * scale) // scale
    cols = torch.arange(x.shape[-1] * scale) // scale
    return x.detach()[:, :, rows[:, None], cols[None, :]]
""",
        ),
        (
            "swaps the roles of H and W",
            _NEAREST_SIGNATURE
            + _NEAREST_CHECKS
            + """    rows = torch.arange(x.shape[-1] * scale, device=x.device) // scale
    cols = torch.arange(x.shape[-2] * scale, device=x.device) // scale
    return x[:, :, rows[:, None], cols[None, :]]
""",
        ),
    ],
    "ex3_bed_of_nails_unpool": [
        (
            "nails in the bottom-right corner",
            _NAILS_SIGNATURE
            + _NEAREST_CHECKS
            + """    n, c, h, w = x.shape
    out = x.new_zeros(n, c, h * scale, w * scale)
    out[:, :, scale - 1 :: scale, scale - 1 :: scale] = x
    return out
""",
        ),
        (
            "calls F.max_unpool2d with top-left switches",
            _NAILS_SIGNATURE
            + _NEAREST_CHECKS
            + """    n, c, h, w = x.shape
    rows = torch.arange(h).view(h, 1) * scale
    cols = torch.arange(w).view(1, w) * scale
    indices = (rows * w * scale + cols).expand(n, c, h, w)
    return F.max_unpool2d(x.float(), indices, scale, scale).to(x.dtype)
""",
        ),
        (
            "float32 zeros for every input",
            _NAILS_SIGNATURE
            + _NEAREST_CHECKS
            + """    n, c, h, w = x.shape
    out = torch.zeros(n, c, h * scale, w * scale)
    out[:, :, ::scale, ::scale] = x
    return out
""",
        ),
        (
            "no argument checks",
            _NAILS_SIGNATURE
            + """    n, c, h, w = x.shape
    out = x.new_zeros(n, c, h * scale, w * scale)
    out[:, :, ::scale, ::scale] = x
    return out
""",
        ),
        (
            "accepts a float scale",
            _NAILS_SIGNATURE
            + """    if x.dim() != 4 or scale < 1:
        raise ValueError("bad input")
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, int(h * scale), int(w * scale))
    out[:, :, :: int(scale), :: int(scale)] = x
    return out
""",
        ),
        (
            "detaches: no gradient reaches x",
            _NAILS_SIGNATURE
            + _NEAREST_CHECKS
            + """    n, c, h, w = x.shape
    out = x.new_zeros(n, c, h * scale, w * scale)
    out[:, :, ::scale, ::scale] = x.detach()
    return out
""",
        ),
    ],
    "ex4_max_pool_with_switches": [
        (
            "calls F.max_pool2d",
            _POOL_SIGNATURE
            + _POOL_CHECKS
            + """    return F.max_pool2d(x, 2, 2, return_indices=True)
""",
        ),
        (
            "flat index with the pooled width",
            _POOL_SIGNATURE
            + _POOL_CHECKS
            + _WINDOWS
            + """    winner = windows.argmax(dim=-1, keepdim=True)
    values = windows.gather(-1, winner).squeeze(-1)
    winner = winner.squeeze(-1)
    rows = 2 * torch.arange(h).view(h, 1) + winner // 2
    cols = 2 * torch.arange(w).view(1, w) + winner % 2
    return values, rows * w + cols
""",
        ),
        (
            "flat index over the whole tensor",
            _POOL_SIGNATURE
            + _POOL_CHECKS
            + _WINDOWS
            + """    winner = windows.argmax(dim=-1, keepdim=True)
    values = windows.gather(-1, winner).squeeze(-1)
    winner = winner.squeeze(-1)
    rows = 2 * torch.arange(h).view(h, 1) + winner // 2
    cols = 2 * torch.arange(w).view(1, w) + winner % 2
    plane = torch.arange(n * c).view(n, c, 1, 1) * height * width
    return values, plane + rows * width + cols
""",
        ),
        (
            "the last maximum wins a tie",
            _POOL_SIGNATURE
            + _POOL_CHECKS
            + _WINDOWS
            + """    winner = 3 - windows.flip(-1).argmax(dim=-1, keepdim=True)
    values = windows.gather(-1, winner).squeeze(-1)
    winner = winner.squeeze(-1)
    rows = 2 * torch.arange(h).view(h, 1) + winner // 2
    cols = 2 * torch.arange(w).view(1, w) + winner % 2
    return values, rows * width + cols
""",
        ),
        (
            "odd sizes are not cropped",
            _POOL_SIGNATURE
            + _POOL_CHECKS
            + """    windows = x.reshape(n, c, h, 2, w, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w, 4)
    winner = windows.argmax(dim=-1, keepdim=True)
    values = windows.gather(-1, winner).squeeze(-1)
    winner = winner.squeeze(-1)
    rows = 2 * torch.arange(h).view(h, 1) + winner // 2
    cols = 2 * torch.arange(w).view(1, w) + winner % 2
    return values, rows * width + cols
""",
        ),
        (
            "int32 indices",
            _POOL_SIGNATURE
            + _POOL_CHECKS
            + _WINDOWS
            + """    winner = windows.argmax(dim=-1, keepdim=True)
    values = windows.gather(-1, winner).squeeze(-1)
    winner = winner.squeeze(-1)
    rows = 2 * torch.arange(h).view(h, 1) + winner // 2
    cols = 2 * torch.arange(w).view(1, w) + winner % 2
    return values, (rows * width + cols).int()
""",
        ),
        (
            "no ValueError for a 1-pixel-high input",
            _POOL_SIGNATURE
            + """    if x.dim() != 4:
        raise ValueError("x must be 4-D")
    n, c, height, width = x.shape
    h, w = height // 2, width // 2
"""
            + _WINDOWS
            + """    winner = windows.argmax(dim=-1, keepdim=True)
    values = windows.gather(-1, winner).squeeze(-1)
    winner = winner.squeeze(-1)
    rows = 2 * torch.arange(h).view(h, 1) + winner // 2
    cols = 2 * torch.arange(w).view(1, w) + winner % 2
    return values, rows * width + cols
""",
        ),
        (
            "values detached: no gradient reaches x",
            _POOL_SIGNATURE
            + _POOL_CHECKS
            + _WINDOWS
            + """    winner = windows.argmax(dim=-1, keepdim=True)
    values = windows.detach().gather(-1, winner).squeeze(-1)
    winner = winner.squeeze(-1)
    rows = 2 * torch.arange(h).view(h, 1) + winner // 2
    cols = 2 * torch.arange(w).view(1, w) + winner % 2
    return values, rows * width + cols
""",
        ),
    ],
    "ex4_max_unpool": [
        (
            "calls F.max_unpool2d",
            _UNPOOL_SIGNATURE
            + _UNPOOL_CHECKS
            + """    if int(flat.min()) < 0 or int(flat.max()) >= height * width:
        raise ValueError("index outside the plane")
    return F.max_unpool2d(values, indices, 2, 2, output_size=(height, width))
""",
        ),
        (
            "ignores output_size",
            _UNPOOL_SIGNATURE
            + _UNPOOL_CHECKS
            + """    height, width = 2 * h, 2 * w
    if int(flat.min()) < 0 or int(flat.max()) >= height * width:
        raise ValueError("index outside the plane")
    out = values.new_zeros(n, c, height * width).scatter(2, flat, values.reshape(n, c, h * w))
    return out.reshape(n, c, height, width)
""",
        ),
        (
            "no ValueError for indices of another shape",
            _UNPOOL_SIGNATURE
            + """    n, c, h, w = values.shape
    height, width = (2 * h, 2 * w) if output_size is None else (int(v) for v in tuple(output_size)[-2:])
    flat = indices.reshape(n, c, -1).long()
    if int(flat.min()) < 0 or int(flat.max()) >= height * width:
        raise ValueError("index outside the plane")
    out = values.new_zeros(n, c, height * width).scatter(2, flat, values.reshape(n, c, -1))
    return out.reshape(n, c, height, width)
""",
        ),
        (
            "no bounds check: scatter fails with RuntimeError",
            _UNPOOL_SIGNATURE
            + _UNPOOL_CHECKS
            + """    out = values.new_zeros(n, c, height * width).scatter(2, flat, values.reshape(n, c, h * w))
    return out.reshape(n, c, height, width)
""",
        ),
        (
            "float32 output whatever the values' dtype",
            _UNPOOL_SIGNATURE
            + _UNPOOL_CHECKS
            + """    if int(flat.min()) < 0 or int(flat.max()) >= height * width:
        raise ValueError("index outside the plane")
    out = torch.zeros(n, c, height * width).scatter(2, flat, values.reshape(n, c, h * w).float())
    return out.reshape(n, c, height, width)
""",
        ),
        (
            "detaches: no gradient reaches the values",
            _UNPOOL_SIGNATURE
            + _UNPOOL_CHECKS
            + """    if int(flat.min()) < 0 or int(flat.max()) >= height * width:
        raise ValueError("index outside the plane")
    out = values.new_zeros(n, c, height * width).scatter(2, flat, values.detach().reshape(n, c, h * w))
    return out.reshape(n, c, height, width)
""",
        ),
    ],
    "ex5_segnet": [
        (
            "interpolates to the input size instead of padding and cropping",
            _SEGNET_HEAD
            + _SEGNET_ENCODE
            + """        for decoder, indices in zip(reversed(self.decoders), reversed(switches)):
            x = decoder(max_unpool(x, indices))
        return F.interpolate(self.head(x), size=(height, width), mode="nearest")
""",
        ),
        (
            "no padding: odd sizes fail",
            _SEGNET_HEAD
            + _SEGNET_ENCODE
            + """        for decoder, indices in zip(reversed(self.decoders), reversed(switches)):
            x = decoder(max_unpool(x, indices))
        return self.head(x)[..., :height, :width]
""",
        ),
        (
            "nearest-neighbour unpooling instead of the switches",
            _SEGNET_HEAD
            + _SEGNET_PAD
            + _SEGNET_ENCODE
            + """        for decoder in reversed(self.decoders):
            x = decoder(nearest_unpool(x, 2))
        return self.head(x)[..., :height, :width]
""",
        ),
        (
            "bed of nails instead of the switches",
            _SEGNET_HEAD
            + _SEGNET_PAD
            + _SEGNET_ENCODE
            + """        for decoder in reversed(self.decoders):
            x = decoder(bed_of_nails_unpool(x, 2))
        return self.head(x)[..., :height, :width]
""",
        ),
        (
            "calls F.max_unpool2d",
            _SEGNET_HEAD
            + _SEGNET_PAD
            + _SEGNET_ENCODE
            + """        for decoder, indices in zip(reversed(self.decoders), reversed(switches)):
            x = decoder(F.max_unpool2d(x, indices, 2, 2))
        return self.head(x)[..., :height, :width]
""",
        ),
        (
            "switches in pooling order, not reversed",
            _SEGNET_HEAD
            + _SEGNET_PAD
            + _SEGNET_ENCODE
            + """        for decoder, indices in zip(reversed(self.decoders), switches):
            x = decoder(max_unpool(x, indices))
        return self.head(x)[..., :height, :width]
""",
        ),
        (
            "a ReLU on the logits",
            _SEGNET_HEAD
            + _SEGNET_PAD
            + _SEGNET_ENCODE
            + """        for decoder, indices in zip(reversed(self.decoders), reversed(switches)):
            x = decoder(max_unpool(x, indices))
        return F.relu(self.head(x))[..., :height, :width]
""",
        ),
    ],
    "ex6_round_trip": [
        (
            "no ValueError for an unknown method",
            _ROUND_TRIP_HEAD
            + """    factor = 2**levels
    if x.shape[-2] % factor or x.shape[-1] % factor:
        raise ValueError("H and W must be divisible by 2**levels")
"""
            + _POOL_LEVELS
            + _ROUND_TRIP_UP,
        ),
        (
            "no check that H and W are divisible",
            _ROUND_TRIP_HEAD
            + """    if method not in UNPOOLING_METHODS:
        raise ValueError(f"unknown method {method!r}")
"""
            + _POOL_LEVELS
            + _ROUND_TRIP_UP,
        ),
        (
            "switches used in pooling order",
            _ROUND_TRIP_HEAD
            + _ROUND_TRIP_CHECKS
            + _POOL_LEVELS
            + """    restored = pooled
    for indices in switches:
        if method == "nearest":
            restored = nearest_unpool(restored, 2)
        elif method == "bed_of_nails":
            restored = bed_of_nails_unpool(restored, 2)
        else:
            restored = max_unpool(restored, indices)
    return pooled, restored
""",
        ),
        (
            "F.interpolate for the nearest method",
            _ROUND_TRIP_HEAD
            + _ROUND_TRIP_CHECKS
            + _POOL_LEVELS
            + """    restored = pooled
    for indices in reversed(switches):
        if method == "nearest":
            restored = F.interpolate(restored, scale_factor=2, mode="nearest")
        elif method == "bed_of_nails":
            restored = bed_of_nails_unpool(restored, 2)
        else:
            restored = max_unpool(restored, indices)
    return pooled, restored
""",
        ),
        (
            "returns (restored, pooled)",
            _ROUND_TRIP_HEAD
            + _ROUND_TRIP_CHECKS
            + _POOL_LEVELS
            + """    restored = pooled
    for indices in reversed(switches):
        if method == "nearest":
            restored = nearest_unpool(restored, 2)
        elif method == "bed_of_nails":
            restored = bed_of_nails_unpool(restored, 2)
        else:
            restored = max_unpool(restored, indices)
    return restored, pooled
""",
        ),
        (
            "pools only once whatever the levels",
            _ROUND_TRIP_HEAD
            + _ROUND_TRIP_CHECKS
            + """    pooled, indices = F.max_pool2d(x, 2, 2, return_indices=True)
    switches = [indices]
"""
            + _ROUND_TRIP_UP,
        ),
    ],
}

# Caught by the visible checks but not (yet) by the hidden tests: the harness sends every tensor to the kernel as a
# contiguous copy, so it cannot hand the student's function a transposed view. Kept here, outside WRONG_ANSWERS, so
# that the gap stays visible; it moves back once the harness can make views in the kernel.
NOT_CAUGHT_BY_HIDDEN_TESTS: dict[str, list[tuple[str, str]]] = {
    "ex2_nearest_unpool": [
        (
            "view fails on non-contiguous inputs",
            _NEAREST_SIGNATURE
            + _NEAREST_CHECKS
            + """    n, c, h, w = x.shape
    rows = torch.arange(h * scale) // scale
    cols = torch.arange(w * scale) // scale
    return x.view(n, c, h * w)[:, :, rows[:, None] * w + cols[None, :]]
""",
        ),
    ],
}

CORRECT_ALTERNATIVES: dict[str, list[tuple[str, str]]] = {
    "ex2_nearest_unpool": [
        (
            "repeat_interleave",
            _NEAREST_SIGNATURE
            + _NEAREST_CHECKS
            + """    return x.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
""",
        ),
    ],
    "ex3_bed_of_nails_unpool": [
        (
            "loops over the nails",
            _NAILS_SIGNATURE
            + _NEAREST_CHECKS
            + """    n, c, h, w = x.shape
    out = torch.zeros(n, c, h * scale, w * scale, dtype=x.dtype, device=x.device)
    for i in range(h):
        for j in range(w):
            out[:, :, i * scale, j * scale] = x[:, :, i, j]
    return out
""",
        ),
    ],
    "ex5_segnet": [
        (
            "pools with max_pool_with_switches",
            _SEGNET_HEAD
            + _SEGNET_PAD
            + """        switches = []
        for encoder in self.encoders:
            x, indices = max_pool_with_switches(encoder(x))
            switches.append(indices)
        for decoder, indices in zip(reversed(self.decoders), reversed(switches)):
            x = decoder(max_unpool(x, indices))
        return self.head(x)[..., :height, :width]
""",
        ),
    ],
}
