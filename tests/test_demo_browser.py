"""The photo demo (cifar_lib.demo) in a real browser: headless Chromium driven by Playwright.

Needs gradio and playwright (pip) and the distribution's Chromium (/usr/bin/chromium; Playwright's
own browser download is not used). Skipped where one is missing, except under CI=true, where a
skip would hide that nothing was checked: there they fail. ``DEMO_SCREENSHOT=docs/demo.png``
also writes the screenshot the README shows.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from cifar_lib.cli import main
from cifar_lib.photos import predict, sample_images
from cifar_lib.pretrained import shipped_run

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing() -> str | None:
    for module in ("gradio", "playwright"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install gradio playwright)"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url():
    why = _missing()
    if why:
        if UNDER_CI:
            pytest.fail(f"CI=true but the browser test cannot run: {why}")
        pytest.skip(why)
    from cifar_lib.demo import build_app
    app = build_app(shipped_run("fast"))
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def browser(url):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.wait_for_selector("#photo input[type=file]", state="attached", timeout=20_000)
    yield page
    page.close()


def _upload(page, path) -> None:
    page.locator("#photo input[type=file]").set_input_files(str(path))


def test_photo_gets_its_label_verdict_and_screenshot(page, tmp_path):
    photo = next(p for p in sample_images() if p.name == "dog_close.jpg")
    expected = predict(shipped_run("fast"), photo)
    _upload(page, photo)
    verdict = page.locator("#verdict textarea")
    page.wait_for_function("() => document.querySelector('#verdict textarea').value !== ''",
                           timeout=30_000)
    assert verdict.input_value().startswith(f"{expected.label}")
    top3 = page.locator("#top3").inner_text()
    assert expected.label in top3 and len([c for c, _ in expected.top_k if c in top3]) == 3
    page.wait_for_selector("#cam img", timeout=10_000)
    page.wait_for_selector("#steps img", timeout=10_000)
    shot = tmp_path / "demo.png"
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as im:
        assert im.width >= 1000 and max(ImageStat.Stat(im.convert("L")).stddev) > 20  # not blank
    if os.environ.get("DEMO_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["DEMO_SCREENSHOT"])


def test_text_file_gets_the_cli_error(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("this is a text file, not a photo\n")
    assert main(["predict", "notes.txt", "--run-dir", str(shipped_run("fast"))]) == 1
    cli_error = capsys.readouterr().err.strip()
    assert cli_error.startswith("error: notes.txt ")
    page.locator("#file input[type=file]").set_input_files(str(tmp_path / "notes.txt"))
    page.wait_for_function("() => document.querySelector('#verdict textarea').value !== ''",
                           timeout=30_000)
    assert page.locator("#verdict textarea").input_value() == cli_error
