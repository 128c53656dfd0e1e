"""End-to-end: ``matseg app`` in a real headless browser (Debian's chromium + chromium-driver).

The server runs in a thread on a free port; selenium drives chromium. The tests skip, saying
why, only where the browser or its driver is not installed (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("flask")
pytest.importorskip("torch")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install 'matseg[test]')")

from matseg.app.server import AppConfig, create_app  # noqa: E402
from matseg.io.images import write_image  # noqa: E402
from tests.app.conftest import two_texture_photo  # noqa: E402
from tests.conftest import shared_dir  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no driver download: Debian's driver
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The app over the published samples, an eval folder and a new benchmark; yields (url, folders)."""
    from matseg.cli import main

    tmp = tmp_path_factory.mktemp("app")
    photo = tmp / "two.png"
    write_image(photo, two_texture_photo())
    bench = tmp / "bench"
    (bench / "images").mkdir(parents=True)
    write_image(bench / "images" / "two.jpg", two_texture_photo())
    results = tmp / "results"
    assert main(["eval", "matseg-bench", str(shared_dir("benchmark_sample")), "--predictor", "colour",
                 "-o", str(results / "colour"), "--no-progress"]) == 0  # fmt: skip
    app = create_app(AppConfig(data=[shared_dir("matseg_train_sample")], results=[results], bench=[bench]))
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", {"photo": photo, "bench": bench, "tmp": tmp}
    server.shutdown()


def _wait(driver, script: str, timeout: float = 60):
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def _open(driver, url: str):
    driver.get(url)
    _wait(driver, "return document.body.dataset.started")


# Share of overlay pixels switched on (mask mode: alpha > 0) in the left and right halves.
OVERLAY_HALVES = """
const c = document.getElementById('overlay');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let l = 0, r = 0, nl = 0, nr = 0;
for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
  const on = d[4 * (y * c.width + x) + 3] > 0;
  if (x < c.width / 2) { l += on; nl++; } else { r += on; nr++; }
}
return [l / nl, r / nr];
"""


def _click(driver, element, fx: float, fy: float):
    """Click at a fraction (fx, fy) of the element's size (selenium offsets are from the centre)."""
    w, h = element.size["width"], element.size["height"]
    ActionChains(driver).move_to_element_with_offset(element, int((fx - 0.5) * w), int((fy - 0.5) * h)).click().perform()


def test_click_overlay_follows_material(browser, site):
    url, files = site
    _open(browser, url)
    browser.find_element(By.ID, "file-input").send_keys(str(files["photo"]))
    _wait(browser, "return document.body.dataset.ready")
    browser.find_element(By.ID, "show-mask").click()  # mask at the automatic (Otsu) threshold
    marks = browser.find_element(By.ID, "marks")
    _click(browser, marks, 0.25, 0.5)
    _wait(browser, "return document.body.dataset.maps === '1'")
    left_click = browser.execute_script(OVERLAY_HALVES)
    _click(browser, marks, 0.75, 0.5)
    _wait(browser, "return document.body.dataset.maps === '2'")
    right_click = browser.execute_script(OVERLAY_HALVES)
    assert left_click[0] > 0.7 and left_click[1] < 0.3, left_click
    assert right_click[1] > 0.7 and right_click[0] < 0.3, right_click
    assert browser.find_element(By.ID, "error").get_attribute("hidden")
    assert "mask area" in browser.find_element(By.ID, "area").text


def test_browse_published_samples(browser, site):
    url, _ = site
    _open(browser, url + "#/data/data0")
    _wait(browser, "const t = document.querySelectorAll('.grid img'); return t.length >= 7 && [...t].every(i => i.complete && i.naturalWidth > 0)")
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, ".grid a")]
    assert "1/1" in names  # nested published sample
    browser.find_elements(By.CSS_SELECTOR, ".grid a")[0].click()
    _wait(browser, "const t = document.querySelectorAll('.layers img'); return t.length >= 4 && [...t].every(i => i.complete && i.naturalWidth > 0)")
    body = browser.find_element(By.ID, "data-body").text
    assert "published sample" in body and "check: passes" in body


def test_results_side_by_side(browser, site):
    url, _ = site
    _open(browser, url + "#/results")
    _wait(browser, "return document.querySelectorAll('#run-a option').length > 0 && document.querySelector('.aggregate')")
    browser.execute_script("const b = document.getElementById('run-b'); b.value = '0'; b.dispatchEvent(new Event('change'))")
    _wait(browser, "return document.querySelectorAll('.run').length === 2")
    assert "all / paper" in browser.find_element(By.CSS_SELECTOR, ".aggregate").text


def test_annotate_save_and_evaluate(browser, site):
    from matseg.cli import main

    url, files = site
    _open(browser, url + "#/annotate/bench0/two")
    _wait(browser, "const i = document.getElementById('annotate-photo'); return i && i.complete && i.naturalWidth > 0")
    canvas = browser.find_element(By.ID, "annotate-marks")
    _click(browser, canvas, 0.2, 0.3)
    _click(browser, canvas, 0.3, 0.7)
    browser.find_element(By.ID, "add-group-btn").click()
    canvas = browser.find_element(By.ID, "annotate-marks")
    _click(browser, canvas, 0.7, 0.3)
    _click(browser, canvas, 0.8, 0.7)
    for box in browser.find_elements(By.CSS_SELECTOR, ".rel-key"):
        box.click()
    browser.find_element(By.ID, "rel-round-btn").click()
    browser.find_element(By.ID, "save-btn").click()
    _wait(browser, "return document.getElementById('save-status').textContent.startsWith('saved')")
    data_dir = files["bench"] / "data" / "two"
    saved = json.loads((data_dir / "data.json").read_text())
    assert {k: len(v["pt_im"]) for k, v in saved.items()} == {"1": 2, "2": 2}
    assert all(p[0] < 256 for p in saved["1"]["pt_im"]) and all(p[0] >= 256 for p in saved["2"]["pt_im"])
    assert (data_dir / "group_relations.txt").read_text() == "(1,2)\n"
    out = files["tmp"] / "eval-annotated"
    assert main(["eval", "matseg-bench", str(files["bench"]), "--predictor", "colour", "-o", str(out), "--no-progress"]) == 0
    aggregate = json.loads((out / "results.json").read_text())["aggregate"]
    assert aggregate["all"]["paper"]["anchors"] == 4 and aggregate["soft"]["paper"]["anchors"] == 4


def test_traversal_refused_in_browser(browser, site):
    url, _ = site
    for attempt in ("files/data0/..%2F..%2F..%2F..%2Fetc%2Fpasswd", "files/data0/../../../../etc/passwd",
                    "api/data/data0/thumb?item=..%2F..%2F..%2F..%2Fetc%2Fpasswd"):  # fmt: skip
        browser.get(url + attempt)
        time.sleep(0.2)
        assert "root:" not in browser.page_source
