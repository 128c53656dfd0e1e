import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")

from matseg.net.config import TrainError  # noqa: E402
from matseg.net.precision import autocast, resolve_precision  # noqa: E402


def test_precision_choices():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None and resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) in (torch.bfloat16, None)
    with pytest.raises(TrainError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)


@pytest.mark.parametrize("dtype, expected", [(None, torch.float32), (torch.bfloat16, torch.bfloat16)])
def test_autocast_runs_matmul_in_the_resolved_dtype(dtype, expected):
    a = torch.randn(4, 8)
    with autocast(torch.device("cpu"), dtype):
        assert (a @ a.T).dtype is expected
    assert (a @ a.T).dtype is torch.float32  # the context ends
