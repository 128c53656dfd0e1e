import math

import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
import torch.nn.functional as F  # noqa: E402

from matseg.net.loss import material_descriptors, material_loss  # noqa: E402
from matseg.net.model import DescriptorNet, ModelConfig  # noqa: E402


def test_model_shapes_and_unit_length():
    net = DescriptorNet(ModelConfig(pretrained=False)).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 100, 130) * 255)
    assert out.shape == (2, 128, 25, 33)  # ceil(H/4), ceil(W/4), any size (padded inside)
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 25, 33), atol=1e-4)


def test_model_rejects_bad_input():
    net = DescriptorNet(ModelConfig(pretrained=False))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.zeros(1, 4, 64, 64))


def _two_material_batch(h=8, w=8):
    """One image, left half material 0, right half material 1."""
    frac = torch.zeros(1, 2, h, w)
    frac[0, 0, :, : w // 2] = 1
    frac[0, 1, :, w // 2 :] = 1
    return frac, torch.ones(1, h, w, dtype=torch.bool)


def _descriptors_from_labels(frac, directions):
    labels = frac.argmax(1)  # (B, h, w)
    d = directions[labels]  # (B, h, w, D)
    return F.normalize(d.permute(0, 3, 1, 2).float(), dim=1)


def test_perfect_descriptors_give_near_zero_loss_and_swapped_high():
    frac, roi = _two_material_batch()
    e = torch.eye(4)
    perfect = _descriptors_from_labels(frac, e[:2])
    loss, stats = material_loss(perfect, frac, roi)
    # logits: own 1/0.2 = 5, other 0 -> loss = log(1 + e^-5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-5)), rel=1e-4)
    assert stats["accuracy"] == 1.0 and stats["materials"] == 2
    # Material descriptors are defined by the masks, so "swapping" means the descriptors of the
    # two regions point the same way inside each region but the regions are indistinguishable.
    same = _descriptors_from_labels(frac, torch.stack([e[0], e[0]]))
    loss_same, _ = material_loss(same, frac, roi)
    assert loss_same.item() == pytest.approx(math.log(2), rel=1e-4)
    # Each half split between two opposite directions: materials average out, loss is high.
    noisy = perfect.clone()
    noisy[:, :, ::2] = -noisy[:, :, ::2]
    loss_noisy, _ = material_loss(noisy, frac, roi)
    assert loss_noisy.item() > loss.item() + 0.5


def test_other_images_materials_are_negatives():
    frac, roi = _two_material_batch()
    e = torch.eye(4)
    one = _descriptors_from_labels(frac, e[:2])
    two = _descriptors_from_labels(frac, e[2:])
    loss, stats = material_loss(torch.cat([one, two]), torch.cat([frac, frac]), torch.cat([roi, roi]))
    assert stats["materials"] == 4
    # own logit 5, three others at 0.
    assert loss.item() == pytest.approx(math.log(1 + 3 * math.exp(-5)), rel=1e-4)


def test_hard_assignment_by_highest_fraction():
    frac = torch.tensor([[[[0.6, 0.3]], [[0.4, 0.7]]]])  # (1, 2, 1, 2): pixel 0 -> m0, pixel 1 -> m1
    members = F.one_hot(frac.argmax(1), 2).permute(0, 3, 1, 2)
    desc = F.normalize(torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]]), dim=1)
    mats, present = material_descriptors(desc, members)
    assert present.tolist() == [[True, True]]
    assert torch.allclose(mats, torch.eye(2))


def test_roi_excludes_pixels_and_single_material_gives_zero():
    frac, roi = _two_material_batch()
    roi[:, :, 4:] = False  # only material 0 left inside the ROI
    desc = _descriptors_from_labels(frac, torch.eye(2))
    loss, stats = material_loss(desc, frac, roi)
    assert stats["materials"] == 1 and loss.item() == 0.0


def test_soft_reference_variant_scales_with_material_count():
    frac, roi = _two_material_batch()
    desc = _descriptors_from_labels(frac, torch.eye(2))
    soft, _ = material_loss(desc, frac, roi, target="soft")
    # -mean_pixels(mean over M=2 of GT*log p) = log(1+e^-5) / 2
    assert soft.item() == pytest.approx(math.log(1 + math.exp(-5)) / 2, rel=1e-3)


def test_loss_decreases_when_fitting_descriptors_directly():
    torch.manual_seed(0)
    frac, roi = _two_material_batch(16, 16)
    raw = torch.randn(1, 8, 16, 16, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=0.1)
    first = None
    for _ in range(30):
        loss, _ = material_loss(F.normalize(raw, dim=1), frac, roi)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.2
