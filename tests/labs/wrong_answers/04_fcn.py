"""Realistic wrong answers for lab 04 (FCN): at least one per rule its exercises state.

``WRONG_ANSWERS[grade_id]`` lists ``(name, source)`` pairs: ``source`` replaces the whole answer cell
``grade_id`` of the solution. Each must be caught by a visible check of the student version and by the hidden
tests of that answer's own test cells. ``CORRECT_ALTERNATIVES`` are answers the text allows that must keep full
marks (e.g. one shared ×2 upsampler). Every variant is the solution's cell with one edit, so the rest of the
answer stays right; ``_edit`` fails loudly when the solution changes under it.

Rules the hidden tests cannot see, and why: `train_step`'s `non_blocking` copies and autocast, and
`images_per_second`'s `torch.cuda.synchronize`, act on CUDA only (grading runs on the CPU); `top_confusions`
modifying its input is caught by the visible check only (``NOT_CAUGHT_BY_HIDDEN_TESTS``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

SOLUTION = Path(__file__).resolve().parents[3] / "solutions" / "04_fcn" / "04_fcn.ipynb"
_CELLS = {
    c.metadata.get("nbgrader", {}).get("grade_id"): c.source
    for c in nbformat.read(SOLUTION, as_version=4).cells
    if c.metadata.get("nbgrader", {}).get("grade_id")
}


def _edit(grade_id: str, *pairs: str) -> str:
    """The solution's answer cell with each ``old`` replaced by ``new`` (pairs: old, new, old, new, ...)."""
    source = _CELLS[grade_id]
    for old, new in zip(pairs[::2], pairs[1::2], strict=True):
        assert source.count(old) == 1, f"{grade_id}: {old!r} is not in the solution exactly once"
        source = source.replace(old, new)
    return source


