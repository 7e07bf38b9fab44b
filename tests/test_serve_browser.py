"""The page of `cnnfruit serve` in a real browser: the system's headless Chromium, driven by Playwright.

The test uploads a photo as a person would, reads the class the page shows, and checks it
against the library's answer. It takes a screenshot either way; when it fails, the screenshot is
kept in test-artifacts/ beside the tests; CNNFRUIT_SCREENSHOTS=folder keeps every test's, as
<test name>.png.
Without Chromium it skips, except under CI (CI=true), where a missing browser is a failure.
"""
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")

import cnnfruit  # noqa: E402
from cnnfruit.serve.app import Service, create_app  # noqa: E402

from serving import serving, train_model, write_photos  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, headless, with nothing that reaches beyond this machine.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _missing(what):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; .ci/run installs it")
    pytest.skip(f"{what} is missing")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright")
    if not os.path.exists(CHROMIUM):
        _missing(CHROMIUM)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    cnnfruit.configure_threads()
    model = train_model(tmp_path_factory)
    service = Service(cnnfruit.Classifier.load(model), min_confidence=0.5)
    service.warm_up()
    with serving(create_app(service)) as url:
        yield url, service
    service.close()


@pytest.fixture
def page(browser, request, tmp_path):
    """A page of its own; its screenshot is kept in test-artifacts/ if the test fails."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.problems = problems
    failures = request.session.testsfailed
    yield page
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    if request.session.testsfailed > failures:  # the test's own report is counted before its teardown
        ARTIFACTS.mkdir(exist_ok=True)
        kept = ARTIFACTS / f"{request.node.name}.png"
        shutil.copyfile(shot, kept)
        print(f"screenshot of the failed page: {kept}")
    elif os.environ.get("CNNFRUIT_SCREENSHOTS"):
        shutil.copyfile(shot, os.path.join(os.environ["CNNFRUIT_SCREENSHOTS"], f"{request.node.name}.png"))
    page.close()


def expected_answer(service, path, threshold):
    """The library's answer, asked through the server's own thread: the page's requests may be
    running, and a classifier takes one call at a time."""
    probs = service.batcher.predict(cnnfruit.load_image(path)[None]).result()
    return service.classifier.decide(probs, threshold)[0] or "unsure"


def test_photos_chosen_on_the_page_are_classified_and_explained(site, page, tmp_path):
    url, service = site
    photos = [write_photos(tmp_path, size=160)[k] for k in (2, 0, 1)]
    page.goto(url)
    page.wait_for_selector("body[data-ready]")
    assert page.inner_text("#classes-line") == "Classes: Carambula, Lychee, Pear"
    # Selectors only: the page's Content-Security-Policy refuses the scripts that wait_for_function evaluates.
    page.set_input_files("#choose", [str(p) for p in photos])
    page.wait_for_selector(".card:nth-child(3)[data-class]")
    labels = page.locator(".card .answer .label").all_inner_texts()
    assert labels == [expected_answer(service, p, 0.5) for p in photos]
    assert page.locator(".card").first.locator(".bars li").count() == 3
    view = page.locator(".card .network-view").first
    assert view.get_attribute("src").startswith("data:image/png;base64,")
    page.wait_for_selector(".card:nth-child(3)[data-map=occlusion]", timeout=20_000)
    assert page.locator(".card .shown").first.get_attribute("src").startswith("blob:")
    page.locator("#model summary").click()
    layers = page.locator("#model-body section").filter(has=page.get_by_role("heading", name="Layers"))
    assert layers.locator("tbody tr").count() == len(
        cnnfruit.summarize(service.classifier.arch).layers) + 1
    assert page.problems == []


def test_the_threshold_makes_answers_unsure_and_the_keyboard_reaches_everything(site, page, tmp_path):
    url, service = site
    photos = write_photos(tmp_path)
    page.goto(url)
    page.wait_for_selector("body[data-ready]")
    reached = []  # every control, in reading order
    for _ in range(7):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.id || document.activeElement.tagName"))
    assert reached == ["choose", "camera", "threshold", "INPUT", "tta", "clear", "SUMMARY"]
    page.set_input_files("#choose", [str(p) for p in photos[:3]])
    page.wait_for_selector(".card:nth-child(3)[data-class]")
    labels = page.locator(".card .answer .label").all_inner_texts()
    assert labels == [expected_answer(service, p, 0.5) for p in photos[:3]]
    page.locator("#threshold").fill("1")
    assert page.locator(".card .answer .label").all_inner_texts() == ["unsure"] * 3


def test_the_page_fits_a_phone(site, browser, tmp_path):
    url, _ = site
    phone = browser.new_page(viewport={"width": 360, "height": 740})
    try:
        phone.goto(url)
        phone.wait_for_selector("body[data-ready]")
        phone.set_input_files("#choose", [str(write_photos(tmp_path)[0])])
        phone.wait_for_selector(".card[data-class]")
        phone.locator("#model summary").click()
        width = phone.evaluate("() => document.documentElement.scrollWidth")
        if os.environ.get("CNNFRUIT_SCREENSHOTS"):
            phone.screenshot(path=os.path.join(os.environ["CNNFRUIT_SCREENSHOTS"], "phone.png"), full_page=True)
        assert width <= 360
    finally:
        phone.close()
