"""Material-contrastive loss (paper appendix G.1, digest §1.8).

For every image of the batch, each ground-truth material gets a descriptor: the normalised
mean of the predicted descriptors of its pixels. Every pixel is compared (cosine similarity)
with every material of the whole batch - other images' materials are negatives - and a softmax
with temperature 0.2 over those similarities is trained with cross-entropy against the pixel's
material.

Two target definitions:

- ``"hard"`` (default, the paper's G.1): each pixel belongs to the material with the highest
  ground-truth fraction; materials are averaged over those pixels; plain cross-entropy averaged
  over the ROI pixels.
- ``"soft"`` (the reference code): materials are averaged over pixels where their fraction
  exceeds 0.5; the target is the soft fraction itself and the loss is
  ``-mean_pixels(roi * mean_materials(fraction * log p))``, i.e. divided by the number of
  materials in the batch (so its scale changes with the batch), with an epsilon in the log
  (the reference had none).

An optional second term (ours, :func:`rank_loss`, ``loss.rank_weight``) keeps the pretrained
encoder's *ranking* of material similarities: the contrastive loss only says "same material or
not", so nothing teaches the net which of two other materials is the closer one (partial
similarity, the benchmark's soft triplets), while ImageNet features rank those well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _downsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="nearest")


def material_descriptors(descriptors: torch.Tensor, members: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean descriptor per (image, material).

    Args:
        descriptors: (B, D, h, w) unit-length descriptors.
        members: (B, M, h, w) 0/1 membership of each pixel in each material.

    Returns:
        ``(materials, present)``: (K, D) unit-length descriptors of the K materials that have
        at least one pixel, in (image, material) order, and the (B, M) bool mask of those.
    """
    sums = torch.einsum("bmhw,bdhw->bmd", members.to(descriptors.dtype), descriptors)
    present = members.flatten(2).sum(-1) > 0
    return F.normalize(sums[present], dim=-1), present


def _on_grid(fractions: torch.Tensor, roi: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractions (B, M, h, w) and the ROI (B, h, w) bool, sampled at the descriptor grid ``size``."""
    return _downsample(fractions.float(), size), _downsample(roi[:, None].float(), size)[:, 0] > 0.5


def _majority_members(frac: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, M, h, w) bool: pixels inside the ROI whose fraction of a material exceeds 0.5."""
    return (frac > 0.5) & valid[:, None]


def material_loss(
    descriptors: torch.Tensor,
    fractions: torch.Tensor,
    roi: torch.Tensor,
    temperature: float = 0.2,
    target: str = "hard",
) -> tuple[torch.Tensor, dict]:
    """Contrastive material loss of a batch.

    Args:
        descriptors: (B, D, h, w) unit-length descriptors (the net's output).
        fractions: (B, M, H, W) ground-truth material fractions in [0, 1] (zero-padded slots
            for images with fewer materials), at the image resolution (any multiple of h, w).
        roi: (B, H, W) bool or {0, 1}: pixels that carry an annotation.
        temperature: softmax temperature (paper: 0.2).
        target: ``"hard"`` (paper) or ``"soft"`` (reference code), see the module docstring.

    Returns:
        ``(loss, stats)``: scalar loss and a dict with ``materials`` (materials in the batch),
        ``pixels`` (ROI pixels used) and ``accuracy`` (share of ROI pixels whose most similar
        material is their own).
    """
    if descriptors.ndim != 4 or fractions.ndim != 4 or roi.ndim != 3:
        raise ValueError(
            f"expected descriptors (B,D,h,w), fractions (B,M,H,W), roi (B,H,W); got "
            f"{tuple(descriptors.shape)}, {tuple(fractions.shape)}, {tuple(roi.shape)}"
        )
    if target not in ("hard", "soft"):
        raise ValueError(f"target must be 'hard' or 'soft', got {target!r}")
    size = tuple(descriptors.shape[-2:])
    frac, valid = _on_grid(fractions, roi, size)
    if target == "hard":
        labels = frac.argmax(1)
        valid &= frac.amax(1) > 0
        members = F.one_hot(labels, frac.shape[1]).permute(0, 3, 1, 2) * valid[:, None]
    else:
        members = _majority_members(frac, valid)
    materials, present = material_descriptors(descriptors, members)
    num_materials = materials.shape[0]
    stats = {"materials": int(num_materials), "pixels": int(valid.sum())}
    if num_materials < 2 or not valid.any():
        # Nothing to contrast: a zero that keeps the graph (so DDP ranks stay in step).
        return descriptors.sum() * 0.0, {**stats, "accuracy": float("nan")}

    logits = torch.einsum("bdhw,kd->bkhw", descriptors, materials) / temperature
    log_p = F.log_softmax(logits.float(), dim=1)
    # Global index of each (image, slot) among the K present materials (-1 if absent).
    index = torch.full(present.shape, -1, dtype=torch.long, device=descriptors.device)
    index[present] = torch.arange(num_materials, device=descriptors.device)
    predicted = logits.argmax(1)
    if target == "hard":
        pixel_target = index.gather(1, labels.flatten(1)).view_as(labels)
        valid &= pixel_target >= 0
        nll = -log_p.gather(1, pixel_target.clamp(min=0)[:, None])[:, 0]
        loss = nll[valid].mean()
        correct = (predicted == pixel_target)[valid]
    else:
        # Soft targets placed at each material's global index.
        soft = torch.zeros_like(log_p)
        b_idx, m_idx = torch.nonzero(present, as_tuple=True)
        soft[b_idx, index[b_idx, m_idx]] = frac[b_idx, m_idx]
        p = log_p.exp()
        per_pixel = (soft * torch.log(p + 1e-7)).mean(1)
        loss = -(per_pixel * valid).mean()
        own = soft.argmax(1)
        correct = (predicted == own)[valid & (soft.amax(1) > 0)]
    stats["accuracy"] = float(correct.float().mean()) if correct.numel() else float("nan")
    return loss, stats


def _unit(x: torch.Tensor, length: float = 1.0) -> torch.Tensor:
    """``x`` (B, C, h, w) scaled to ``1 / length`` per pixel: ``F.normalize(x, dim=1) / length``
    in one pass over ``x`` (these maps are large and the passes memory-bound)."""
    return x / (torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12) * length)


