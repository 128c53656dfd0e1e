from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from matseg.cli import main

pytest.importorskip("flask")


def test_bad_folders_exit_2_naming_them(tmp_path: Path, capsys):
    assert main(["app", "--data", str(tmp_path / "missing")]) == 2
    assert f"--data {tmp_path / 'missing'}: not a folder" in capsys.readouterr().err
    assert main(["app", "--weights", str(tmp_path / "w.safetensors")]) == 2
    assert "weights file not found" in capsys.readouterr().err


def test_app_prints_url_and_serves(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-m", "matseg", "app", "--port", "0", "--bench", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("matseg app: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/info", timeout=30) as response:
            info = json.loads(response.read())
        assert info["bench"][0]["path"] == str(tmp_path.resolve())
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b"<title>matseg</title>" in response.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
