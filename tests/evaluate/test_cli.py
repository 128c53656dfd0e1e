import csv
import json

import pytest
from PIL import Image

from matseg.cli import main


def _results(out):
    return json.loads((out / "results.json").read_text())


def test_benchmark_end_to_end_on_the_shared_sample(benchmark_sample, tmp_path, capsys):
    out = tmp_path / "colour"
    assert main(["eval", "matseg-bench", str(benchmark_sample), "--predictor", "colour", "-o", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "triplet/point" in table and "reference" in table and "hard" in table
    doc = _results(out)
    agg = doc["aggregate"]["all"]["paper"]
    # digest §3.6, reference metric with blurred Lab colour: 0.9129 / 0.9265 / 1.0 / 1.0
    assert agg["triplet_point"] == pytest.approx(0.9129, abs=0.003)
    assert agg["triplet_material"] == pytest.approx(0.9265, abs=0.003)
    assert agg["top1_point"] == 1.0 and agg["images"] == 1
    assert doc["aggregate"]["all"]["reference"]["triplet_point"] == pytest.approx(agg["triplet_point"])  # two levels
    assert doc["aggregate"]["soft"]["paper"]["images"] == 0  # no relations file in the sample
    assert doc["predictor"]["params"] == {"blur": 19, "centre": True} and doc["config"]["max_size"] == 700
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 12 and rows[0]["image"] == "20230913_185027" and rows[-1]["image"] == "ALL"
    panel = Image.open(out / "panels" / "20230913_185027.png")
    assert panel.size[0] > 700 and (out / "config.yaml").is_file()
    # a rerun skips the finished image and gives the same numbers
    assert main(["eval", "matseg-bench", str(benchmark_sample), "--predictor", "colour", "-o", str(out), "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["skipped"] == 1
    assert _results(out)["aggregate"] == doc["aggregate"]
    # another configuration into the same folder is refused
    assert main(["eval", "matseg-bench", str(benchmark_sample), "--predictor", "colour", "--predictor-arg", "blur=3",
                 "-o", str(out), "--no-progress"]) == 2  # fmt: skip
    assert "different configuration" in capsys.readouterr().err


def test_random_baseline_is_near_chance(benchmark_sample, tmp_path):
    out = tmp_path / "random"
    assert main(["eval", "matseg-bench", str(benchmark_sample), "--predictor", "random", "-o", str(out),
                 "--panel-images", "0", "--no-progress"]) == 0  # fmt: skip
    agg = _results(out)["aggregate"]["all"]["paper"]
    assert 0.35 < agg["triplet_point"] < 0.65
    assert not (out / "panels").exists()


def test_masks_end_to_end_on_synth2d(synth_masks, tmp_path, capsys):
    out = tmp_path / "masks"
    assert main(["eval", "masks", str(synth_masks), "--predictor", "colour", "--num-points", "4", "-o", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    assert "mean IoU at the optimal threshold" in capsys.readouterr().out
    doc = _results(out)
    assert doc["aggregate"]["images"] == 3 and 0.0 < doc["aggregate"]["miou_segments"] <= 1.0
    assert all(len(s["ious"]) == 4 for r in doc["images"] for s in r["segments"])
    assert doc["config"]["num_points"] == 4 and len(list((out / "panels").glob("*.png"))) == 3
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert rows[-1]["image"] == "ALL" and len(rows) == doc["aggregate"]["segments"] + 2


def test_bad_image_is_skipped_and_listed(tmp_path, bench, capsys):
    root = tmp_path / "bench"
    bench.write(root, "good", bench.image(), bench.points())
    bench.write(root, "broken", bench.image(), "{oops")
    out = tmp_path / "out"
    assert main(["eval", "matseg-bench", str(root), "--predictor", "colour", "-o", str(out), "--no-progress"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 1 and summary["failed"][0]["name"] == "broken"
    assert "data.json: not valid JSON" in summary["failed"][0]["reason"]
    assert _results(out)["aggregate"]["all"]["paper"]["triplet_point"] == 1.0


def test_usage_errors_exit_2_with_a_clear_message(tmp_path, bench, capsys):
    root = tmp_path / "bench"
    bench.write(root, "good", bench.image(), bench.points())
    assert main(["eval", "matseg-bench", str(root), "--predictor", "nope", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown predictor 'nope'; available: " in err and all(n in err for n in ("colour", "random", "sam", "texture"))
    assert main(["eval", "matseg-bench", str(root), "-o", str(tmp_path / "o")]) == 2
    assert "choose a predictor with --predictor" in capsys.readouterr().err
    assert main(["eval", "masks", str(tmp_path / "missing"), "--predictor", "colour"]) == 2
    assert "folder not found" in capsys.readouterr().err
    assert main(["eval", "matseg-bench", str(root), "--predictor", "sam", "--predictor-arg", "checkpoint=sam_vit_b.pth",
                 "-o", str(tmp_path / "o")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "segment-anything" in err or "checkpoint not found" in err


def test_config_and_listing_commands(capsys, tmp_path):
    assert main(["config", "eval-bench"]) == 0
    assert "weight_square: 0.6" in capsys.readouterr().out
    assert main(["config", "eval-masks"]) == 0
    assert "num_points: 20" in capsys.readouterr().out
    assert main(["eval", "predictors"]) == 0
    listing = capsys.readouterr().out
    assert "colour" in listing and "checkpoint (required)" in listing
    assert main(["eval", "masks", str(tmp_path), "--predictor", "texture", "--predictor-arg", "window=15", "--print-config"]) == 0
    assert "window: 15" in capsys.readouterr().out


def test_saved_predictor_check_compares_shared_keys(tmp_path):
    from matseg.cli_common import UsageError
    from matseg.evaluate.cli import check_saved_predictor

    old = tmp_path / "old"
    old.mkdir()
    # A folder of an older matseg: results.json only, without the newer 'flip' parameter.
    (old / "results.json").write_text(json.dumps({"predictor": {"params": {"sha256": "aa", "max_side": 512}}}))
    check_saved_predictor(old, {"sha256": "aa", "max_side": 512, "flip": False})
    assert json.loads((old / "predictor.json").read_text())["params"]["flip"] is False  # recorded from now on
    with pytest.raises(UsageError, match=r"another predictor setup \(flip: False there, True now\)"):
        check_saved_predictor(old, {"sha256": "aa", "max_side": 512, "flip": True})
    check_saved_predictor(old, {"sha256": "bb", "max_side": 512, "flip": True}, force=True)  # the user's choice
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    check_saved_predictor(fresh, {"sides": (384, 256)})
    check_saved_predictor(fresh, {"sides": [384, 256]})  # tuples are saved as lists: the same
    (fresh / "predictor.json").write_text("{oops")
    with pytest.raises(UsageError, match="predictor.json: unreadable"):
        check_saved_predictor(fresh, {})
