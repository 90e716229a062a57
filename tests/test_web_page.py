"""The web page at `/`, in a real headless Chromium, against a running service.

The service is real: a redis-server, a worker and two API processes (``service_helpers.Cluster``)
on the contract-compliant fixture model; the second API has a one-job queue and a 2 s deadline so
the page meets real 429 and 504 answers when the worker is stopped. Chromium is Debian's package,
driven by Playwright with ``executable_path`` (Playwright's own browser download does not work
offline). The test takes the screenshot shown in the README; ``PORTRAITSR_UPDATE_SCREENSHOT=1``
copies it to docs/images/, and ``PORTRAITSR_WEB_TEST_MANIFEST=model/release/manifest.json`` runs
the service on the shipped models (for that screenshot) instead of the fixture.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_helpers import REPO, Cluster, build_fixture_release, http_status, png_bytes, wait_until

from portraitsr.manifest import load_manifest
from service.http.auth import hash_key
from training.data.synthetic import synthetic_face

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOT = REPO / "docs" / "images" / "web-page.png"
SCREENSHOT_INPUT = REPO / "docs" / "images" / "astronaut-face-16.png"  # made by scripts/make-readme-pictures.sh
RESULT_TIMEOUT_MS = 60_000
SCREENSHOT_PHOTO = REPO / "docs" / "images" / "web-page-photo.png"
SCREENSHOT_PHOTO_INPUT = REPO / "docs" / "images" / "astronaut-photo-128.png"  # made by scripts/make-restore-picture.sh
API_KEY = "a-key-for-the-web-test"


def find_chromium() -> str | None:
    """Debian's Chromium, installed by scripts/install-test-tools.sh when missing (root + apt)."""
    def installed() -> str | None:
        for candidate in (os.environ.get("PORTRAITSR_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
            if candidate and Path(candidate).is_file():
                return candidate
        return None

    if installed() is None:
        subprocess.run(["bash", str(REPO / "scripts" / "install-test-tools.sh")], capture_output=True, timeout=900)
    return installed()


def http_post(url: str, body: bytes, content_type: str) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("web-service")
    shipped = os.environ.get("PORTRAITSR_WEB_TEST_MANIFEST")
    manifest = Path(shipped).resolve() if shipped else build_fixture_release(workdir / "release")
    cluster = Cluster(workdir, manifest, execution_provider="cpu")
    try:
        cluster.start_redis()
        cluster.worker = cluster.start_worker()
        cluster.url = cluster.start_api()
        cluster.tight_url = cluster.start_api("api-tight", queue_max_length=1, job_deadline_s=2.0)
        keys = workdir / "api-keys"
        keys.write_text(hash_key(API_KEY) + "\n")
        cluster.keyed_url = cluster.start_api("api-keyed", api_keys_file=keys)
        wait_until(lambda: http_status(f"{cluster.url}/readyz") == 200, 60, message="readyz")
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def service_url(cluster) -> str:
    return cluster.url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (dev extra)")
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium: /usr/bin/chromium is missing and scripts/install-test-tools.sh could not install it "
                    "(it needs root and apt-get)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, url: str, bypass_csp: bool = True):
    # Playwright's wait_for_function evaluates strings, which the page's CSP forbids: the tests that
    # use it bypass the CSP; those below that check the CSP itself wait on selectors instead.
    context = browser.new_context(viewport={"width": 1000, "height": 900}, accept_downloads=True, bypass_csp=bypass_csp)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    response = page.goto(f"{url}/")
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    return context, page


@pytest.fixture
def page(browser, service_url):
    context, page = open_page(browser, service_url)
    yield page
    context.close()
    assert not page.errors, f"JavaScript errors on the page: {page.errors}"


def upload(page, path: Path, scale: int, output_format: str) -> None:
    page.set_input_files("#file-input", str(path))
    page.check(f'input[name="scale"][value="{scale}"]')
    page.select_option("#format-select", output_format)
    page.click("#upscale-button")


def canvas_pixels(page, selector: str) -> np.ndarray:
    width, height, data = page.evaluate(
        """(selector) => {
            const canvas = document.querySelector(selector);
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
            return [canvas.width, canvas.height, Array.from(pixels.data)];
        }""",
        selector,
    )
    return np.array(data, dtype=np.uint8).reshape(height, width, 4)


@pytest.mark.parametrize(("side", "scale", "output_format"), [(16, 8, "png"), (32, 4, "jpeg")])
def test_page_upscales_an_image_and_shows_it_beside_bicubic(page, cluster, service_url, tmp_path, side, scale,
                                                            output_format):
    face = tmp_path / f"face{side}.png"
    face.write_bytes(png_bytes(synthetic_face(side)))

    upload(page, face, scale, output_format)
    page.wait_for_function(
        "document.getElementById('status').textContent.startsWith('Done')", timeout=RESULT_TIMEOUT_MS
    )

    expected = side * scale
    sr_size = page.evaluate("(() => { const i = document.getElementById('sr-image'); return [i.naturalWidth, i.naturalHeight]; })()")
    assert sr_size == [expected, expected]
    assert page.is_visible("#sr-image") and page.is_visible("#input-image") and page.is_visible("#bicubic-canvas")
    # Which model ran (X-Model): Auto picked the clean one for a clean PNG.
    clean = release_model(cluster, scale, "clean")
    assert page.inner_text("#sr-model") == f"({clean})"
    assert f"Model: {clean}." in page.inner_text("#status")

    # The three panels are shown at the same size.
    boxes = [page.locator(selector).bounding_box() for selector in ("#input-image", "#bicubic-canvas", "#sr-image")]
    assert boxes[0]["width"] > 100
    assert {round(box["width"]) for box in boxes} == {round(boxes[0]["width"])}
    assert {round(box["height"]) for box in boxes} == {round(boxes[0]["height"])}

    # The bicubic panel is Pillow's bicubic (what its label says), to within rounding.
    bicubic = canvas_pixels(page, "#bicubic-canvas")
    with Image.open(face) as source:
        pillow = np.asarray(source.convert("RGB").resize((expected, expected), Image.Resampling.BICUBIC))
    assert bicubic.shape == (expected, expected, 4)
    assert np.abs(bicubic[:, :, :3].astype(int) - pillow.astype(int)).max() <= 1

    # The download is the API's answer for this image (same model, same bytes decoded).
    downloaded = page.evaluate(
        """async () => {
            const link = document.getElementById('download-link');
            const bytes = new Uint8Array(await (await fetch(link.href)).arrayBuffer());
            return [link.download, Array.from(bytes)];
        }"""
    )
    name, data = downloaded
    assert name == f"face{side}_x{scale}.{'jpg' if output_format == 'jpeg' else 'png'}"
    status, _, direct = http_post(f"{service_url}/upscale?scale={scale}&format={output_format}", face.read_bytes(), "image/png")
    assert status == 200
    with Image.open(io.BytesIO(bytes(data))) as shown, Image.open(io.BytesIO(direct)) as reference:
        assert shown.format == ("PNG" if output_format == "png" else "JPEG")
        assert np.array_equal(np.asarray(shown), np.asarray(reference))

    # The before/after slider moves the split between bicubic and PortraitSR.
    page.locator("#compare-slider").fill("20")
    assert page.evaluate("document.getElementById('compare-after').style.clipPath") == "inset(0px 0px 0px 20%)"

    if scale == 8:
        take_screenshot(page, tmp_path / "web-page.png")


def take_screenshot(page, path: Path) -> None:
    """The README's picture of the page; copied to docs/images/ only when asked to."""
    update = os.environ.get("PORTRAITSR_UPDATE_SCREENSHOT") == "1"
    if update:  # the README shows the example face of its comparison strips
        upload(page, SCREENSHOT_INPUT, 8, "png")
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('Done: astronaut')", timeout=RESULT_TIMEOUT_MS
        )
    page.locator("#compare-slider").fill("50")
    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as image:
        assert image.size[0] == 1000
    if update:
        shutil.copyfile(path, SCREENSHOT)


def _corrupt_png() -> bytes:
    data = png_bytes(synthetic_face(16))
    return data[: len(data) // 2]


def _too_large_png() -> bytes:
    return png_bytes(Image.new("RGB", (600, 600), (120, 90, 80)))


@pytest.mark.parametrize(
    ("file_name", "make_bytes", "status"),
    [
        ("notes.txt", lambda: b"this is a text file, not an image\n", 415),
        ("broken.png", _corrupt_png, 400),
        ("big.png", _too_large_png, 413),
    ],
)
def test_page_shows_the_api_error_message(page, service_url, tmp_path, file_name, make_bytes, status):
    path = tmp_path / file_name
    path.write_bytes(make_bytes())
    api_status, _, body = http_post(f"{service_url}/upscale?scale=8", path.read_bytes(), "application/octet-stream")
    assert api_status == status
    detail = json.loads(body)["detail"]

    upload(page, path, 8, "png")
    page.wait_for_selector("#error:not([hidden])", timeout=RESULT_TIMEOUT_MS)

    message = page.inner_text("#error")
    assert detail in message
    assert f"({status})" in message
    assert page.is_hidden("#results")
    assert page.is_enabled("#upscale-button")


def release_model(cluster, scale: int, variant: str) -> str | None:
    """The manifest name of the cluster's model at (scale, variant), if it has one."""
    return next((s.name for s in load_manifest(cluster.manifest) if (s.scale, s.variant) == (scale, variant)), None)


def test_page_sends_the_chosen_model(page, cluster, service_url, tmp_path):
    if release_model(cluster, 8, "real") is not None:
        pytest.skip("this release has a real model at ×8")
    face = tmp_path / "face.png"
    face.write_bytes(png_bytes(synthetic_face(16)))
    page.set_input_files("#file-input", str(face))
    page.check('input[name="model"][value="real"]')
    page.click("#upscale-button")
    page.wait_for_selector("#error:not([hidden])", timeout=RESULT_TIMEOUT_MS)
    # This release has no real model: the API's refusal, shown as it is.
    assert "no real model at ×8" in page.inner_text("#error") and "(400)" in page.inner_text("#error")


def test_page_explains_a_full_queue_and_a_passed_deadline(browser, cluster, tmp_path):
    """Real 429 and 504 from the API with the one-job queue while the worker is stopped."""
    face = tmp_path / "face.png"
    face.write_bytes(png_bytes(synthetic_face(16)))
    context, page = open_page(browser, cluster.tight_url)
    os.kill(cluster.worker.pid, signal.SIGSTOP)  # nothing is consumed while stopped
    try:
        with ThreadPoolExecutor(1) as pool:
            occupying = pool.submit(http_post, f"{cluster.tight_url}/upscale?scale=8", face.read_bytes(), "image/png")
            wait_until(lambda: cluster.redis().xlen("portraitsr:jobs") >= 1, 10, message="a queued job")

            upload(page, face, 8, "png")
            page.wait_for_selector("#error:not([hidden])", timeout=RESULT_TIMEOUT_MS)
            message = page.inner_text("#error")
            assert "(429)" in message and "jobs are queued" in message
            assert re.search(r"Try again in \d+ s\.", message)
            assert page.is_disabled("#upscale-button")  # it waits out Retry-After
            assert "Wait" in page.inner_text("#upscale-button")
            assert occupying.result()[0] == 504  # and the API removed the job from the queue

        page.reload()
        upload(page, face, 8, "png")
        page.wait_for_selector("#error:not([hidden])", timeout=RESULT_TIMEOUT_MS)
        message = page.inner_text("#error")
        assert "(504)" in message and "deadline" in message
        assert page.is_hidden("#results")
    finally:
        os.kill(cluster.worker.pid, signal.SIGCONT)
        context.close()
    assert not page.errors, f"JavaScript errors on the page: {page.errors}"


def test_dropping_a_file_on_the_page_selects_it(page):
    data = list(png_bytes(synthetic_face(16)))
    transfer = page.evaluate_handle(
        """(bytes) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "dropped.png", { type: "image/png" }));
            return transfer;
        }""",
        data,
    )
    assert page.is_disabled("#upscale-button")
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    assert "dropped.png" in page.inner_text("#file-name")
    assert page.is_enabled("#upscale-button")


def test_photo_mode_restores_a_group_photo_and_outlines_its_faces(page, service_url, tmp_path):
    from test_service_restore import group_photo

    photo = tmp_path / "group.png"
    Image.fromarray(group_photo()).save(photo)
    page.check('input[name="mode"][value="photo"]')
    upload(page, photo, 4, "png")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')", timeout=RESULT_TIMEOUT_MS)
    assert "Faces: 3 found, 3 restored" in page.text_content("#status")
    sr_size = page.evaluate("(() => { const i = document.getElementById('sr-image'); return [i.naturalWidth, i.naturalHeight]; })()")
    assert sr_size == [1000, 400]
    assert page.is_visible("#boxes-canvas")
    outlines = canvas_pixels(page, "#boxes-canvas")
    assert outlines.shape == (400, 1000, 4)
    green = (outlines[:, :, 3] > 0) & (outlines[:, :, 1] > 150) & (outlines[:, :, 0] < 100)
    for _, x, _ in ((40, 12, 20), (56, 80, 14), (72, 160, 10)):  # the faces of group_photo(), left to right
        assert green[:, 4 * x:4 * (x + 80)].any()
    assert not green[:, 4 * 240:].any()
    if os.environ.get("PORTRAITSR_UPDATE_SCREENSHOT") == "1" and SCREENSHOT_PHOTO_INPUT.is_file():
        upload(page, SCREENSHOT_PHOTO_INPUT, 4, "png")
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('Done: astronaut')", timeout=RESULT_TIMEOUT_MS
        )
        page.locator("#compare-slider").fill("50")
        page.screenshot(path=str(SCREENSHOT_PHOTO), full_page=True)
    # Back in face-crop mode the outlines go away.
    page.check('input[name="mode"][value="crop"]')
    face = tmp_path / "face.png"
    face.write_bytes(png_bytes(synthetic_face(16)))
    upload(page, face, 8, "png")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Done: face.png')", timeout=RESULT_TIMEOUT_MS)
    assert not page.is_visible("#boxes-canvas")


def test_page_and_docs_load_nothing_from_other_hosts_and_send_a_csp(browser, cluster, tmp_path):
    face = tmp_path / "face.png"
    face.write_bytes(png_bytes(synthetic_face(16)))
    context = browser.new_context()
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    try:
        page = context.new_page()
        response = page.goto(f"{cluster.url}/")
        headers = response.headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        upload(page, face, 8, "png")
        page.wait_for_selector("#status >> text=/^Done/", timeout=RESULT_TIMEOUT_MS)
        page.goto(f"{cluster.url}/docs")
        page.wait_for_selector(".swagger-ui .info", timeout=RESULT_TIMEOUT_MS)  # rendered, offline
    finally:
        context.close()
    foreign = [url for url in requested if not url.startswith((cluster.url, "data:", "blob:"))]
    assert requested and not foreign, foreign


def test_page_asks_for_an_api_key_when_the_api_needs_one(browser, cluster, tmp_path):
    face = tmp_path / "face.png"
    face.write_bytes(png_bytes(synthetic_face(16)))
    context, page = open_page(browser, cluster.keyed_url, bypass_csp=False)
    prompts: list[str] = []

    def answer(dialog):
        prompts.append(dialog.message)
        dialog.accept(API_KEY)

    page.on("dialog", answer)
    try:
        upload(page, face, 8, "png")
        page.wait_for_selector("#status >> text=/^Done/", timeout=RESULT_TIMEOUT_MS)
        assert len(prompts) == 1 and "API key" in prompts[0]
        upload(page, face, 4, "png")  # the key is kept for the tab: no second question
        page.wait_for_selector("#status >> text=/^Done.*\\(×4,/", timeout=RESULT_TIMEOUT_MS)
        assert len(prompts) == 1
    finally:
        context.close()
    assert not page.errors, f"JavaScript errors on the page: {page.errors}"