WRONG_ANSWERS: dict[str, list[tuple[str, str]]] = {
    "ex1_bilinear": [
        # rule: centre f - 1 for odd k
        (
            "kernel centre f - 1/2 for every k",
            _edit(
                "ex1_bilinear",
                "centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5",
                "centre = factor - 0.5",
            ),
        ),
        # rule: a float32 tensor
        (
            "kernel returned as float64",
            _edit("ex1_bilinear", "return torch.outer(tent, tent).float()", "return torch.outer(tent, tent)"),
        ),
        # rule: F.interpolate is not allowed
        (
            "kernel made with F.interpolate",
            _edit(
                "ex1_bilinear",
                "    factor = (kernel_size + 1) // 2\n",
                "    factor = (kernel_size + 1) // 2\n"
                "    if kernel_size % 2 == 0:  # the response of bilinear interpolation to one pixel\n"
                "        impulse = torch.zeros(1, 1, 3, 3)\n"
                "        impulse[0, 0, 1, 1] = 1\n"
                "        up = F.interpolate(impulse, scale_factor=factor, mode='bilinear', align_corners=False)\n"
                "        return up[0, 0, factor // 2:factor // 2 + kernel_size, factor // 2:factor // 2 + kernel_size]\n",
            ),
        ),
        # rule: no bias
        (
            "upsampler with a bias",
            _edit("ex1_bilinear", "padding=factor // 2, bias=False)", "padding=factor // 2)"),
        ),
        # rule: channel i -> channel i only
        (
            "upsampler mixes channels",
            _edit(
                "ex1_bilinear",
                "        layer.weight.zero_()\n",
                "",
                "        for c in range(channels):\n            layer.weight[c, c] = kernel",
                "        layer.weight[:] = kernel",
            ),
        ),
        # rule: kernel 2f, stride f, padding f/2
        (
            "upsampler padding f instead of f/2",
            _edit("ex1_bilinear", "padding=factor // 2, bias=False)", "padding=factor, bias=False)"),
        ),
        # rule: weights stay trainable
        (
            "upsampler weights frozen",
            _edit(
                "ex1_bilinear",
                "    return layer\n",
                "    layer.weight.requires_grad_(False)\n    return layer\n",
            ),
        ),
    ],
    "ex1_fcn": [
        # rule: pad bottom/right and crop (F.interpolate not allowed)
        (
            "resize the scores with F.interpolate instead of pad and crop",
            _edit(
                "ex1_fcn",
                "        x = F.pad(x, (0, -width % self.STRIDE, 0, -height % self.STRIDE))\n"
                "        return self.decode(self.encode(x))[..., :height, :width]",
                "        x = F.pad(x, (0, -width % self.STRIDE, 0, -height % self.STRIDE))\n"
                "        scores = self.decode(self.encode(x))\n"
                "        return F.interpolate(scores, size=(height, width), mode='bilinear', align_corners=False)",
            ),
        ),
        # rule: pad at the bottom and right
        (
            "pad on all sides, crop the centre",
            _edit(
                "ex1_fcn",
                "        x = F.pad(x, (0, -width % self.STRIDE, 0, -height % self.STRIDE))\n"
                "        return self.decode(self.encode(x))[..., :height, :width]",
                "        dh, dw = -height % self.STRIDE, -width % self.STRIDE\n"
                "        x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))\n"
                "        return self.decode(self.encode(x))[..., dh // 2:dh // 2 + height, dw // 2:dw // 2 + width]",
            ),
        ),
        # rule: crop back to H×W
        (
            "no crop",
            _edit(
                "ex1_fcn",
                "return self.decode(self.encode(x))[..., :height, :width]",
                "return self.decode(self.encode(x))",
            ),
        ),
        # rule: the skips of each variant, finest last
        (
            "skips in the wrong order",
            _edit(
                "ex1_fcn",
                'self.skips = ["pool4", "pool3", "pool2"][:skips]',
                'self.skips = ["pool2", "pool3", "pool4"][:skips]',
            ),
        ),
        # rule: the encoder table (pool5 has 8w channels)
        (
            "VGG-style doubling to 16w in to_pool5",
            _edit(
                "ex1_fcn",
                "self.to_pool5 = nn.Sequential(conv_bn_relu(8 * w, 8 * w), nn.MaxPool2d(2), conv_bn_relu(8 * w, 8 * w))",
                "self.to_pool5 = nn.Sequential(conv_bn_relu(8 * w, 16 * w), nn.MaxPool2d(2), conv_bn_relu(16 * w, 16 * w))",
                "self.score_pool5 = nn.Conv2d(8 * w, num_classes, 1)",
                "self.score_pool5 = nn.Conv2d(16 * w, num_classes, 1)",
            ),
        ),
        # rule: encode returns a dict
        (
            "encode returns a list",
            _edit(
                "ex1_fcn",
                "        return features\n",
                "        return list(features.values())\n",
                'scores = self.score_pool5(features["pool5"])',
                'features = dict(zip(("pool2", "pool3", "pool4", "pool5"), features))\n'
                '        scores = self.score_pool5(features["pool5"])',
            ),
        ),
        # rule: every upsampler comes from bilinear_upsampler
        (
            "×2 upsamplers with PyTorch's default init",
            _edit(
                "ex1_fcn",
                "self.up2 = nn.ModuleList(bilinear_upsampler(num_classes, 2) for _ in self.skips)",
                "self.up2 = nn.ModuleList(nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)\n"
                "                                 for _ in self.skips)",
            ),
        ),
        # rule: keep PyTorch's default initialisation of the 1×1 score layers
        (
            "skip score layers zero-initialised (as in the paper)",
            _edit(
                "ex1_fcn",
                "self.score_skip = nn.ModuleDict({n: nn.Conv2d(channels[n], num_classes, 1) for n in self.skips})",
                "self.score_skip = nn.ModuleDict({n: nn.Conv2d(channels[n], num_classes, 1) for n in self.skips})\n"
                "        for layer in self.score_skip.values():\n"
                "            nn.init.zeros_(layer.weight)\n"
                "            nn.init.zeros_(layer.bias)",
            ),
        ),
    ],
    "ex2_train_step": [
        # rule: pixels labelled 255 count for nothing
        (
            "no ignore_index",
            _edit(
                "ex2_train_step",
                "F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX)",
                "F.cross_entropy(logits.float(), masks.clamp_max(NUM_CLASSES - 1))",
            ),
        ),
        # rule: zero_grad before backward
        (
            "no zero_grad (gradients accumulate)",
            _edit("ex2_train_step", "    optimizer.zero_grad(set_to_none=True)\n", ""),
        ),
        # rule: scaler.step(optimizer), not optimizer.step()
        (
            "optimizer.step() after a scaled backward",
            _edit("ex2_train_step", "    scaler.step(optimizer)\n", "    optimizer.step()\n"),
        ),
        # rule: return a Python float
        ("returns the loss tensor", _edit("ex2_train_step", "return loss.item()", "return loss.detach()")),
    ],
    "ex2_throughput": [
        # rule: images, not batches
        ("counts batches", _edit("ex2_throughput", "seen += len(images)", "seen += 1")),
        # rule: warm-up untimed
        (
            "times the warm-up too",
            _edit(
                "ex2_throughput",
                "    stream = batches()\n",
                "    stream = batches()\n    start, seen = time.perf_counter(), 0\n",
                "    start, seen = time.perf_counter(), 0\n    for _ in range(steps):",
                "    for _ in range(steps):",
            ),
        ),
        # rule: start the loader again when it runs out
        (
            "stops when the loader runs out",
            _edit(
                "ex2_throughput",
                "    def batches():\n        while True:\n            yield from loader\n",
                "    def batches():\n        yield from loader\n",
                "    for _ in range(steps):\n        images, masks = next(stream)\n",
                "    for _ in range(steps):\n        try:\n            images, masks = next(stream)\n"
                "        except StopIteration:\n            break\n",
            ),
        ),
        # rule: train a copy
        (
            "trains the model passed in",
            _edit("ex2_throughput", "model = copy.deepcopy(model).to(device)", "model = model.to(device)"),
        ),
    ],
    "ex2_train": [
        # rule: save only the weights (state_dict)
        (
            "pickles the whole model",
            _edit("ex2_train", "torch.save(fcn.state_dict(), CHECKPOINT)", "torch.save(fcn, CHECKPOINT)"),
        ),
        # rule: FCN-4s
        ("trains FCN-8s", _edit("ex2_train", 'fcn = FCN(variant="4s")', 'fcn = FCN(variant="8s")')),
        # rule: fixed number of steps PLAN["steps"]
        (
            "a tenth of the steps",
            _edit(
                "ex2_train",
                'history = fit(fcn, train_loader, val_loader, steps=PLAN["steps"],',
                'history = fit(fcn, train_loader, val_loader, steps=PLAN["steps"] // 10,',
            ),
        ),
        # rule: miou = the last validation mIoU
        (
            "first validation mIoU in the results",
            _edit("ex2_train", '"miou": history["miou"][-1],', '"miou": history["miou"][0],'),
        ),
        # rule: images_per_s = steps × batch size / seconds
        (
            "steps per second as images/s",
            _edit(
                "ex2_train",
                '"images_per_s": history["step"][-1] * PLAN["batch_size"] / seconds,',
                '"images_per_s": history["step"][-1] / seconds,',
            ),
        ),
    ],
    "ex3_models": [
        # rule: 1×1 convolutions only (a pixel's colour only)
        (
            "baseline with a 3×3 first layer",
            _edit(
                "ex3_models",
                "self.net = nn.Sequential(nn.Conv2d(3, hidden, 1),",
                "self.net = nn.Sequential(nn.Conv2d(3, hidden, 3, padding=1),",
            ),
        ),
        # rule: nothing else (exactly Lab 01's PixelMLP)
        (
            "baseline with batch norm",
            _edit(
                "ex3_models",
                "nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True),",
                "nn.Conv2d(hidden, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),",
            ),
        ),
        # rule: logits, no softmax
        (
            "baseline ends with a softmax",
            _edit("ex3_models", "return self.net(x)", "return self.net(x).softmax(dim=1)"),
        ),
    ],
    "ex3_compare": [
        # rule: images/s = steps × batch size / seconds
        (
            "steps per second as images/s",
            _edit(
                "ex3_compare",
                '"images_per_s": run["step"][-1] * PLAN["batch_size"] / run["seconds"][-1],',
                '"images_per_s": run["step"][-1] / run["seconds"][-1],',
            ),
        ),
        # rule: score each model (once, at the end)
        (
            "scores the model before training it",
            _edit(
                "ex3_compare",
                "    run = fit(model, train_loader, None, time_budget_s=COMPARE_SECONDS,",
                "    scores = evaluate(model, val_loader, device=device)\n"
                "    run = fit(model, train_loader, None, time_budget_s=COMPARE_SECONDS,",
                "    scores = evaluate(model, val_loader, device=device)\n    comparison[name] = {",
                "    comparison[name] = {",
            ),
        ),
        # rule: the same budget COMPARE_SECONDS for every model
        (
            "half the budget",
            _edit("ex3_compare", "time_budget_s=COMPARE_SECONDS,", "time_budget_s=COMPARE_SECONDS / 2,"),
        ),
        # rule: every entry of CANDIDATES
        (
            "skips the unpooling decoder",
            _edit(
                "ex3_compare",
                'for name, make in tqdm(CANDIDATES.items(), desc="models", total=len(CANDIDATES)):',
                "for name, make in list(CANDIDATES.items())[:4]:",
            ),
        ),
    ],
    "ex4_confusions": [
        # rule: off-diagonal entries only
        (
            "includes the diagonal",
            _edit("ex4_confusions", "    fractions.fill_diagonal_(-1.0)  # never pick the diagonal\n", ""),
        ),
        # rule: normalise each row
        (
            "normalises columns",
            _edit(
                "ex4_confusions",
                "rows = cm.sum(dim=1, keepdim=True)",
                "rows = cm.sum(dim=0, keepdim=True)",
                "fractions = torch.where(rows > 0, cm / rows.clamp_min(1), torch.zeros_like(cm))",
                "fractions = torch.where(rows > 0, cm / rows.clamp_min(1), torch.zeros_like(cm)).clone()",
            ),
        ),
        # rule: a row with no pixels contributes nothing
        (
            "divides by zero for an empty row",
            _edit(
                "ex4_confusions",
                "fractions = torch.where(rows > 0, cm / rows.clamp_min(1), torch.zeros_like(cm))",
                "fractions = (cm / rows).nan_to_num(nan=1.0)",
            ),
        ),
        # rule: the fraction is a Python float
        ("fractions as tensors", _edit("ex4_confusions", "float(v)) for v, i in", "v) for v, i in")),
        # rule: float64
        (
            "computes in float32",
            _edit(
                "ex4_confusions",
                "cm = torch.as_tensor(cm, dtype=torch.float64)",
                "cm = torch.as_tensor(cm, dtype=torch.float32)",
            ),
        ),
    ],
}

