"""Fixtures of the descriptor-net tests: a small random net (no pretrained weights, fast on a CPU)."""

import pytest


@pytest.fixture(scope="session")
def small_net_config():
    """A ModelConfig of a small random Lite0 net (16-d descriptors, narrow decoder)."""
    pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
    from matseg.net.model import ModelConfig

    return ModelConfig(pretrained=False, descriptor_dim=16, decoder_channels=[32, 16, 16], psp_channels=8)


@pytest.fixture(scope="session")
def weights(tmp_path_factory, small_net_config):
    """That net, seeded, saved as a weights file."""
    import torch

    from matseg.net.checkpoint import save_weights
    from matseg.net.model import DescriptorNet

    torch.manual_seed(0)
    return save_weights(tmp_path_factory.mktemp("w") / "net.safetensors", DescriptorNet(small_net_config))
