"""Realistic wrong answers to lab 01, at least one for every rule its exercises state.

``WRONG_ANSWERS`` maps the grade_id of an answer cell to ``(name, source)`` pairs; ``source`` replaces the whole
answer cell of the solution. Each one must fail a visible check of the student version and lose points in the
hidden tests of that answer's own test cells (``TEST_CELLS``), and nowhere else.

The sources keep the given part of each answer cell (signature, docstring, the checks outside the solution
region) and change only what a student writes, the way a student gets it wrong.
"""

from __future__ import annotations

# --- the given part of each answer cell (outside ### BEGIN SOLUTION) ------------------------------------------
_SEMANTIC = '''def semantic_from_instances(instance_map, instance_classes: dict, stuff) -> torch.Tensor:
    """Semantic map (int64 H x W): instance pixels get their instance's class, the others the stuff class."""
    instance_map = torch.as_tensor(instance_map).long()
    stuff = torch.as_tensor(stuff).long()
    if instance_map.shape != stuff.shape:
        raise ValueError(f"instance_map {tuple(instance_map.shape)} and stuff {tuple(stuff.shape)} differ in shape")
'''

_COLOR = '''def color_to_index(color_mask, palette, ignore_color=IGNORE_COLOR, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Colour mask (uint8 H x W x 3) -> class-index mask (int64 H x W); unknown colours raise ValueError."""
    color_mask = torch.as_tensor(color_mask)
    if color_mask.ndim != 3 or color_mask.shape[-1] != 3:
        raise ValueError(f"color_mask must have shape H x W x 3, got {tuple(color_mask.shape)}")
'''

_ONE_HOT = '''def one_hot(mask: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Integer mask (H, W) or (N, H, W) -> float32 one-hot (C, H, W) or (N, C, H, W); ignored pixels -> all zeros."""
    if mask.ndim not in (2, 3) or mask.is_floating_point():
        raise ValueError(f"mask must be an integer tensor H x W or N x H x W, got {mask.dtype} {tuple(mask.shape)}")
'''

_FROM_ONE_HOT = '''def from_one_hot(scores: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Arg-max over the class axis of (C, H, W) or (N, C, H, W) -> int64; all-zero columns -> ignore_index."""
    if scores.ndim not in (3, 4):
        raise ValueError(f"scores must be C x H x W or N x C x H x W, got shape {tuple(scores.shape)}")
'''

_LOSS = '''def pixel_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean cross-entropy over the non-ignored pixels; logits N x C x H x W, target N x H x W (int64)."""
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"expected logits N x C x H x W and target N x H x W, got {tuple(logits.shape)} and {tuple(target.shape)}")
'''

_CONFUSION = '''def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """int64 C x C matrix, cm[t, p] = number of pixels of true class t predicted as p; ignored targets skipped."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
'''

_RESIZE = '''from torchvision import tv_tensors
from torchvision.transforms import v2


def resize_pair(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize an image (bilinear, antialiased) and its mask (nearest) to size = (h, w), together."""
    if mask.is_floating_point():
        raise ValueError(f"mask must hold integer class indices, got {mask.dtype}")
    if image.shape[-2:] != mask.shape[-2:] or image.ndim != mask.ndim + 1:
        raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)} do not match")
'''

# --- correct pieces, for answers that get only one of two functions wrong -------------------------------------
_ONE_HOT_OK = """    valid = mask != ignore_index
    if ((mask < 0) | (mask >= num_classes))[valid].any():
        raise ValueError("mask holds values that are neither a class nor ignore_index")
    classes = torch.arange(num_classes).view(num_classes, 1, 1)
    return ((mask.unsqueeze(-3) == classes) & valid.unsqueeze(-3)).float()
"""

_FROM_ONE_HOT_OK = """    labels = scores.argmax(dim=-3)
    return torch.where((scores == 0).all(dim=-3), torch.full_like(labels, ignore_index), labels)
"""

_SCORES_OK = {
    "acc": """    cm = cm.double()
    return float(cm.diagonal().sum() / cm.sum())
""",
    "iou": """    cm = cm.double()
    tp = cm.diagonal()
    return tp / (cm.sum(dim=0) + cm.sum(dim=1) - tp)
""",
    "miou": """    return float(torch.nanmean(iou_per_class(cm)))
""",
}


