"""conv_bn / ConvBnAct: the eval-mode batch-norm fold gives what the two layers give apart."""

import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
from torch import nn  # noqa: E402

from matseg.net.encoders.efficientnet_lite import Conv2dSame  # noqa: E402
from matseg.net.layers import ConvBnAct, conv_bn  # noqa: E402


def _trained_bn(channels: int, affine: bool = True) -> nn.BatchNorm2d:
    """A batch norm with non-trivial running statistics and affine parameters."""
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(channels, eps=1e-3, affine=affine)
    bn.running_mean.uniform_(-2, 2)
    bn.running_var.uniform_(0.1, 4)
    if affine:
        with torch.no_grad():
            bn.weight.uniform_(-2, 2)
            bn.bias.uniform_(-1, 1)
    return bn


CONVS = {
    "3x3, bias": lambda: nn.Conv2d(6, 8, 3, padding=1, bias=True),
    "1x1": lambda: nn.Conv2d(6, 8, 1, bias=False),
    "depthwise 5x5 stride 2, SAME padding": lambda: Conv2dSame(6, 6, 5, 2, groups=6),
    "strided 3x3 SAME": lambda: Conv2dSame(6, 8, 3, 2),
}


@pytest.mark.parametrize("make_conv", CONVS.values(), ids=CONVS.keys())
@pytest.mark.parametrize("affine", [True, False])
def test_eval_fold_equals_conv_then_bn_and_skips_the_bn_pass(make_conv, affine, monkeypatch):
    torch.manual_seed(0)
    conv = make_conv()
    bn = _trained_bn(conv.out_channels, affine).eval()
    x = torch.randn(2, 6, 19, 22)
    with torch.no_grad():
        expected = bn(conv(x))
    monkeypatch.setattr(bn, "forward", lambda _x: pytest.fail("eval-mode batch norm ran as its own pass"))
    with torch.no_grad():
        folded = conv_bn(conv, bn, x)
    assert folded.shape == expected.shape
    assert torch.allclose(folded, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_eval_fold_gradients_match_the_unfolded_layers():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(4, 5, 3, padding=1, bias=True), _trained_bn(5).eval()
    x = torch.randn(2, 4, 9, 7, requires_grad=True)
    weight = torch.randn(2, 5, 9, 7)
    grads = []
    for fn in (lambda: bn(conv(x)), lambda: conv_bn(conv, bn, x)):
        for p in (x, conv.weight, conv.bias, bn.weight, bn.bias):
            p.grad = None
        (fn() * weight).sum().backward()
        grads.append([p.grad.clone() for p in (x, conv.weight, conv.bias, bn.weight, bn.bias)])
    for plain, folded in zip(*grads):
        assert torch.allclose(plain, folded, rtol=1e-4, atol=1e-5)


def test_training_mode_is_the_plain_pair_and_updates_statistics():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), _trained_bn(4).train()
    reference = _trained_bn(4).train()
    x = torch.randn(3, 3, 8, 8)
    out = conv_bn(conv, bn, x)
    assert torch.equal(out, reference(conv(x)))  # batch statistics: nothing to fold
    assert torch.equal(bn.running_mean, reference.running_mean) and int(bn.num_batches_tracked) == 1


def test_conv_bn_act_keeps_the_sequential_state_dict_and_output():
    torch.manual_seed(0)
    layers = (nn.Conv2d(4, 6, 3, padding=1, bias=False), _trained_bn(6), nn.GELU())
    plain, ours = nn.Sequential(*layers), ConvBnAct(*layers)
    assert list(ours.state_dict()) == list(plain.state_dict())  # checkpoints load either way
    x = torch.randn(2, 4, 10, 12)
    plain.eval(), ours.eval()
    assert torch.allclose(ours(x), plain(x), atol=1e-5)
    plain.train(), ours.train()
    assert torch.equal(ours(x), plain(x))