# The test cells of each answer (ex1_fcn and ex2_train have several, with given and markdown cells between).
TEST_CELLS: dict[str, list[str]] = {
    "ex1_bilinear": ["ex1_bilinear_tests"],
    "ex1_fcn": ["ex1_fcn_shapes_tests", "ex1_fcn_skips_tests", "ex1_fcn_init_tests"],
    "ex2_train_step": ["ex2_train_step_tests"],
    "ex2_throughput": ["ex2_throughput_tests"],
    "ex2_train": ["ex2_checkpoint_tests", "ex2_quality_low_tests", "ex2_quality_high_tests"],
    "ex3_models": ["ex3_models_tests"],
    "ex3_compare": ["ex3_compare_tests"],
    "ex4_confusions": ["ex4_confusions_tests"],
}

# Caught by a visible check only: the harness cannot hold a tensor in the kernel to see it modified.
NOT_CAUGHT_BY_HIDDEN_TESTS: dict[str, list[tuple[str, str]]] = {
    "ex4_confusions": [
        # rule: do not modify cm (caught by the visible check only: see the module docstring)
        (
            "modifies a float64 matrix in place",
            _edit(
                "ex4_confusions",
                "rows = cm.sum(dim=1, keepdim=True)\n",
                "rows = cm.sum(dim=1, keepdim=True)\n    cm.fill_diagonal_(0)  # as_tensor did not copy a float64 matrix\n",
            ),
        ),
    ],
}

CORRECT_ALTERNATIVES: dict[str, list[tuple[str, str]]] = {
    "ex1_fcn": [
        (
            "one shared ×2 upsampler for every skip",
            _edit(
                "ex1_fcn",
                "self.up2 = nn.ModuleList(bilinear_upsampler(num_classes, 2) for _ in self.skips)",
                "shared = bilinear_upsampler(num_classes, 2)\n"
                "        self.up2 = nn.ModuleList(shared for _ in self.skips)",
            ),
        ),
    ],
}