def _one_hot_pair(one_hot_body: str = _ONE_HOT_OK, from_one_hot_body: str = _FROM_ONE_HOT_OK) -> str:
    return _ONE_HOT + one_hot_body + "\n\n" + _FROM_ONE_HOT + from_one_hot_body


def _scores(
    acc: str = _SCORES_OK["acc"], iou: str = _SCORES_OK["iou"], miou: str = _SCORES_OK["miou"]
) -> str:
    return (
        "def pixel_accuracy(cm: torch.Tensor) -> float:\n" + acc + "\n\n"
        "def iou_per_class(cm: torch.Tensor) -> torch.Tensor:\n" + iou + "\n\n"
        "def mean_iou(cm: torch.Tensor) -> float:\n" + miou
    )


def _model(init: str, forward: str = "        return self.layers(x)\n") -> str:
    return (
        "class PixelMLP(nn.Module):\n"
        "    def __init__(self, in_channels: int = 3, num_classes: int = NUM_CLASSES, hidden: int = 32):\n"
        "        super().__init__()\n" + init + "\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n" + forward
    )


_CONVS = """        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size={k}{pad}{bias}),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, kernel_size={k}{pad}{bias}),
            nn.ReLU(),
            nn.Conv2d(hidden, num_classes, kernel_size={k}{pad}{bias}),
        )
"""


def _convs(k: int = 1, pad: str = "", bias: str = "") -> str:
    return _CONVS.format(k=k, pad=pad, bias=bias)


