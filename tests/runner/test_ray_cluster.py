"""The Ray backend against a real two-node Ray cluster started on this machine.

``ray.cluster_utils.Cluster`` starts a head node and a second node (separate raylets and
object stores, one CPU each), so the two worker actors a job creates run on different nodes.
Outputs must be byte-identical to a local run; a node removed mid-job must not lose anything.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from matseg.cli import main

ray = pytest.importorskip("ray", reason="ray extra not installed (pip install 'matseg[ray]')")
pytestmark = pytest.mark.ray

SMALL = ["--set", "scene.size_min=160", "--set", "scene.size_max=220", "--no-progress"]


@pytest.fixture
def cluster(monkeypatch):
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker_node = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c, worker_node
    ray.shutdown()
    c.shutdown()


def _nodes_alive(address: str) -> int:
    if not ray.is_initialized():  # the job disconnects the driver it connected
        ray.init(address=address)
    return sum(1 for n in ray.nodes() if n["Alive"])


def test_two_nodes_give_the_local_bytes(cluster, tmp_path: Path, natural_images: Path, output_digest):
    c, _ = cluster
    assert main(["synth2d", "-n", "6", "-o", str(tmp_path / "local"), "-w", "1", *SMALL]) == 0
    assert main(["synth2d", "-n", "6", "-o", str(tmp_path / "ray"), "--ray-address", c.address, *SMALL]) == 0
    assert _nodes_alive(c.address) == 2  # one actor per node: each node has one CPU
    assert output_digest(tmp_path / "ray") == output_digest(tmp_path / "local")
    for name in ("local", "ray"):
        assert main(["textures", "extract", str(natural_images), "-o", str(tmp_path / f"tex-{name}"), "--no-progress",
                     *(["-w", "1"] if name == "local" else ["--ray-address", c.address])]) == 0  # fmt: skip
    textures = output_digest(tmp_path / "tex-ray")
    assert any(k.endswith(".jpg") for k in textures) and textures == output_digest(tmp_path / "tex-local")


def test_node_lost_mid_job_loses_nothing(cluster, tmp_path: Path, output_digest, caplog):
    c, worker_node = cluster
    n = 30
    out = tmp_path / "ray"

    def kill_after_some_finished():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(out.glob("*/Finished.txt"))) < 4:
            time.sleep(0.05)
        c.remove_node(worker_node)

    killer = threading.Thread(target=kill_after_some_finished)
    killer.start()
    code = main(["synth2d", "-n", str(n), "-o", str(out), "--ray-address", c.address, *SMALL])
    killer.join()
    assert _nodes_alive(c.address) == 1
    assert code == 0
    assert "a Ray node left while running item" in caplog.text  # the item on the lost node ran again
    assert "continuing with 1 worker(s)" in caplog.text
    assert main(["synth2d", "-n", str(n), "-o", str(tmp_path / "local"), "-w", "1", *SMALL]) == 0
    digest = output_digest(out)
    assert len({k.split("/")[0] for k in digest}) == n and digest == output_digest(tmp_path / "local")


def test_tiny_synth3d_on_two_nodes(cluster, tmp_path: Path, output_digest):
    pytest.importorskip("bpy", reason="bpy not installed: pip install 'matseg[synth3d]' on Python 3.11")
    from tests.conftest import SHARED

    c, _ = cluster
    tiny = ["-n", "2", "--seed", "5", "--size", "40", "--samples", "2", "--set", "render.denoiser=none",
            "--set", "render.adaptive_threshold=0", "--set", "render.world_map_resolution=64",
            "--set", "quality.min_roi_fraction=0.02", "--no-progress"]  # fmt: skip
    if (SHARED / "pbr").is_dir():
        tiny += ["--pbr", str(SHARED / "pbr")]
    assert main(["synth3d", "-o", str(tmp_path / "local"), "-w", "1", *tiny]) == 0
    assert main(["synth3d", "-o", str(tmp_path / "ray"), "--ray-address", c.address, *tiny]) == 0
    digest = output_digest(tmp_path / "ray")
    assert len({k.split("/")[0] for k in digest}) == 2 and digest == output_digest(tmp_path / "local")
