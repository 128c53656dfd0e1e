import math

import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
import torch.nn.functional as F  # noqa: E402

from matseg.net.loss import (  # noqa: E402
    average_references,
    distill_loss,
    encoder_reference,
    material_descriptors,
    material_loss,
    rank_loss,
)
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


def _three_columns(net_dirs, ref_dirs):
    """One image, 1 x 3 grid: column k is material k; descriptors and reference set per column."""
    frac = torch.eye(3).view(1, 3, 1, 3)
    desc = torch.tensor(net_dirs, dtype=torch.float32).T.reshape(1, -1, 1, 3)
    ref = torch.tensor(ref_dirs, dtype=torch.float32).T.reshape(1, -1, 1, 3)
    return desc, ref, frac, torch.ones(1, 1, 3, dtype=torch.bool)


# S_net: s01 = 0, s02 = -1, s12 = 0.  S_ref: s01 = 0.6, s02 = 0.8, s12 = 0.96.
NET_DIRS = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]
REF_DIRS = [[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]]


def test_rank_loss_hand_computed():
    desc, ref, frac, roi = _three_columns(NET_DIRS, REF_DIRS)
    # Reference gaps > 0.05: (0,2,1) 0.2, (1,2,0) 0.36, (2,1,0) 0.16; the net's gaps there:
    # -1, 0, 1 -> hinges relu(0.1 + 1) = 1.1, relu(0.18 - 0) = 0.18, relu(0.08 - 1) = 0.
    loss, stats = rank_loss(desc, ref, frac, roi, scale=0.5, margin=0.05)
    assert stats == {"triplets": 3}
    assert loss.item() == pytest.approx((1.1 + 0.18 + 0.0) / 3, abs=1e-6)
    # A larger margin leaves only the 0.36 gap; scale 1 asks for all of it.
    loss, stats = rank_loss(desc, ref, frac, roi, scale=1.0, margin=0.2)
    assert stats == {"triplets": 1} and loss.item() == pytest.approx(0.36, abs=1e-6)


def test_rank_loss_is_zero_when_the_net_keeps_the_reference_order():
    desc, ref, frac, roi = _three_columns(REF_DIRS, REF_DIRS)
    loss, stats = rank_loss(desc, ref, frac, roi)
    assert stats["triplets"] == 3 and loss.item() == 0.0


def test_rank_loss_gradient_reaches_descriptors_only():
    desc, ref, frac, roi = _three_columns(NET_DIRS, REF_DIRS)
    desc.requires_grad_(True)
    ref.requires_grad_(True)
    loss, _ = rank_loss(desc, ref, frac, roi)
    loss.backward()
    assert desc.grad is not None and desc.grad.abs().sum() > 0
    assert ref.grad is None
    # A step against the gradient lowers the loss.
    moved = (desc - 0.1 * desc.grad).detach()
    assert rank_loss(moved, ref, frac, roi)[0] < loss


def test_rank_loss_needs_three_materials_and_validates_input():
    desc, ref, frac, roi = _three_columns(NET_DIRS, REF_DIRS)
    roi[0, 0, 2] = False  # material 2 is outside the ROI: two materials left
    desc.requires_grad_(True)
    loss, stats = rank_loss(desc, ref, frac, roi)
    assert stats == {"triplets": 0} and loss.item() == 0.0
    loss.backward()  # a zero that keeps the graph
    with pytest.raises(ValueError, match="one grid"):
        rank_loss(desc, ref[..., :2], frac, roi)
    with pytest.raises(ValueError, match="scale >= 0"):
        rank_loss(desc, ref, frac, roi, scale=-1)


def test_encoder_reference_is_unit_length_cropped_and_detached():
    torch.manual_seed(0)
    f4 = torch.randn(2, 4, 4, 6, requires_grad=True)
    taps = [f4, torch.randn(2, 8, 2, 3), torch.randn(2, 16, 1, 2)]
    ref = encoder_reference(taps, (3, 5))
    assert ref.shape == (2, 28, 3, 5) and not ref.requires_grad
    assert torch.allclose(ref.norm(dim=1), torch.ones(2, 3, 5), atol=1e-5)
    # The finest tap's share is that tap normalised, scaled by 1/sqrt(3).
    assert torch.allclose(ref[:, :4], F.normalize(f4.detach(), dim=1)[..., :3, :5] / 3**0.5, atol=1e-6)
    with pytest.raises(ValueError, match="exceeds"):
        encoder_reference(taps, (5, 5))