WRONG_ANSWERS: dict[str, list[tuple[str, str]]] = {
    "ex1_semantic": [
        # rule: an instance pixel gets its instance's *class*
        (
            "instance ids instead of classes",
            _SEMANTIC
            + """    semantic = stuff.clone()
    for k in torch.unique(instance_map).tolist():
        if k == 0:
            continue
        if k not in instance_classes:
            raise ValueError(f"instance id {k} is not in instance_classes")
        semantic[instance_map == k] = k
    return semantic
""",
        ),
        # rule: id 0 means "no instance": read stuff there (forgetting to skip 0 looks it up as an instance)
        (
            "id 0 looked up as an instance",
            _SEMANTIC
            + """    semantic = stuff.clone()
    for k in torch.unique(instance_map).tolist():
        semantic[instance_map == k] = int(instance_classes[k])
    return semantic
""",
        ),
        # rule: an id missing from instance_classes raises ValueError
        (
            "missing id silently becomes background",
            _SEMANTIC
            + """    semantic = stuff.clone()
    for k in torch.unique(instance_map).tolist():
        if k != 0:
            semantic[instance_map == k] = int(instance_classes.get(k, 0))
    return semantic
""",
        ),
        # rule: ... a ValueError *that names the id*
        (
            "ValueError without the id",
            _SEMANTIC
            + """    semantic = stuff.clone()
    for k in torch.unique(instance_map).tolist():
        if k == 0:
            continue
        if k not in instance_classes:
            raise ValueError("instance_map holds an id that instance_classes lacks")
        semantic[instance_map == k] = int(instance_classes[k])
    return semantic
""",
        ),
        # rule: do not modify the inputs (stuff may share memory with the caller's tensor or array)
        (
            "writes into stuff",
            _SEMANTIC
            + """    semantic = stuff
    for k in torch.unique(instance_map).tolist():
        if k == 0:
            continue
        if k not in instance_classes:
            raise ValueError(f"instance id {k} is not in instance_classes")
        semantic[instance_map == k] = int(instance_classes[k])
    return semantic
""",
        ),
        # rule: the result is an int64 map
        (
            "float map",
            _SEMANTIC
            + """    semantic = torch.zeros(instance_map.shape)
    semantic[instance_map == 0] = stuff[instance_map == 0].float()
    for k in torch.unique(instance_map).tolist():
        if k == 0:
            continue
        if k not in instance_classes:
            raise ValueError(f"instance id {k} is not in instance_classes")
        semantic[instance_map == k] = instance_classes[k]
    return semantic
""",
        ),
    ],
    "ex2_color": [
        # rule: any other colour is an error (not silently ignored)
        (
            "unknown colours become ignore",
            _COLOR
            + """    index = torch.full(color_mask.shape[:2], ignore_index, dtype=torch.int64)
    for c, colour in enumerate(palette):
        index[(color_mask == torch.tensor(colour, dtype=torch.uint8)).all(dim=-1)] = c
    return index
""",
        ),
        # rule: the ValueError says how many pixels have an unknown colour and shows one of them
        (
            "error without the count",
            _COLOR
            + """    index = torch.full(color_mask.shape[:2], -1, dtype=torch.int64)
    for value, colour in [*enumerate(palette), (ignore_index, ignore_color)]:
        index[(color_mask == torch.tensor(colour, dtype=torch.uint8)).all(dim=-1)] = value
    if (index == -1).any():
        raise ValueError("the mask has colours that are not in the palette")
    return index
""",
        ),
        # rule: a pixel of ignore_color gets ignore_index (the argument, not 255)
        (
            "ignore_index hard-coded",
            _COLOR
            + """    index = torch.full(color_mask.shape[:2], -1, dtype=torch.int64)
    for value, colour in [*enumerate(palette), (255, ignore_color)]:
        index[(color_mask == torch.tensor(colour, dtype=torch.uint8)).all(dim=-1)] = value
    unknown = index == -1
    if unknown.any():
        row, col = unknown.nonzero()[0].tolist()
        raise ValueError(f"{int(unknown.sum())} pixels have colours not in the palette, e.g. "
                         f"{tuple(color_mask[row, col].tolist())} at row {row}, column {col}")
    return index
""",
        ),
        # rule: a pixel of colour palette[c] gets c -- all three channels must match
        (
            "one matching channel is enough",
            _COLOR
            + """    index = torch.full(color_mask.shape[:2], -1, dtype=torch.int64)
    for value, colour in [*enumerate(palette), (ignore_index, ignore_color)]:
        index[(color_mask == torch.tensor(colour, dtype=torch.uint8)).any(dim=-1)] = value
    unknown = index == -1
    if unknown.any():
        row, col = unknown.nonzero()[0].tolist()
        raise ValueError(f"{int(unknown.sum())} pixels have colours not in the palette, e.g. "
                         f"{tuple(color_mask[row, col].tolist())} at row {row}, column {col}")
    return index
""",
        ),
        # rule: the result is int64
        (
            "uint8 indices",
            _COLOR
            + """    index = torch.full(color_mask.shape[:2], 254, dtype=torch.uint8)
    for value, colour in [*enumerate(palette), (ignore_index, ignore_color)]:
        index[(color_mask == torch.tensor(colour, dtype=torch.uint8)).all(dim=-1)] = value
    unknown = index == 254
    if unknown.any():
        row, col = unknown.nonzero()[0].tolist()
        raise ValueError(f"{int(unknown.sum())} pixels have colours not in the palette, e.g. "
                         f"{tuple(color_mask[row, col].tolist())} at row {row}, column {col}")
    return index
""",
        ),
    ],
    "ex2_one_hot": [
        # rule: the class axis goes just before H
        (
            "classes last",
            _one_hot_pair(
                one_hot_body="""    valid = mask != ignore_index
    if ((mask < 0) | (mask >= num_classes))[valid].any():
        raise ValueError("mask holds values that are neither a class nor ignore_index")
    return ((mask.unsqueeze(-1) == torch.arange(num_classes)) & valid.unsqueeze(-1)).float()
"""
            ),
        ),
        # rule: (N, H, W) -> (N, C, H, W): the class axis is not the first one for a batch
        (
            "class axis first for a batch",
            _one_hot_pair(
                one_hot_body="""    valid = mask != ignore_index
    if ((mask < 0) | (mask >= num_classes))[valid].any():
        raise ValueError("mask holds values that are neither a class nor ignore_index")
    classes = torch.arange(num_classes).view(num_classes, *([1] * mask.ndim))
    return ((mask.unsqueeze(0) == classes) & valid.unsqueeze(0)).float()
"""
            ),
        ),
        # rule: an ignored pixel gets an all-zero column
        (
            "ignored pixels become class 0",
            _one_hot_pair(
                one_hot_body="""    valid = mask != ignore_index
    if ((mask < 0) | (mask >= num_classes))[valid].any():
        raise ValueError("mask holds values that are neither a class nor ignore_index")
    safe = torch.where(valid, mask, torch.zeros_like(mask))
    return (safe.unsqueeze(-3) == torch.arange(num_classes).view(num_classes, 1, 1)).float()
"""
            ),
        ),
        # rule: the ignore_index argument, not 255
        (
            "ignore_index hard-coded",
            _one_hot_pair(
                one_hot_body="""    valid = mask != 255
    if ((mask < 0) | (mask >= num_classes))[valid].any():
        raise ValueError("mask holds values that are neither a class nor ignore_index")
    classes = torch.arange(num_classes).view(num_classes, 1, 1)
    return ((mask.unsqueeze(-3) == classes) & valid.unsqueeze(-3)).float()
"""
            ),
        ),
        # rule: a value that is neither a class index nor ignore_index raises ValueError
        (
            "invalid values give zero columns",
            _one_hot_pair(
                one_hot_body="""    valid = mask != ignore_index
    classes = torch.arange(num_classes).view(num_classes, 1, 1)
    return ((mask.unsqueeze(-3) == classes) & valid.unsqueeze(-3)).float()
"""
            ),
        ),
        # rule: float32
        (
            "int64 one-hot",
            _one_hot_pair(
                one_hot_body="""    valid = mask != ignore_index
    if ((mask < 0) | (mask >= num_classes))[valid].any():
        raise ValueError("mask holds values that are neither a class nor ignore_index")
    classes = torch.arange(num_classes).view(num_classes, 1, 1)
    return ((mask.unsqueeze(-3) == classes) & valid.unsqueeze(-3)).long()
"""
            ),
        ),
        # rule: F.one_hot is not allowed
        (
            "calls F.one_hot",
            _one_hot_pair(
                one_hot_body="""    valid = mask != ignore_index
    if ((mask < 0) | (mask >= num_classes))[valid].any():
        raise ValueError("mask holds values that are neither a class nor ignore_index")
    hot = F.one_hot(torch.where(valid, mask, 0).long(), num_classes).movedim(-1, -3).float()
    return hot * valid.unsqueeze(-3)
"""
            ),
        ),
        # rule: from_one_hot: a pixel whose column is all zeros gets ignore_index
        (
            "from_one_hot: plain arg-max",
            _one_hot_pair(
                from_one_hot_body="""    return scores.argmax(dim=-3)
"""
            ),
        ),
        # rule: from_one_hot: the ignore_index argument, not 255
        (
            "from_one_hot: ignore_index hard-coded",
            _one_hot_pair(
                from_one_hot_body="""    labels = scores.argmax(dim=-3)
    return torch.where((scores == 0).all(dim=-3), torch.full_like(labels, 255), labels)
"""
            ),
        ),
        # rule: from_one_hot works for (N, C, H, W): the class axis is -3
        (
            "from_one_hot: arg-max over the first axis",
            _one_hot_pair(
                from_one_hot_body="""    labels = scores.argmax(dim=0)
    return torch.where((scores == 0).all(dim=0), torch.full_like(labels, ignore_index), labels)
"""
            ),
        ),
        # rule: from_one_hot works for network scores alike (only an all-zero column is "ignored")
        (
            "from_one_hot: no positive score means ignored",
            _one_hot_pair(
                from_one_hot_body="""    labels = scores.argmax(dim=-3)
    return torch.where(scores.amax(dim=-3) <= 0, torch.full_like(labels, ignore_index), labels)
"""
            ),
        ),
    ],
    "ex3_loss": [
        # rule: numerically stable (log-sum-exp trick)
        (
            "naive log-sum-exp",
            _LOSS
            + """    log_sum_exp = logits.exp().sum(dim=1).log()
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = log_sum_exp - logits.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    return per_pixel[valid].sum() / valid.sum()
""",
        ),
        # rule: numerically stable: softmax followed by log is not
        (
            "softmax, then log",
            _LOSS
            + """    shifted = logits - logits.max(dim=1, keepdim=True).values
    probs = shifted.exp() / shifted.exp().sum(dim=1, keepdim=True)
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = -probs.gather(1, safe_target.unsqueeze(1)).squeeze(1).log()
    return per_pixel[valid].sum() / valid.sum()
""",
        ),
        # rule: L = log-sum-exp minus the target score (here the shift m is lost on one side)
        (
            "shifted log-sum-exp, unshifted target score",
            _LOSS
            + """    shifted = logits - logits.max(dim=1, keepdim=True).values
    log_sum_exp = shifted.exp().sum(dim=1).log()
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = log_sum_exp - logits.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    return per_pixel[valid].sum() / valid.sum()
""",
        ),
        # rule: the mean is over the pixels that are not ignored
        (
            "mean over every pixel",
            _LOSS
            + """    shifted = logits - logits.max(dim=1, keepdim=True).values
    log_sum_exp = shifted.exp().sum(dim=1).log()
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = log_sum_exp - shifted.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    return per_pixel[valid].sum() / target.numel()
""",
        ),
        # rule: ignored pixels are left out (not counted as class 0)
        (
            "ignored pixels count as class 0",
            _LOSS
            + """    shifted = logits - logits.max(dim=1, keepdim=True).values
    log_sum_exp = shifted.exp().sum(dim=1).log()
    safe_target = torch.where(target != ignore_index, target, torch.zeros_like(target))
    per_pixel = log_sum_exp - shifted.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    return per_pixel.mean()
""",
        ),
        # rule: all pixels ignored -> NaN, not 0
        (
            "zero when every pixel is ignored",
            _LOSS
            + """    valid = target != ignore_index
    if not valid.any():
        return logits.sum() * 0.0
    shifted = logits - logits.max(dim=1, keepdim=True).values
    log_sum_exp = shifted.exp().sum(dim=1).log()
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = log_sum_exp - shifted.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    return per_pixel[valid].sum() / valid.sum()
""",
        ),
        # rule: the ignore_index argument (e.g. -100), not 255
        (
            "ignore_index hard-coded",
            _LOSS
            + """    shifted = logits - logits.max(dim=1, keepdim=True).values
    log_sum_exp = shifted.exp().sum(dim=1).log()
    valid = target != 255
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = log_sum_exp - shifted.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    return per_pixel[valid].sum() / valid.sum()
""",
        ),
        # rule: differentiable: no .item(), no Python floats in the computation
        (
            "Python floats (not differentiable)",
            _LOSS
            + """    total, count = 0.0, 0
    shifted = logits - logits.max(dim=1, keepdim=True).values
    log_sum_exp = shifted.exp().sum(dim=1).log()
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = log_sum_exp - shifted.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    total = per_pixel[valid].sum().item()
    count = int(valid.sum().item())
    return torch.tensor(total / count if count else float("nan"), dtype=logits.dtype)
""",
        ),
        # rule: a 0-dim tensor equal to F.cross_entropy's, so of the logits' dtype
        (
            "computes in float64",
            _LOSS
            + """    x = logits.double()  # "to be safe"
    shifted = x - x.max(dim=1, keepdim=True).values
    log_sum_exp = shifted.exp().sum(dim=1).log()
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = log_sum_exp - shifted.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    return per_pixel[valid].sum() / valid.sum()
""",
        ),
        # rule: the built-in losses are not allowed
        (
            "calls F.log_softmax",
            _LOSS
            + """    log_probs = F.log_softmax(logits, dim=1)
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = -log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    return per_pixel[valid].sum() / valid.sum()
""",
        ),
        (
            "calls torch.logsumexp",
            _LOSS
            + """    log_sum_exp = torch.logsumexp(logits, dim=1)
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = log_sum_exp - logits.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    return per_pixel[valid].sum() / valid.sum()
""",
        ),
        (
            "calls F.cross_entropy",
            _LOSS
            + """    return F.cross_entropy(logits, target, ignore_index=ignore_index)
""",
        ),
    ],
    "ex4_confusion": [
        # rule: rows = truth, columns = prediction
        (
            "rows are predictions",
            _CONFUSION
            + """    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError("target holds values that are neither a class nor ignore_index")
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError("pred holds values that are not classes")
    return torch.bincount(p * num_classes + t, minlength=num_classes**2).reshape(num_classes, num_classes)
""",
        ),
        # rule: pixels whose *target* is ignore_index are left out, whatever is predicted there
        (
            "skips by prediction",
            _CONFUSION
            + """    keep = pred != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError("target holds values that are neither a class nor ignore_index")
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError("pred holds values that are not classes")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)
""",
        ),
        # rule: only a prediction *at a counted pixel* must be a class
        (
            "checks predictions at ignored pixels too",
            _CONFUSION
            + """    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        raise ValueError("pred holds values that are not classes")
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError("target holds values that are neither a class nor ignore_index")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)
""",
        ),
        # rule: a target value that is neither a class nor ignore_index, or an invalid prediction, raises ValueError
        (
            "no ValueError for invalid values",
            _CONFUSION
            + """    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    counts = torch.bincount(t * num_classes + p, minlength=num_classes**2)
    return counts[: num_classes**2].reshape(num_classes, num_classes)
""",
        ),
        # rule: the ignore_index argument, not 255
        (
            "ignore_index hard-coded",
            _CONFUSION
            + """    keep = target != 255
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError("target holds values that are neither a class nor ignore_index")
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError("pred holds values that are not classes")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)
""",
        ),
        # rule: any shape (H x W, N x H x W, ...)
        (
            "only H x W inputs",
            _CONFUSION
            + """    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for i in range(target.shape[0]):
        for j in range(target.shape[1]):
            t, p = int(target[i, j]), int(pred[i, j])
            if t == ignore_index:
                continue
            if not (0 <= t < num_classes and 0 <= p < num_classes):
                raise ValueError("a value is not a class")
            cm[t, p] += 1
    return cm
""",
        ),
        # rule: int64
        (
            "float counts",
            _CONFUSION
            + """    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError("target holds values that are neither a class nor ignore_index")
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError("pred holds values that are not classes")
    cm = torch.zeros(num_classes, num_classes)
    cm.index_put_((t, p), torch.ones(len(t)), accumulate=True)
    return cm
""",
        ),
        # rule: helpers.metrics is not allowed
        (
            "calls helpers.metrics",
            _CONFUSION
            + """    return metrics.confusion_matrix(pred, target, num_classes, ignore_index=ignore_index)
""",
        ),
    ],
    "ex4_scores": [
        # rule: IoU = TP / (TP + FP + FN) (FP = column sum - TP: here TP is counted twice)
        (
            "TP counted twice in the union",
            _scores(
                iou="""    cm = cm.double()
    tp = cm.diagonal()
    return tp / (cm.sum(dim=0) + cm.sum(dim=1))
"""
            ),
        ),
        # rule: a class absent from truth and prediction has IoU NaN ...
        (
            "undefined IoU is 0",
            _scores(
                iou="""    cm = cm.double()
    tp = cm.diagonal()
    return tp / (cm.sum(dim=0) + cm.sum(dim=1) - tp).clamp(min=1)
"""
            ),
        ),
        # rule: ... and mean_iou leaves it out
        (
            "NaN counted as 0 in the mean",
            _scores(
                miou="""    return float(torch.nan_to_num(iou_per_class(cm)).mean())
"""
            ),
        ),
        # rule: a class that is predicted but absent from the truth has IoU 0 and is counted
        (
            "class absent from the truth is undefined",
            _scores(
                iou="""    cm = cm.double()
    tp = cm.diagonal()
    iou = tp / (cm.sum(dim=0) + cm.sum(dim=1) - tp)
    return torch.where(cm.sum(dim=1) == 0, torch.full_like(iou, float("nan")), iou)
"""
            ),
        ),
        # rule: pixel accuracy is NaN when no pixel was counted
        (
            "empty matrix has accuracy 0",
            _scores(
                acc="""    total = cm.sum()
    if total == 0:
        return 0.0
    return float(cm.diagonal().sum() / total)
"""
            ),
        ),
        # rule: pixel_accuracy and mean_iou return Python floats
        (
            "tensors instead of floats",
            _scores(
                acc="""    cm = cm.double()
    return cm.diagonal().sum() / cm.sum()
""",
                miou="""    return torch.nanmean(iou_per_class(cm))
""",
            ),
        ),
        # rule: iou_per_class returns float64
        (
            "float32 IoU",
            _scores(
                iou="""    cm = cm.float()
    tp = cm.diagonal()
    return tp / (cm.sum(dim=0) + cm.sum(dim=1) - tp)
"""
            ),
        ),
        # rule: helpers.metrics is not allowed
        (
            "calls helpers.metrics",
            _scores(
                acc="""    return metrics.pixel_accuracy(cm)
""",
                iou="""    return metrics.iou_per_class(cm)
""",
                miou="""    return metrics.mean_iou(cm)
""",
            ),
        ),
    ],
    "ex5_resize": [
        # rule: the mask is resized with nearest neighbour, never interpolated
        (
            "bilinear mask, rounded",
            _RESIZE
            + """    batch = image if image.ndim == 4 else image[None]
    masks = (mask if mask.ndim == 3 else mask[None])[:, None].float()
    out_image = F.interpolate(batch, size=size, mode="bilinear", antialias=True)
    out_mask = F.interpolate(masks, size=size, mode="bilinear").round().to(mask.dtype)[:, 0]
    return (out_image, out_mask) if image.ndim == 4 else (out_image[0], out_mask[0])
""",
        ),
        # rule: the image bilinearly *with antialiasing*
        (
            "image without antialias",
            _RESIZE
            + """    resize = v2.Resize(list(size), antialias=False)
    out_image, out_mask = resize(tv_tensors.Image(image), tv_tensors.Mask(mask))
    return out_image.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor)
""",
        ),
        # rule: the result keeps the mask's dtype
        (
            "mask comes back as int64",
            _RESIZE
            + """    resize = v2.Resize(list(size), antialias=True)
    out_image, out_mask = resize(tv_tensors.Image(image), tv_tensors.Mask(mask))
    return out_image.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor).long()
""",
        ),
        # rule: size = (h, w)
        (
            "size read as (w, h)",
            _RESIZE
            + """    resize = v2.Resize([size[1], size[0]], antialias=True)
    out_image, out_mask = resize(tv_tensors.Image(image), tv_tensors.Mask(mask))
    return out_image.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor)
""",
        ),
        # rule: batches (N, 3, H, W) with (N, H, W) work too
        (
            "single images only",
            _RESIZE
            + """    out_image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]
    out_mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].to(mask.dtype)
    return out_image, out_mask
""",
        ),
        # rule: do not modify the inputs
        (
            "unsqueezes the inputs in place",
            _RESIZE
            + """    if image.ndim == 3:
        image.unsqueeze_(0)
        mask.unsqueeze_(0)
    out_image = F.interpolate(image, size=size, mode="bilinear", antialias=True)
    out_mask = F.interpolate(mask[:, None].float(), size=size, mode="nearest")[:, 0].to(mask.dtype)
    if out_image.shape[0] == 1:
        return out_image[0], out_mask[0]
    return out_image, out_mask
""",
        ),
    ],
    "ex6_model": [
        # rule: logits, no softmax
        ("softmax at the end", _model(_convs(), "        return torch.softmax(self.layers(x), dim=1)\n")),
        # rule: 1x1 convolutions only (a pixel's output depends on that pixel only)
        ("3x3 convolutions", _model(_convs(k=3, pad=", padding=1"))),
        # rule: ReLU between the convolutions
        (
            "no ReLU",
            _model("""        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.Conv2d(hidden, hidden, 1), nn.Conv2d(hidden, num_classes, 1)
        )
"""),
        ),
        # rule: no other layers (no normalisation)
        (
            "batch norm added",
            _model("""        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, num_classes, 1),
        )
"""),
        ),
        # rule: exactly three convolutions
        (
            "two convolutions",
            _model("""        self.layers = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, num_classes, 1))
"""),
        ),
        # rule: the hidden width is the `hidden` argument
        (
            "hidden width fixed at 32",
            _model("""        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, 32, 1), nn.ReLU(), nn.Conv2d(32, 32, 1), nn.ReLU(), nn.Conv2d(32, num_classes, 1)
        )
"""),
        ),
        # rule: Conv2d(in, out, 1) as written: with a bias
        ("convolutions without bias", _model(_convs(bias=", bias=False"))),
        # rule: an nn.Module whose layers are its parameters (a plain list registers none: nothing would train)
        (
            "layers in a plain list",
            _model(
                """        self.layers = [nn.Conv2d(in_channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                       nn.Conv2d(hidden, num_classes, 1)]
""",
                """        for layer in self.layers:
            x = layer(x)
        return x
""",
            ),
        ),
    ],
}

TEST_CELLS: dict[str, tuple[str, ...]] = {
    "ex1_semantic": ("ex1_semantic_tests",),
    "ex2_color": ("ex2_color_tests",),
    "ex2_one_hot": ("ex2_one_hot_tests",),
    "ex3_loss": ("ex3_loss_tests", "ex3_loss_edge_tests"),
    "ex4_confusion": ("ex4_confusion_tests",),
    "ex4_scores": ("ex4_scores_tests",),
    "ex5_resize": ("ex5_resize_tests",),
    "ex6_model": ("ex6_model_tests",),
}
