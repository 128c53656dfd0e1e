import subprocess
import sys

import matseg


TORCH_NAMES = {"load_model", "Predictor", "TTA_PRESET"}  # the public names that need the torch extra


def test_public_api_resolves():
    import importlib.util

    has_torch = importlib.util.find_spec("torch") is not None
    for name in matseg.__all__:
        if name in TORCH_NAMES and not has_torch:
            continue  # needs the torch extra
        assert getattr(matseg, name) is not None, name


def test_import_is_light_and_core_install_needs_no_torch_bpy_ray():
    code = "import sys, matseg; print(','.join(m for m in ('numpy','cv2','torch','bpy','ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_cli_help_for_every_stage():
    from matseg.cli import main

    for argv in (["--help"], ["synth2d", "--help"], ["check", "--help"], ["show", "--help"], ["config", "--help"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0, argv


def test_config_command_prints_documented_defaults(capsys):
    import yaml

    from matseg.cli import main
    from matseg.config import to_dict
    from matseg.synth2d.job import Synth2DConfig

    assert main(["config", "synth2d"]) == 0
    text = capsys.readouterr().out
    assert yaml.safe_load(text) == to_dict(Synth2DConfig())
    assert "p_hard: 0.55  # probability of a hard (one-hot) scene [§1.2]" in text


def test_core_dependencies_exclude_heavy_extras():
    from importlib.metadata import requires

    core = [r for r in requires("matseg") if "extra ==" not in r]
    assert core and not [r for r in core if r.split()[0].lower().startswith(("torch", "bpy", "ray"))]


def test_stage_configs_need_no_optional_extras():
    # `matseg config STAGE` must work on a core install: no torch/bpy/ray import for any config.
    code = (
        "import sys; from matseg.tools.config_cmd import STAGE_CONFIGS, config_class\n"
        "[config_class(s) for s in STAGE_CONFIGS]\n"
        "print(','.join(m for m in ('torch', 'bpy', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
