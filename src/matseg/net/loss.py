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
    frac = _downsample(fractions.float(), size)
    valid = _downsample(roi[:, None].float(), size)[:, 0] > 0.5
    num_slots = frac.shape[1]
    if target == "hard":
        labels = frac.argmax(1)
        valid &= frac.amax(1) > 0
        members = F.one_hot(labels, num_slots).permute(0, 3, 1, 2) * valid[:, None]
    else:
        members = (frac > 0.5) & valid[:, None]
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
