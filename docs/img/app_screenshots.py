#!/usr/bin/env python3
"""Remake the screenshots of ``matseg app`` in docs/img (app-*.png).

Everything shown is made by matseg itself (no third-party photo is committed): synthetic 2D
scenes from the built-in inputs, eval results on them, an annotation of one of them. Needs the
app and torch extras, selenium, and Debian's chromium + chromium-driver.

Usage: python docs/img/app_screenshots.py [-o docs/img] [--data DATASET] [--scene N]

The committed screenshots: ``--data`` = 12 held-out ``matseg synth3d`` scenes (seed 424242, the
model card's held-out 3D set), ``--scene 6``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from matseg.app.server import AppConfig, create_app
from matseg.cli import main as matseg


def _wait(driver, script: str, timeout: float = 120):
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def _click(driver, element, fx: float, fy: float, *keys):
    w, h = element.size["width"], element.size["height"]
    chain = ActionChains(driver)
    for key in keys:
        chain = chain.key_down(key)
    chain = chain.move_to_element_with_offset(element, int((fx - 0.5) * w), int((fy - 0.5) * h)).click()
    for key in keys:
        chain = chain.key_up(key)
    chain.perform()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--data", type=Path, default=None, help="a MatSeg dataset (default: 12 new synth2d scenes)")
    ap.add_argument("--click", type=float, nargs=2, default=(0.3, 0.4), metavar=("FX", "FY"),
                    help="where the Explore screenshot clicks, as fractions of the image size")
    ap.add_argument("--scene", type=int, default=3, help="index of the scene shown on the Explore and Annotate pages")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="matseg-shots-"))
    data, results, bench = args.data or tmp / "synth2d", tmp / "results", tmp / "bench"
    if args.data is None:
        assert matseg(["synth2d", "-n", "12", "--seed", "7", "-o", str(data), "--no-progress", "-w", "2"]) == 0
    for predictor in ("matseg", "colour"):
        assert matseg(["eval", "masks", str(data), "--predictor", predictor, "-o", str(results / predictor), "--no-progress"]) == 0
    scene = sorted(p for p in data.iterdir() if (p / "RGB__RGB.jpg").is_file())[args.scene]
    (bench / "images").mkdir(parents=True)
    shutil.copy(scene / "RGB__RGB.jpg", bench / "images" / "scene.jpg")

    app = create_app(AppConfig(data=[data], results=[results], bench=[bench]))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(url)
        _wait(driver, "return document.body.dataset.started")
        driver.find_element(By.ID, "file-input").send_keys(str(scene / "RGB__RGB.jpg"))
        _wait(driver, "return document.body.dataset.ready")
        marks = driver.find_element(By.ID, "marks")
        _click(driver, marks, args.click[0], args.click[1])
        _wait(driver, "return document.body.dataset.maps === '1'")
        driver.save_screenshot(str(args.out / "app-explore.png"))
        driver.find_element(By.ID, "show-mask").click()
        time.sleep(0.3)
        driver.save_screenshot(str(args.out / "app-explore-mask.png"))
        driver.find_element(By.ID, "segment-btn").click()
        _wait(driver, "return document.querySelectorAll('#legend > span').length > 0")
        driver.save_screenshot(str(args.out / "app-segment.png"))

        driver.get(url + "#/data/data0")
        _wait(driver, "const t = document.querySelectorAll('.grid img'); return t.length && [...t].every(i => i.complete && i.naturalWidth)")
        driver.save_screenshot(str(args.out / "app-datasets.png"))
        driver.find_elements(By.CSS_SELECTOR, ".grid a")[args.scene].click()
        _wait(driver, "const t = document.querySelectorAll('.layers img'); return t.length && [...t].every(i => i.complete && i.naturalWidth)")
        driver.save_screenshot(str(args.out / "app-sample.png"))

        driver.get(url + "#/results")
        _wait(driver, "return document.querySelector('.aggregate')")
        driver.execute_script("const b = document.getElementById('run-b'); b.value = '1'; b.dispatchEvent(new Event('change'))")
        _wait(driver, "return document.querySelectorAll('.run').length === 2")
        driver.save_screenshot(str(args.out / "app-results.png"))

        driver.get(url + "#/annotate/bench0/scene")
        _wait(driver, "const i = document.getElementById('annotate-photo'); return i && i.complete && i.naturalWidth")
        canvas = driver.find_element(By.ID, "annotate-marks")
        for fx, fy in ((0.2, 0.2), (0.3, 0.5), (0.25, 0.8)):
            _click(driver, canvas, fx, fy)
        driver.find_element(By.ID, "add-group-btn").click()
        canvas = driver.find_element(By.ID, "annotate-marks")
        for fx, fy in ((0.7, 0.3), (0.8, 0.6)):
            _click(driver, canvas, fx, fy)
        for box in driver.find_elements(By.CSS_SELECTOR, ".rel-key"):
            box.click()
        driver.find_element(By.ID, "rel-square-btn").click()
        driver.find_element(By.ID, "save-btn").click()
        _wait(driver, "return document.getElementById('save-status').textContent.startsWith('saved')")
        driver.save_screenshot(str(args.out / "app-annotate.png"))
        print(json.dumps(sorted(p.name for p in args.out.glob("app-*.png"))))
    finally:
        driver.quit()
        server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
