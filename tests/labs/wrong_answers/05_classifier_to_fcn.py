"""Realistic wrong answers for lab 05, at least one per rule an exercise's text states.

Data only: ``WRONG_ANSWERS[grade_id_of_answer_cell]`` is a list of ``(name, source)`` pairs, where ``source``
replaces that answer cell's whole source in the solution notebook. Each one must be caught by a visible check in
the student version and by the hidden tests, and lose points only in its own exercise's test cells (and those of
the exercises that declare it as a prerequisite: ex2_labels -> ex2_train_tests and Exercise 4; ex2_train and
ex3_convolutionalize -> Exercise 4; ex3_convolutionalize and ex5_upblock -> ex5_compare_tests).
"""

# fmt: off
WRONG_ANSWERS = {
    'ex1_receptive_field': [
        ('dilation ignored (k instead of d(k-1)+1)', '''def receptive_field(layers) -> list[dict]:
    """Per layer: {"rf": receptive field, "stride": total stride, "offset": first input pixel of output 0}."""
    rf, jump, offset, out = 1, 1, 0, []
    for index, (kernel, stride, padding, dilation) in enumerate(layers):
        if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
            raise ValueError(f"layer {index}: {(kernel, stride, padding, dilation)} is not a valid "
                             "(kernel>=1, stride>=1, padding>=0, dilation>=1) layer")
        offset -= padding * jump
        rf += (kernel - 1) * jump
        jump *= stride
        out.append({"rf": int(rf), "stride": int(jump), "offset": int(offset)})
    return out


def input_window(layers, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Half-open (top, bottom, left, right) input window of the last layer's output pixel (i, j), clipped."""
    last = receptive_field(layers)[-1]
    top = last["offset"] + i * last["stride"]
    left = last["offset"] + j * last["stride"]
    return max(0, top), min(height, top + last["rf"]), max(0, left), min(width, left + last["rf"])
'''),
        ('grows by the new stride instead of the previous jump', '''def receptive_field(layers) -> list[dict]:
    """Per layer: {"rf": receptive field, "stride": total stride, "offset": first input pixel of output 0}."""
    rf, jump, offset, out = 1, 1, 0, []
    for index, (kernel, stride, padding, dilation) in enumerate(layers):
        if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
            raise ValueError(f"layer {index}: {(kernel, stride, padding, dilation)} is not a valid "
                             "(kernel>=1, stride>=1, padding>=0, dilation>=1) layer")
        offset -= padding * jump
        jump *= stride
        rf += dilation * (kernel - 1) * jump
        out.append({"rf": int(rf), "stride": int(jump), "offset": int(offset)})
    return out


def input_window(layers, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Half-open (top, bottom, left, right) input window of the last layer's output pixel (i, j), clipped."""
    last = receptive_field(layers)[-1]
    top = last["offset"] + i * last["stride"]
    left = last["offset"] + j * last["stride"]
    return max(0, top), min(height, top + last["rf"]), max(0, left), min(width, left + last["rf"])
'''),
        ('offset shifted by the padding only, not padding × jump', '''def receptive_field(layers) -> list[dict]:
    """Per layer: {"rf": receptive field, "stride": total stride, "offset": first input pixel of output 0}."""
    rf, jump, offset, out = 1, 1, 0, []
    for index, (kernel, stride, padding, dilation) in enumerate(layers):
        if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
            raise ValueError(f"layer {index}: {(kernel, stride, padding, dilation)} is not a valid "
                             "(kernel>=1, stride>=1, padding>=0, dilation>=1) layer")
        offset -= padding
        rf += dilation * (kernel - 1) * jump
        jump *= stride
        out.append({"rf": int(rf), "stride": int(jump), "offset": int(offset)})
    return out


def input_window(layers, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Half-open (top, bottom, left, right) input window of the last layer's output pixel (i, j), clipped."""
    last = receptive_field(layers)[-1]
    top = last["offset"] + i * last["stride"]
    left = last["offset"] + j * last["stride"]
    return max(0, top), min(height, top + last["rf"]), max(0, left), min(width, left + last["rf"])
'''),
        ('no ValueError for an invalid layer', '''def receptive_field(layers) -> list[dict]:
    """Per layer: {"rf": receptive field, "stride": total stride, "offset": first input pixel of output 0}."""
    rf, jump, offset, out = 1, 1, 0, []
    for index, (kernel, stride, padding, dilation) in enumerate(layers):
        if False:
            raise ValueError(f"layer {index}: {(kernel, stride, padding, dilation)} is not a valid "
                             "(kernel>=1, stride>=1, padding>=0, dilation>=1) layer")
        offset -= padding * jump
        rf += dilation * (kernel - 1) * jump
        jump *= stride
        out.append({"rf": int(rf), "stride": int(jump), "offset": int(offset)})
    return out


def input_window(layers, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Half-open (top, bottom, left, right) input window of the last layer's output pixel (i, j), clipped."""
    last = receptive_field(layers)[-1]
    top = last["offset"] + i * last["stride"]
    left = last["offset"] + j * last["stride"]
    return max(0, top), min(height, top + last["rf"]), max(0, left), min(width, left + last["rf"])
'''),
        ('values returned as floats', '''def receptive_field(layers) -> list[dict]:
    """Per layer: {"rf": receptive field, "stride": total stride, "offset": first input pixel of output 0}."""
    rf, jump, offset, out = 1, 1, 0, []
    for index, (kernel, stride, padding, dilation) in enumerate(layers):
        if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
            raise ValueError(f"layer {index}: {(kernel, stride, padding, dilation)} is not a valid "
                             "(kernel>=1, stride>=1, padding>=0, dilation>=1) layer")
        offset -= padding * jump
        rf += dilation * (kernel - 1) * jump
        jump *= stride
        out.append({"rf": float(rf), "stride": float(jump), "offset": float(offset)})
    return out


def input_window(layers, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Half-open (top, bottom, left, right) input window of the last layer's output pixel (i, j), clipped."""
    last = receptive_field(layers)[-1]
    top = last["offset"] + i * last["stride"]
    left = last["offset"] + j * last["stride"]
    return max(0, top), min(height, top + last["rf"]), max(0, left), min(width, left + last["rf"])
'''),
        ('layers read by attribute (fails for plain tuples)', '''def receptive_field(layers) -> list[dict]:
    """Per layer: {"rf": receptive field, "stride": total stride, "offset": first input pixel of output 0}."""
    rf, jump, offset, out = 1, 1, 0, []
    for index, layer in enumerate(layers):
        kernel, stride, padding, dilation = layer.kernel, layer.stride, layer.padding, layer.dilation
        if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
            raise ValueError(f"layer {index}: {(kernel, stride, padding, dilation)} is not a valid "
                             "(kernel>=1, stride>=1, padding>=0, dilation>=1) layer")
        offset -= padding * jump
        rf += dilation * (kernel - 1) * jump
        jump *= stride
        out.append({"rf": int(rf), "stride": int(jump), "offset": int(offset)})
    return out


def input_window(layers, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Half-open (top, bottom, left, right) input window of the last layer's output pixel (i, j), clipped."""
    last = receptive_field(layers)[-1]
    top = last["offset"] + i * last["stride"]
    left = last["offset"] + j * last["stride"]
    return max(0, top), min(height, top + last["rf"]), max(0, left), min(width, left + last["rf"])
'''),
        ('input_window not clipped to the image', '''def receptive_field(layers) -> list[dict]:
    """Per layer: {"rf": receptive field, "stride": total stride, "offset": first input pixel of output 0}."""
    rf, jump, offset, out = 1, 1, 0, []
    for index, (kernel, stride, padding, dilation) in enumerate(layers):
        if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
            raise ValueError(f"layer {index}: {(kernel, stride, padding, dilation)} is not a valid "
                             "(kernel>=1, stride>=1, padding>=0, dilation>=1) layer")
        offset -= padding * jump
        rf += dilation * (kernel - 1) * jump
        jump *= stride
        out.append({"rf": int(rf), "stride": int(jump), "offset": int(offset)})
    return out


def input_window(layers, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Half-open (top, bottom, left, right) input window of the last layer's output pixel (i, j), clipped."""
    last = receptive_field(layers)[-1]
    top = last["offset"] + i * last["stride"]
    left = last["offset"] + j * last["stride"]
    return top, top + last["rf"], left, left + last["rf"]
'''),
        ('input_window inclusive bottom/right (off by one)', '''def receptive_field(layers) -> list[dict]:
    """Per layer: {"rf": receptive field, "stride": total stride, "offset": first input pixel of output 0}."""
    rf, jump, offset, out = 1, 1, 0, []
    for index, (kernel, stride, padding, dilation) in enumerate(layers):
        if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
            raise ValueError(f"layer {index}: {(kernel, stride, padding, dilation)} is not a valid "
                             "(kernel>=1, stride>=1, padding>=0, dilation>=1) layer")
        offset -= padding * jump
        rf += dilation * (kernel - 1) * jump
        jump *= stride
        out.append({"rf": int(rf), "stride": int(jump), "offset": int(offset)})
    return out


def input_window(layers, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Half-open (top, bottom, left, right) input window of the last layer's output pixel (i, j), clipped."""
    last = receptive_field(layers)[-1]
    top = last["offset"] + i * last["stride"]
    left = last["offset"] + j * last["stride"]
    return max(0, top), min(height, top + last["rf"]) - 1, max(0, left), min(width, left + last["rf"]) - 1
'''),
        ('input_window returns a list', '''def receptive_field(layers) -> list[dict]:
    """Per layer: {"rf": receptive field, "stride": total stride, "offset": first input pixel of output 0}."""
    rf, jump, offset, out = 1, 1, 0, []
    for index, (kernel, stride, padding, dilation) in enumerate(layers):
        if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
            raise ValueError(f"layer {index}: {(kernel, stride, padding, dilation)} is not a valid "
                             "(kernel>=1, stride>=1, padding>=0, dilation>=1) layer")
        offset -= padding * jump
        rf += dilation * (kernel - 1) * jump
        jump *= stride
        out.append({"rf": int(rf), "stride": int(jump), "offset": int(offset)})
    return out


def input_window(layers, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Half-open (top, bottom, left, right) input window of the last layer's output pixel (i, j), clipped."""
    last = receptive_field(layers)[-1]
    top = last["offset"] + i * last["stride"]
    left = last["offset"] + j * last["stride"]
    return [max(0, top), min(height, top + last["rf"]), max(0, left), min(width, left + last["rf"])]
'''),
        ('input_window swaps rows and columns', '''def receptive_field(layers) -> list[dict]:
    """Per layer: {"rf": receptive field, "stride": total stride, "offset": first input pixel of output 0}."""
    rf, jump, offset, out = 1, 1, 0, []
    for index, (kernel, stride, padding, dilation) in enumerate(layers):
        if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
            raise ValueError(f"layer {index}: {(kernel, stride, padding, dilation)} is not a valid "
                             "(kernel>=1, stride>=1, padding>=0, dilation>=1) layer")
        offset -= padding * jump
        rf += dilation * (kernel - 1) * jump
        jump *= stride
        out.append({"rf": int(rf), "stride": int(jump), "offset": int(offset)})
    return out


def input_window(layers, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Half-open (top, bottom, left, right) input window of the last layer's output pixel (i, j), clipped."""
    last = receptive_field(layers)[-1]
    top = last["offset"] + j * last["stride"]
    left = last["offset"] + i * last["stride"]
    return max(0, top), min(height, top + last["rf"]), max(0, left), min(width, left + last["rf"])
'''),
    ],
    'ex1_gradient_box': [
        ('backward() leaves .grad on the parameters', '''def gradient_box(net: nn.Module, i: int, j: int, height: int, width: int, channels: int = 3):
    """Half-open bounding box of the input pixels with a non-zero gradient of output pixel (i, j), or None."""
    x = torch.ones(1, channels, height, width, requires_grad=True)
    net(x)[0, :, i, j].sum().backward()
    grad = x.grad
    hit = grad[0].abs().sum(dim=0).nonzero()
    if len(hit) == 0:
        return None
    return (int(hit[:, 0].min()), int(hit[:, 0].max()) + 1, int(hit[:, 1].min()), int(hit[:, 1].max()) + 1)
'''),
        ('inclusive bounds', '''def gradient_box(net: nn.Module, i: int, j: int, height: int, width: int, channels: int = 3):
    """Half-open bounding box of the input pixels with a non-zero gradient of output pixel (i, j), or None."""
    x = torch.ones(1, channels, height, width, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x)[0, :, i, j].sum(), x)
    hit = grad[0].abs().sum(dim=0).nonzero()
    if len(hit) == 0:
        return None
    return (int(hit[:, 0].min()), int(hit[:, 0].max()), int(hit[:, 1].min()), int(hit[:, 1].max()))
'''),
        ('a random input instead of ones', '''def gradient_box(net: nn.Module, i: int, j: int, height: int, width: int, channels: int = 3):
    """Half-open bounding box of the input pixels with a non-zero gradient of output pixel (i, j), or None."""
    x = torch.randn(1, channels, height, width, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x)[0, :, i, j].sum(), x)
    hit = grad[0].abs().sum(dim=0).nonzero()
    if len(hit) == 0:
        return None
    return (int(hit[:, 0].min()), int(hit[:, 0].max()) + 1, int(hit[:, 1].min()), int(hit[:, 1].max()) + 1)
'''),
        ('only channel 0 of the output', '''def gradient_box(net: nn.Module, i: int, j: int, height: int, width: int, channels: int = 3):
    """Half-open bounding box of the input pixels with a non-zero gradient of output pixel (i, j), or None."""
    x = torch.ones(1, channels, height, width, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x)[0, 0, i, j], x)
    hit = grad[0].abs().sum(dim=0).nonzero()
    if len(hit) == 0:
        return None
    return (int(hit[:, 0].min()), int(hit[:, 0].max()) + 1, int(hit[:, 1].min()), int(hit[:, 1].max()) + 1)
'''),
        ('an empty box instead of None', '''def gradient_box(net: nn.Module, i: int, j: int, height: int, width: int, channels: int = 3):
    """Half-open bounding box of the input pixels with a non-zero gradient of output pixel (i, j), or None."""
    x = torch.ones(1, channels, height, width, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x)[0, :, i, j].sum(), x)
    hit = grad[0].abs().sum(dim=0).nonzero()
    if len(hit) == 0:
        return (0, 0, 0, 0)
    return (int(hit[:, 0].min()), int(hit[:, 0].max()) + 1, int(hit[:, 1].min()), int(hit[:, 1].max()) + 1)
'''),
    ],
    'ex2_labels': [
        ('255 pixels counted as labelled', '''def crop_labels(masks: torch.Tensor, min_fraction: float = 0.1, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Multi-hot float32 labels (..., num_classes): classes covering >= min_fraction of the labelled pixels."""
    masks = torch.as_tensor(masks).long()
    valid = masks != IGNORE_INDEX
    onehot = F.one_hot(torch.where(valid, masks, num_classes), num_classes + 1)[..., :num_classes]
    counts = onehot.flatten(-3, -2).sum(dim=-2).float()
    labelled = torch.ones_like(masks).flatten(-2).sum(dim=-1, keepdim=True).float()
    return ((counts >= min_fraction * labelled) & (labelled > 0)).float()
'''),
        ('strictly more than min_fraction', '''def crop_labels(masks: torch.Tensor, min_fraction: float = 0.1, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Multi-hot float32 labels (..., num_classes): classes covering >= min_fraction of the labelled pixels."""
    masks = torch.as_tensor(masks).long()
    valid = masks != IGNORE_INDEX
    onehot = F.one_hot(torch.where(valid, masks, num_classes), num_classes + 1)[..., :num_classes]
    counts = onehot.flatten(-3, -2).sum(dim=-2).float()
    labelled = valid.flatten(-2).sum(dim=-1, keepdim=True).float()
    return ((counts > min_fraction * labelled) & (labelled > 0)).float()
'''),
        ('min_fraction ignored (any pixel counts)', '''def crop_labels(masks: torch.Tensor, min_fraction: float = 0.1, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Multi-hot float32 labels (..., num_classes): classes covering >= min_fraction of the labelled pixels."""
    masks = torch.as_tensor(masks).long()
    valid = masks != IGNORE_INDEX
    onehot = F.one_hot(torch.where(valid, masks, num_classes), num_classes + 1)[..., :num_classes]
    counts = onehot.flatten(-3, -2).sum(dim=-2).float()
    labelled = valid.flatten(-2).sum(dim=-1, keepdim=True).float()
    return ((counts >= 1) & (labelled > 0)).float()
'''),
        ('int64 labels', '''def crop_labels(masks: torch.Tensor, min_fraction: float = 0.1, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Multi-hot float32 labels (..., num_classes): classes covering >= min_fraction of the labelled pixels."""
    masks = torch.as_tensor(masks).long()
    valid = masks != IGNORE_INDEX
    onehot = F.one_hot(torch.where(valid, masks, num_classes), num_classes + 1)[..., :num_classes]
    counts = onehot.flatten(-3, -2).sum(dim=-2).float()
    labelled = valid.flatten(-2).sum(dim=-1, keepdim=True).float()
    return ((counts >= min_fraction * labelled) & (labelled > 0)).long()
'''),
        ('an unlabelled crop gets every class', '''def crop_labels(masks: torch.Tensor, min_fraction: float = 0.1, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Multi-hot float32 labels (..., num_classes): classes covering >= min_fraction of the labelled pixels."""
    masks = torch.as_tensor(masks).long()
    valid = masks != IGNORE_INDEX
    onehot = F.one_hot(torch.where(valid, masks, num_classes), num_classes + 1)[..., :num_classes]
    counts = onehot.flatten(-3, -2).sum(dim=-2).float()
    labelled = valid.flatten(-2).sum(dim=-1, keepdim=True).float()
    return (counts >= min_fraction * labelled).float()
'''),
        ('num_classes ignored', '''def crop_labels(masks: torch.Tensor, min_fraction: float = 0.1, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Multi-hot float32 labels (..., num_classes): classes covering >= min_fraction of the labelled pixels."""
    masks = torch.as_tensor(masks).long()
    valid = masks != IGNORE_INDEX
    onehot = F.one_hot(torch.where(valid, masks, NUM_CLASSES), NUM_CLASSES + 1)[..., :NUM_CLASSES]
    counts = onehot.flatten(-3, -2).sum(dim=-2).float()
    labelled = valid.flatten(-2).sum(dim=-1, keepdim=True).float()
    return ((counts >= min_fraction * labelled) & (labelled > 0)).float()
'''),
    ],
    'ex2_accuracy': [
        ('a logit of exactly 0 counted as present', '''def per_class_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per class: the fraction of rows where (logit > 0) equals the 0/1 target."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    return ((logits >= 0) == (targets > 0.5)).float().mean(dim=0)
'''),
        ('no ValueError for different shapes', '''def per_class_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per class: the fraction of rows where (logit > 0) equals the 0/1 target."""
    if False:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    return ((logits > 0) == (targets > 0.5)).float().mean(dim=0)
'''),
        ('one overall accuracy instead of one per class', '''def per_class_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per class: the fraction of rows where (logit > 0) equals the 0/1 target."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    return ((logits > 0) == (targets > 0.5)).float().mean().repeat(logits.shape[1])
'''),
    ],
    'ex2_train': [
        ('a twentieth of the steps', '''seed_everything(0)
classifier = make_classifier().to(device)
optimizer = torch.optim.Adam(classifier.parameters(), lr=CLF_PLAN["lr"])
order = torch.Generator().manual_seed(0)
for _ in range(CLF_PLAN["steps"] // 20):
    batch = torch.randint(0, len(train_crops), (CLF_PLAN["batch_size"],), generator=order)
    logits = classifier(train_crops[batch].to(device))
    loss = F.binary_cross_entropy_with_logits(logits, train_labels[batch].to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    clf_losses.append(loss.item())
classifier.eval()
'''),
        ('no zero_grad: gradients accumulate over the run', '''seed_everything(0)
classifier = make_classifier().to(device)
optimizer = torch.optim.Adam(classifier.parameters(), lr=CLF_PLAN["lr"])
order = torch.Generator().manual_seed(0)
for _ in range(CLF_PLAN["steps"]):
    batch = torch.randint(0, len(train_crops), (CLF_PLAN["batch_size"],), generator=order)
    logits = classifier(train_crops[batch].to(device))
    loss = F.binary_cross_entropy_with_logits(logits, train_labels[batch].to(device))
    loss.backward()
    optimizer.step()
    clf_losses.append(loss.item())
classifier.eval()
'''),
        ('left in training mode, learning rate 100× too small', '''seed_everything(0)
classifier = make_classifier().to(device)
optimizer = torch.optim.Adam(classifier.parameters(), lr=CLF_PLAN["lr"] / 100)
order = torch.Generator().manual_seed(0)
for _ in range(CLF_PLAN["steps"]):
    batch = torch.randint(0, len(train_crops), (CLF_PLAN["batch_size"],), generator=order)
    logits = classifier(train_crops[batch].to(device))
    loss = F.binary_cross_entropy_with_logits(logits, train_labels[batch].to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    clf_losses.append(loss.item())
classifier.train()
'''),
    ],
    'ex3_convolutionalize': [
        ('weights reshaped in the wrong order (rows, columns, channels)', '''def convolutionalize(classifier: nn.Sequential) -> nn.Sequential:
    """The classifier with Flatten removed and every nn.Linear rewritten as an equivalent nn.Conv2d."""
    layers = list(classifier)
    flat = next((n for n, layer in enumerate(layers) if isinstance(layer, nn.Flatten)), None)
    if flat is None:
        raise ValueError("convolutionalize: the classifier has no nn.Flatten")
    convs = [layer for layer in layers[:flat] if isinstance(layer, nn.Conv2d)]
    if not convs:
        raise ValueError("convolutionalize: no nn.Conv2d before nn.Flatten")
    channels = convs[-1].out_channels
    out, first = [copy.deepcopy(layer) for layer in layers[:flat]], True
    for layer in layers[flat + 1:]:
        if not isinstance(layer, nn.Linear):
            out.append(copy.deepcopy(layer))
            continue
        if first:
            k = math.isqrt(layer.in_features // channels)
            if channels * k * k != layer.in_features:
                raise ValueError(f"convolutionalize: in_features={layer.in_features} is not {channels}·k² for "
                                 "a whole number k")
            conv = nn.Conv2d(channels, layer.out_features, k, bias=layer.bias is not None)
            first = False
        else:
            conv = nn.Conv2d(layer.in_features, layer.out_features, 1, bias=layer.bias is not None)
        with torch.no_grad():
            shape = conv.weight.shape
            conv.weight.copy_(layer.weight.reshape(shape[0], shape[2], shape[3], shape[1]).permute(0, 3, 1, 2))
            if layer.bias is not None:
                conv.bias.copy_(layer.bias)
        out.append(conv)
    return nn.Sequential(*out)
'''),
        ('only the first Linear converted', '''def convolutionalize(classifier: nn.Sequential) -> nn.Sequential:
    """The classifier with Flatten removed and every nn.Linear rewritten as an equivalent nn.Conv2d."""
    layers = list(classifier)
    flat = next((n for n, layer in enumerate(layers) if isinstance(layer, nn.Flatten)), None)
    if flat is None:
        raise ValueError("convolutionalize: the classifier has no nn.Flatten")
    convs = [layer for layer in layers[:flat] if isinstance(layer, nn.Conv2d)]
    if not convs:
        raise ValueError("convolutionalize: no nn.Conv2d before nn.Flatten")
    channels = convs[-1].out_channels
    out, first = [copy.deepcopy(layer) for layer in layers[:flat]], True
    for layer in layers[flat + 1:]:
        if not isinstance(layer, nn.Linear):
            out.append(copy.deepcopy(layer))
            continue
        if first:
            k = math.isqrt(layer.in_features // channels)
            if channels * k * k != layer.in_features:
                raise ValueError(f"convolutionalize: in_features={layer.in_features} is not {channels}·k² for "
                                 "a whole number k")
            conv = nn.Conv2d(channels, layer.out_features, k, bias=layer.bias is not None)
            first = False
        else:
            out.append(copy.deepcopy(layer))
            continue
        with torch.no_grad():
            conv.weight.copy_(layer.weight.reshape(conv.weight.shape))
            if layer.bias is not None:
                conv.bias.copy_(layer.bias)
        out.append(conv)
    return nn.Sequential(*out)
'''),
        ('biases dropped', '''def convolutionalize(classifier: nn.Sequential) -> nn.Sequential:
    """The classifier with Flatten removed and every nn.Linear rewritten as an equivalent nn.Conv2d."""
    layers = list(classifier)
    flat = next((n for n, layer in enumerate(layers) if isinstance(layer, nn.Flatten)), None)
    if flat is None:
        raise ValueError("convolutionalize: the classifier has no nn.Flatten")
    convs = [layer for layer in layers[:flat] if isinstance(layer, nn.Conv2d)]
    if not convs:
        raise ValueError("convolutionalize: no nn.Conv2d before nn.Flatten")
    channels = convs[-1].out_channels
    out, first = [copy.deepcopy(layer) for layer in layers[:flat]], True
    for layer in layers[flat + 1:]:
        if not isinstance(layer, nn.Linear):
            out.append(copy.deepcopy(layer))
            continue
        if first:
            k = math.isqrt(layer.in_features // channels)
            if channels * k * k != layer.in_features:
                raise ValueError(f"convolutionalize: in_features={layer.in_features} is not {channels}·k² for "
                                 "a whole number k")
            conv = nn.Conv2d(channels, layer.out_features, k, bias=layer.bias is not None)
            first = False
        else:
            conv = nn.Conv2d(layer.in_features, layer.out_features, 1, bias=layer.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(layer.weight.reshape(conv.weight.shape))
            if layer.bias is not None:
                conv.bias.zero_()
        out.append(conv)
    return nn.Sequential(*out)
'''),
        ('layers shared with the classifier (no copy)', '''def convolutionalize(classifier: nn.Sequential) -> nn.Sequential:
    """The classifier with Flatten removed and every nn.Linear rewritten as an equivalent nn.Conv2d."""
    layers = list(classifier)
    flat = next((n for n, layer in enumerate(layers) if isinstance(layer, nn.Flatten)), None)
    if flat is None:
        raise ValueError("convolutionalize: the classifier has no nn.Flatten")
    convs = [layer for layer in layers[:flat] if isinstance(layer, nn.Conv2d)]
    if not convs:
        raise ValueError("convolutionalize: no nn.Conv2d before nn.Flatten")
    channels = convs[-1].out_channels
    out, first = list(layers[:flat]), True
    for layer in layers[flat + 1:]:
        if not isinstance(layer, nn.Linear):
            out.append(copy.deepcopy(layer))
            continue
        if first:
            k = math.isqrt(layer.in_features // channels)
            if channels * k * k != layer.in_features:
                raise ValueError(f"convolutionalize: in_features={layer.in_features} is not {channels}·k² for "
                                 "a whole number k")
            conv = nn.Conv2d(channels, layer.out_features, k, bias=layer.bias is not None)
            first = False
        else:
            conv = nn.Conv2d(layer.in_features, layer.out_features, 1, bias=layer.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(layer.weight.reshape(conv.weight.shape))
            if layer.bias is not None:
                conv.bias.copy_(layer.bias)
        out.append(conv)
    return nn.Sequential(*out)
'''),
        ('no ValueError checks', '''def convolutionalize(classifier: nn.Sequential) -> nn.Sequential:
    """The classifier with Flatten removed and every nn.Linear rewritten as an equivalent nn.Conv2d."""
    layers = list(classifier)
    flat = next((n for n, layer in enumerate(layers) if isinstance(layer, nn.Flatten)), None)
    if flat is None:
        flat = len(layers)
    convs = [layer for layer in layers[:flat] if isinstance(layer, nn.Conv2d)]
    channels = convs[-1].out_channels if convs else 3
    out, first = [copy.deepcopy(layer) for layer in layers[:flat]], True
    for layer in layers[flat + 1:]:
        if not isinstance(layer, nn.Linear):
            out.append(copy.deepcopy(layer))
            continue
        if first:
            k = math.isqrt(layer.in_features // channels)
            if False:
                raise ValueError(f"convolutionalize: in_features={layer.in_features} is not {channels}·k² for "
                                 "a whole number k")
            conv = nn.Conv2d(channels, layer.out_features, k, bias=layer.bias is not None)
            first = False
        else:
            conv = nn.Conv2d(layer.in_features, layer.out_features, 1, bias=layer.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(layer.weight.reshape(conv.weight.shape))
            if layer.bias is not None:
                conv.bias.copy_(layer.bias)
        out.append(conv)
    return nn.Sequential(*out)
'''),
        ('layers between the Linear layers dropped', '''def convolutionalize(classifier: nn.Sequential) -> nn.Sequential:
    """The classifier with Flatten removed and every nn.Linear rewritten as an equivalent nn.Conv2d."""
    layers = list(classifier)
    flat = next((n for n, layer in enumerate(layers) if isinstance(layer, nn.Flatten)), None)
    if flat is None:
        raise ValueError("convolutionalize: the classifier has no nn.Flatten")
    convs = [layer for layer in layers[:flat] if isinstance(layer, nn.Conv2d)]
    if not convs:
        raise ValueError("convolutionalize: no nn.Conv2d before nn.Flatten")
    channels = convs[-1].out_channels
    out, first = [copy.deepcopy(layer) for layer in layers[:flat]], True
    for layer in layers[flat + 1:]:
        if not isinstance(layer, nn.Linear):
            if isinstance(layer, nn.ReLU):
                out.append(nn.ReLU())
            continue
        if first:
            k = math.isqrt(layer.in_features // channels)
            if channels * k * k != layer.in_features:
                raise ValueError(f"convolutionalize: in_features={layer.in_features} is not {channels}·k² for "
                                 "a whole number k")
            conv = nn.Conv2d(channels, layer.out_features, k, bias=layer.bias is not None)
            first = False
        else:
            conv = nn.Conv2d(layer.in_features, layer.out_features, 1, bias=layer.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(layer.weight.reshape(conv.weight.shape))
            if layer.bias is not None:
                conv.bias.copy_(layer.bias)
        out.append(conv)
    return nn.Sequential(*out)
'''),
    ],
    'ex4_finetune': [
        ('no step-0 point', '''curves, histories = {}, {}
for name in ("pretrained", "scratch"):
    seed_everything(0)
    model = ConvFCN(convolutionalize(classifier if name == "pretrained" else make_classifier()))
    start = evaluate(model, curve_loader, device=device)["miou"]
    histories[name] = fit(model, train_loader, curve_loader, steps=FT_PLAN["steps"], lr=FT_PLAN["lr"],
                          device=device, eval_every=FT_PLAN["eval_every"], live_plot=False)
    curves[name] = {"step": list(histories[name]["step"]), "miou": list(histories[name]["miou"])}
    if name == "pretrained":
        pretrained_fcn = model
    else:
        scratch_fcn = model
'''),
        ('both runs start from the pretrained classifier', '''curves, histories = {}, {}
for name in ("pretrained", "scratch"):
    seed_everything(0)
    model = ConvFCN(convolutionalize(classifier))
    start = evaluate(model, curve_loader, device=device)["miou"]
    histories[name] = fit(model, train_loader, curve_loader, steps=FT_PLAN["steps"], lr=FT_PLAN["lr"],
                          device=device, eval_every=FT_PLAN["eval_every"], live_plot=False)
    curves[name] = {"step": [0] + list(histories[name]["step"]), "miou": [start] + list(histories[name]["miou"])}
    if name == "pretrained":
        pretrained_fcn = model
    else:
        scratch_fcn = model
'''),
        ('the scratch run trained for half the steps', '''curves, histories = {}, {}
for name in ("pretrained", "scratch"):
    seed_everything(0)
    model = ConvFCN(convolutionalize(classifier if name == "pretrained" else make_classifier()))
    start = evaluate(model, curve_loader, device=device)["miou"]
    histories[name] = fit(model, train_loader, curve_loader, steps=FT_PLAN["steps"] // (1 if name == "pretrained" else 2), lr=FT_PLAN["lr"],
                          device=device, eval_every=FT_PLAN["eval_every"], live_plot=False)
    curves[name] = {"step": [0] + list(histories[name]["step"]), "miou": [start] + list(histories[name]["miou"])}
    if name == "pretrained":
        pretrained_fcn = model
    else:
        scratch_fcn = model
'''),
        ('step 0 measured after training', '''curves, histories = {}, {}
for name in ("pretrained", "scratch"):
    seed_everything(0)
    model = ConvFCN(convolutionalize(classifier if name == "pretrained" else make_classifier()))
    histories[name] = fit(model, train_loader, curve_loader, steps=FT_PLAN["steps"], lr=FT_PLAN["lr"],
                          device=device, eval_every=FT_PLAN["eval_every"], live_plot=False)
    start = evaluate(model, curve_loader, device=device)["miou"]
    curves[name] = {"step": [0] + list(histories[name]["step"]), "miou": [start] + list(histories[name]["miou"])}
    if name == "pretrained":
        pretrained_fcn = model
    else:
        scratch_fcn = model
'''),
        ('pretrained_fcn is a fresh model, not the trained one', '''curves, histories = {}, {}
for name in ("pretrained", "scratch"):
    seed_everything(0)
    model = ConvFCN(convolutionalize(classifier if name == "pretrained" else make_classifier()))
    start = evaluate(model, curve_loader, device=device)["miou"]
    histories[name] = fit(model, train_loader, curve_loader, steps=FT_PLAN["steps"], lr=FT_PLAN["lr"],
                          device=device, eval_every=FT_PLAN["eval_every"], live_plot=False)
    curves[name] = {"step": [0] + list(histories[name]["step"]), "miou": [start] + list(histories[name]["miou"])}
    if name == "pretrained":
        pretrained_fcn = ConvFCN(convolutionalize(classifier))
    else:
        scratch_fcn = model
'''),
    ],
    'ex5_upblock': [
        ('skip concatenated first', '''class UpBlock(nn.Module):
    """U-Net decoder block: ×2 bilinear upsampling, concatenation with the skip, two 3×3 conv + ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = nn.Sequential(nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if tuple(skip.shape[-2:]) != (2 * x.shape[-2], 2 * x.shape[-1]):
            raise ValueError(f"skip is {tuple(skip.shape[-2:])}, expected twice x's {tuple(x.shape[-2:])}")
        return self.conv(torch.cat([skip, self.up(x)], dim=1))
'''),
        ('nearest-neighbour upsampling', '''class UpBlock(nn.Module):
    """U-Net decoder block: ×2 bilinear upsampling, concatenation with the skip, two 3×3 conv + ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Sequential(nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if tuple(skip.shape[-2:]) != (2 * x.shape[-2], 2 * x.shape[-1]):
            raise ValueError(f"skip is {tuple(skip.shape[-2:])}, expected twice x's {tuple(x.shape[-2:])}")
        return self.conv(torch.cat([self.up(x), skip], dim=1))
'''),
        ('no ReLU after the second convolution', '''class UpBlock(nn.Module):
    """U-Net decoder block: ×2 bilinear upsampling, concatenation with the skip, two 3×3 conv + ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = nn.Sequential(nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(out_channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if tuple(skip.shape[-2:]) != (2 * x.shape[-2], 2 * x.shape[-1]):
            raise ValueError(f"skip is {tuple(skip.shape[-2:])}, expected twice x's {tuple(x.shape[-2:])}")
        return self.conv(torch.cat([self.up(x), skip], dim=1))
'''),
        ('a wrong-size skip is resized instead of rejected', '''class UpBlock(nn.Module):
    """U-Net decoder block: ×2 bilinear upsampling, concatenation with the skip, two 3×3 conv + ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = nn.Sequential(nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if tuple(skip.shape[-2:]) != (2 * x.shape[-2], 2 * x.shape[-1]):
            skip = F.interpolate(skip, size=(2 * x.shape[-2], 2 * x.shape[-1]))
        if False:
            raise ValueError(f"skip is {tuple(skip.shape[-2:])}, expected twice x's {tuple(x.shape[-2:])}")
        return self.conv(torch.cat([self.up(x), skip], dim=1))
'''),
        ('FCN-style addition instead of concatenation', '''class UpBlock(nn.Module):
    """U-Net decoder block: ×2 bilinear upsampling, concatenation with the skip, two 3×3 conv + ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if tuple(skip.shape[-2:]) != (2 * x.shape[-2], 2 * x.shape[-1]):
            raise ValueError(f"skip is {tuple(skip.shape[-2:])}, expected twice x's {tuple(x.shape[-2:])}")
        return self.conv(self.up(x) + skip[:, : x.shape[1]])
'''),
    ],
    'ex5_compare': [
        ('parameters counted without biases', '''comparison, trained = {}, {}
for name, make in (("FCN (addition)", lambda: ConvFCN(convolutionalize(make_classifier()))),
                   ("U-Net (concatenation)", UNet)):
    seed_everything(0)
    model = make()
    history = fit(model, train_loader, curve_loader, time_budget_s=COMPARE_SECONDS, lr=FT_PLAN["lr"],
                  device=device, eval_every=FT_PLAN["eval_every"], live_plot=False)
    steps, seconds = history["step"][-1], history["seconds"][-1]
    comparison[name] = {"params": sum(p.numel() for p in model.parameters() if p.dim() > 1), "steps": steps, "seconds": seconds,
                        "images_per_s": steps * FT_PLAN["batch_size"] / seconds, "miou": history["miou"][-1]}
    trained[name] = model
compare_fcn, unet = trained["FCN (addition)"], trained["U-Net (concatenation)"]
'''),
        ('batches per second instead of images', '''comparison, trained = {}, {}
for name, make in (("FCN (addition)", lambda: ConvFCN(convolutionalize(make_classifier()))),
                   ("U-Net (concatenation)", UNet)):
    seed_everything(0)
    model = make()
    history = fit(model, train_loader, curve_loader, time_budget_s=COMPARE_SECONDS, lr=FT_PLAN["lr"],
                  device=device, eval_every=FT_PLAN["eval_every"], live_plot=False)
    steps, seconds = history["step"][-1], history["seconds"][-1]
    comparison[name] = {"params": sum(p.numel() for p in model.parameters()), "steps": steps, "seconds": seconds,
                        "images_per_s": steps / seconds, "miou": history["miou"][-1]}
    trained[name] = model
compare_fcn, unet = trained["FCN (addition)"], trained["U-Net (concatenation)"]
'''),
        ('the U-Net gets half the time', '''comparison, trained = {}, {}
for name, make in (("FCN (addition)", lambda: ConvFCN(convolutionalize(make_classifier()))),
                   ("U-Net (concatenation)", UNet)):
    seed_everything(0)
    model = make()
    history = fit(model, train_loader, curve_loader, time_budget_s=COMPARE_SECONDS / (2 if name.startswith("U") else 1), lr=FT_PLAN["lr"],
                  device=device, eval_every=FT_PLAN["eval_every"], live_plot=False)
    steps, seconds = history["step"][-1], history["seconds"][-1]
    comparison[name] = {"params": sum(p.numel() for p in model.parameters()), "steps": steps, "seconds": seconds,
                        "images_per_s": steps * FT_PLAN["batch_size"] / seconds, "miou": history["miou"][-1]}
    trained[name] = model
compare_fcn, unet = trained["FCN (addition)"], trained["U-Net (concatenation)"]
'''),
        ("best mIoU instead of the trained model's", '''comparison, trained = {}, {}
for name, make in (("FCN (addition)", lambda: ConvFCN(convolutionalize(make_classifier()))),
                   ("U-Net (concatenation)", UNet)):
    seed_everything(0)
    model = make()
    history = fit(model, train_loader, curve_loader, time_budget_s=COMPARE_SECONDS, lr=FT_PLAN["lr"],
                  device=device, eval_every=FT_PLAN["eval_every"], live_plot=False)
    steps, seconds = history["step"][-1], history["seconds"][-1]
    comparison[name] = {"params": sum(p.numel() for p in model.parameters()), "steps": steps, "seconds": seconds,
                        "images_per_s": steps * FT_PLAN["batch_size"] / seconds, "miou": max(history["miou"]) + 0.01}
    trained[name] = model
compare_fcn, unet = trained["FCN (addition)"], trained["U-Net (concatenation)"]
'''),
    ],
}
# fmt: on