def encoder_reference(taps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel reference features from encoder taps: each tap L2-normalised per pixel,
    resized (bilinear) to the first tap's grid, concatenated, cropped to ``size`` and scaled by
    1/sqrt(number of taps) so the result is unit length. Detached: a fixed teacher.

    Args:
        taps: feature maps (B, C_t, h_t, w_t), finest first (e.g. strides 4, 8, 16 of the
            padded image, as ``DescriptorNet(images, with_taps=True)`` returns them).
        size: (h, w) to crop to, at most the first tap's size (the descriptor grid).

    Returns:
        (B, sum C_t, h, w) float32, unit length per pixel.
    """
    if not taps:
        raise ValueError("encoder_reference needs at least one tap")
    grid = tuple(taps[0].shape[-2:])
    if size[0] > grid[0] or size[1] > grid[1]:
        raise ValueError(f"size {tuple(size)} exceeds the first tap's grid {grid}")
    parts, share = [], len(taps) ** 0.5  # each tap's share of the unit length
    for tap in taps:
        tap = tap.detach().float()
        if tuple(tap.shape[-2:]) != grid:
            tap = F.interpolate(_unit(tap), size=grid, mode="bilinear", align_corners=False)
        parts.append(_unit(tap, share))
    return torch.cat(parts, 1)[..., : size[0], : size[1]]


def average_references(references: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Mean of unit-length reference maps seen at several image sizes: each resized (bilinear)
    to ``size``, averaged and made unit length again (as ``--tta`` averages views).

    Args:
        references: (B, C, h_k, w_k) maps, e.g. :func:`encoder_reference` of scaled copies.
        size: (h, w) of the result (the descriptor grid).

    Returns:
        (B, C, h, w) float32, unit length per pixel.
    """
    if not references:
        raise ValueError("average_references needs at least one map")
    total, owned = None, False  # owned: total is a buffer of ours, safe to add into
    for ref in references:
        resized = tuple(ref.shape[-2:]) != tuple(size)
        if resized:
            ref = F.interpolate(ref, size=tuple(size), mode="bilinear", align_corners=False)
        if total is None:
            total, owned = ref, resized
        elif owned:
            total.add_(ref)
        else:
            total, owned = total + ref, True
    return _unit(total)


def rank_loss(
    descriptors: torch.Tensor,
    reference: torch.Tensor,
    fractions: torch.Tensor,
    roi: torch.Tensor,
    scale: float = 0.5,
    margin: float = 0.05,
) -> tuple[torch.Tensor, dict]:
    """Hinge that keeps the reference's ranking of material similarities in the descriptors.

    Materials are averaged (pixels with fraction > 0.5 inside the ROI) over the whole batch, in
    both the descriptors and the reference, giving cosine matrices ``S_net`` and ``S_ref``
    (K x K). For every ordered triplet (i, j, l) with j != i != l where the reference puts j
    closer to i than l by more than ``margin`` (``dS_ref = S_ref[i,j] - S_ref[i,l] > margin``),
    the loss is the mean of ``relu(scale * dS_ref - dS_net)``: the net must rank j above l by at
    least ``scale`` times the reference's gap. Gradients reach the descriptors only.

    Args:
        descriptors: (B, D, h, w) unit-length descriptors.
        reference: (B, C, h, w) reference features (:func:`encoder_reference`), same grid.
        fractions: (B, M, H, W) material fractions in [0, 1]; roi: (B, H, W), as :func:`material_loss`.
        scale: share of the reference's similarity gap the net must reproduce (>= 0).
        margin: reference gaps at or below this are ties and set no constraint (>= 0).

    Returns:
        ``(loss, stats)``: scalar (a graph-keeping zero when there are fewer than 3 materials or
        no constrained triplet) and ``{"triplets": number of constrained triplets}``.
    """
    if descriptors.ndim != 4 or reference.ndim != 4 or descriptors.shape[0] != reference.shape[0] \
            or descriptors.shape[-2:] != reference.shape[-2:]:  # fmt: skip
        raise ValueError(
            f"expected descriptors (B,D,h,w) and reference (B,C,h,w) on one grid; got "
            f"{tuple(descriptors.shape)}, {tuple(reference.shape)}"
        )
    if scale < 0 or margin < 0:
        raise ValueError(f"need scale >= 0 and margin >= 0, got {scale}, {margin}")
    members = _majority_members(*_on_grid(fractions, roi, tuple(descriptors.shape[-2:])))
    net, present = material_descriptors(descriptors, members)
    zero = descriptors.sum() * 0.0
    if net.shape[0] < 3:
        return zero, {"triplets": 0}
    ref, _ = material_descriptors(reference.detach().to(descriptors.dtype), members)
    s_net, s_ref = net @ net.T, ref @ ref.T
    eye = torch.eye(net.shape[0], dtype=torch.bool, device=net.device)
    d_net = s_net[:, :, None] - s_net[:, None, :]  # [i, j, l] = S[i, j] - S[i, l]
    d_ref = s_ref[:, :, None] - s_ref[:, None, :]
    constrained = (d_ref > margin) & ~eye[:, :, None] & ~eye[:, None, :]
    count = int(constrained.sum())
    if not count:
        return zero, {"triplets": 0}
    return F.relu(scale * d_ref - d_net)[constrained].mean(), {"triplets": count}


def distill_loss(descriptors: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Self-distillation: mean over pixels of ``1 - cos(descriptor, target)``.

    Args:
        descriptors: (B, D, h, w) unit-length descriptors (the student's single view).
        target: (B, D, h, w) the teacher's descriptors on the same grid (e.g. its mean over
            several views, :func:`average_references`); normalised here, detached.

    Returns:
        Scalar in [0, 2]: 0 when every descriptor points the teacher's way.
    """
    if descriptors.ndim != 4 or descriptors.shape != target.shape:
        raise ValueError(f"expected descriptors and target of one shape (B,D,h,w); got {tuple(descriptors.shape)}, {tuple(target.shape)}")
    target = F.normalize(target.detach().to(descriptors.dtype), dim=1)
    return 1.0 - (descriptors * target).sum(1).mean()