def test_model_returns_encoder_taps_on_request():
    net = DescriptorNet(ModelConfig(pretrained=False)).eval()
    images = torch.rand(1, 3, 100, 130) * 255
    with torch.no_grad():
        plain = net(images)
        desc, taps = net(images, with_taps=True)
    assert torch.equal(plain, desc)
    assert all(torch.equal(a, b) for a, b in zip(net.encoder_taps(images), taps))
    # In training, an extra view through encoder_taps leaves every batch-norm statistic and the
    # modes (frozen layers in eval) as they were.
    net.freeze_encoder(16)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    modes = [m.training for m in net.modules()]
    with torch.no_grad():
        net.encoder_taps(images)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert [m.training for m in net.modules()] == modes and net.training
    # Strides 4, 8, 16 of the image padded to 128 x 160.
    assert [tuple(t.shape[-2:]) for t in taps] == [(32, 40), (16, 20), (8, 10)]
    assert encoder_reference(taps, tuple(desc.shape[-2:])).shape[-2:] == desc.shape[-2:]


def test_average_references_hand_computed():
    a = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    b = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)  # a coarser map, resized to the grid
    out = average_references([a, b], (2, 2))
    assert out.shape == (1, 2, 2, 2)
    assert torch.allclose(out, torch.full((1, 2, 2, 2), 0.5**0.5))  # (1, 1) / sqrt(2) everywhere
    assert torch.equal(average_references([a], (2, 2)), a)
    # Several maps, the first already on the grid: the result is the normalised sum of the
    # resized maps, and no input is changed (the sum is accumulated in a buffer of its own).
    torch.manual_seed(0)
    maps = [torch.randn(2, 3, 4, 6), torch.randn(2, 3, 2, 3), torch.randn(2, 3, 3, 3), torch.randn(2, 3, 4, 6)]
    copies = [m.clone() for m in maps]
    resized = [m if m.shape[-2:] == (4, 6) else F.interpolate(m, size=(4, 6), mode="bilinear", align_corners=False) for m in maps]
    assert torch.allclose(average_references(maps, (4, 6)), F.normalize(sum(resized), dim=1), atol=1e-6)
    assert all(torch.equal(m, c) for m, c in zip(maps, copies))
    assert torch.allclose(average_references(maps[::-1], (4, 6)), F.normalize(sum(resized), dim=1), atol=1e-6)
    assert all(torch.equal(m, c) for m, c in zip(maps, copies))
    with pytest.raises(ValueError, match="at least one"):
        average_references([], (2, 2))


def test_distill_loss_hand_computed_and_detached():
    # Two pixels: the first points the target's way (cos 1), the second 45 degrees off it.
    desc = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2).requires_grad_(True)
    target = torch.tensor([[2.0, 0.0], [1.0, 1.0]]).T.reshape(1, 2, 1, 2).requires_grad_(True)  # normalised inside
    loss = distill_loss(desc, target)
    assert loss.item() == pytest.approx(1 - (1 + math.sqrt(0.5)) / 2, abs=1e-6)
    loss.backward()
    assert target.grad is None and desc.grad[0, :, 0, 0].abs().sum() > 0
    assert distill_loss(target.detach()[:, :, :, :1] / 2, target.detach()[:, :, :, :1]).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        distill_loss(desc, target[..., :1])


def test_a_registered_encoder_with_forward_features_of_x_alone_still_works():
    """The registry is open: an encoder whose forward_features takes only x (no last_stride) runs
    the net and gives encoder_taps (computed in full, as it cannot stop early)."""
    from torch import nn

    from matseg.net.encoders import _ENCODERS, register_encoder

    class Plain(nn.Module):
        feature_channels, feature_strides = (8, 16, 24, 32), (4, 8, 16, 32)

        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, 2 if i else 4, 1) for i, (c_in, c_out) in enumerate(zip((3, 8, 16, 24), (8, 16, 24, 32))))

        @staticmethod
        def normalize(images):
            return images / 255.0

        def forward_features(self, x):
            feats = []
            for conv in self.convs:
                x = conv(x)
                feats.append(x)
            return feats

    register_encoder("plain_test")(lambda pretrained=True, weights_file=None: Plain())
    try:
        net = DescriptorNet(ModelConfig(encoder="plain_test", pretrained=False)).eval()
        images = torch.rand(1, 3, 64, 96) * 255
        with torch.no_grad():
            desc, taps = net(images, with_taps=True)
            assert desc.shape == (1, 128, 16, 24)
            assert all(torch.equal(a, b) for a, b in zip(net.encoder_taps(images), taps))
    finally:
        del _ENCODERS["plain_test"]
