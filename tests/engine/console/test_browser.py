"""The console in a real browser: Debian's headless Chromium driven by selenium, against `ketqua run`'s service.

Skipped, with the reason, where /usr/bin/chromium or /usr/bin/chromedriver is
missing (`apt-get install -y chromium chromium-driver`; .ci/run installs them).
Nothing downloads a browser: selenium is pointed at the system's binaries and
told to stay offline. Screenshots are written to the test's folder, and to
docs/console/ when KETQUA_CONSOLE_SCREENSHOTS=1 (how docs/console.md's were made).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.demo import manifest_csv, quantstudio_text, simulate_plate
from engine.files import write_atomically
from engine.ledger import Ledger
from engine.pipeline import Engine, serve
from tests.engine.console.world import NAME, PASSWORD, XSS, ConsoleWorld, build_world

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = [
    pytest.mark.skipif(
        not (CHROMIUM.exists() and DRIVER.exists()),
        reason="no system Chromium: apt-get install -y chromium chromium-driver (Debian) to run the console's browser tests",
    ),
    # Slow (a browser and the whole service), and kept out of the faketime passes: LD_PRELOAD would reach Chromium.
    pytest.mark.slow,
]
DOCS = Path(__file__).resolve().parents[3] / "docs" / "console"
DESKTOP, PHONE = (1280, 900), (390, 844)


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path, dev_keys: Path) -> ConsoleWorld:
    """The processed data folder with its times as they were (the service runs on the real clock);
    a test marked with a ``config`` parameter runs its pipeline with that ketqua.toml text too."""
    extra = getattr(request, "param", "")
    built = build_world(tmp_path / "live", dev_keys, pin=False, config=extra)
    built.extra_config = extra  # type: ignore[attr-defined]
    return built


FAST_SERVICE = "[intake]\nstable_seconds = 0.3\npoll_seconds = 0.2\nrescan_seconds = 1.0\n\n[console]\nrefresh_seconds = 2\n"


@pytest.fixture
def service(world: ConsoleWorld) -> Iterator[str]:
    """`ketqua run`'s service (watch, pipeline, API and console) on a free loopback port; yields the base URL."""
    world.data.config.write_text(FAST_SERVICE + getattr(world, "extra_config", ""), encoding="utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = Engine(world.data, workers=0, certificates=True)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(serve(engine, port=port, until=stop)), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            threading.Event().wait(0.05)
    try:
        yield base
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=120)
        engine.close()


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver  # lazy: only where a browser exists
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must never fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--lang=vi", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def _shoot(driver: object, tmp_path: Path, name: str, size: tuple[int, int] = DESKTOP) -> None:
    """A full-page screenshot at ``size`` (width fixed, height grown to the page)."""
    driver.set_window_size(size[0], size[1])
    height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    driver.set_window_size(size[0], min(max(size[1], int(height) + 120), 1800))
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("KETQUA_CONSOLE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)
    driver.set_window_size(*size)


def _labelled(driver: object) -> None:
    """Every visible form control has a label a screen reader can name it by."""
    from selenium.webdriver.common.by import By

    for field in driver.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), textarea, select"):
        ident = field.get_attribute("id")
        assert ident and driver.find_elements(By.CSS_SELECTOR, f"label[for='{ident}']"), field.get_attribute("name")
    for button in driver.find_elements(By.TAG_NAME, "button"):
        assert button.text.strip() or button.get_attribute("aria-label"), button.get_attribute("outerHTML")


def test_console_in_a_browser(world: ConsoleWorld, service: str, browser: object, tmp_path: Path) -> None:
    """Log in by keyboard, watch a dropped plate appear, open a quarantine reason, search without diacritics, correct a name."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 60)
    d.get(service + "/console/")
    wait.until(ec.presence_of_element_located((By.ID, "username")))
    _shoot(d, tmp_path, "login", PHONE)
    _labelled(d)
    d.find_element(By.ID, "username").send_keys("tech")
    d.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.ID, "count-files_received")))

    # A plate dropped now appears on the open overview by itself (console.js refreshes it).
    second = simulate_plate(11, pool_size=2, prevalence=0.1, name="PL261129-00077")
    write_atomically(world.data.inbox / "second-manifest.csv", manifest_csv(second.manifest))
    write_atomically(world.data.inbox / "PL261129-00077.txt", quantstudio_text(second))
    wait.until(lambda drv: "PL261129-00077.txt" in drv.find_element(By.ID, "live").text and "xong" in drv.find_element(By.ID, "live").text)
    _shoot(d, tmp_path, "overview")
    _labelled(d)
    _shoot(d, tmp_path, "overview-phone", PHONE)

    # The quarantined file's reason, readable.
    d.find_element(By.LINK_TEXT, "Tệp bị cách ly").click()
    d.find_element(By.PARTIAL_LINK_TEXT, "Xem lý do").click()
    report = wait.until(ec.presence_of_element_located((By.ID, "report"))).text
    assert "What to do" in report and "broken-manifest.csv" in report
    _shoot(d, tmp_path, "quarantine")
    _labelled(d)

    # Search without diacritics; the <script> name stays text (no alert ever opens).
    d.find_element(By.LINK_TEXT, "Tìm kiếm").click()
    box = d.find_element(By.ID, "q")
    box.send_keys("nguyen van a" + Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".hit")))
    assert NAME in d.find_element(By.TAG_NAME, "main").text
    _shoot(d, tmp_path, "search")
    _labelled(d)
    _shoot(d, tmp_path, "search-phone", PHONE)
    d.get(service + "/console/search?q=script")
    assert XSS in d.find_element(By.TAG_NAME, "main").text
    with pytest.raises(NoAlertPresentException):
        d.switch_to.alert.text  # noqa: B018 - the property access is the check

    # Correct the name: a new signed version.
    d.get(service + "/console/search?q=nguyen+van+a")
    d.find_element(By.CSS_SELECTOR, ".hit table a").click()
    name = wait.until(ec.presence_of_element_located((By.ID, "f-full_name")))
    name.clear()
    name.send_keys("Nguyễn Văn Anh")
    d.find_element(By.ID, "f-reason").send_keys("sai chính tả tên")
    d.find_element(By.CSS_SELECTOR, ".grid-form button[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "p.notice")))
    main = d.find_element(By.TAG_NAME, "main").text
    assert "Đã ký phiên bản 2" in main and "Nguyễn Văn Anh" in main and "Chữ ký hợp lệ" in main
    _shoot(d, tmp_path, "correction")
    _labelled(d)

    # The plate grid, and the English switch.
    d.get(service + "/console/plates")
    d.find_element(By.PARTIAL_LINK_TEXT, "PL261129-00077").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.plate")))
    _shoot(d, tmp_path, "plate")
    d.find_element(By.LINK_TEXT, "English").click()
    wait.until(lambda drv: "Plate" in drv.find_element(By.TAG_NAME, "h1").text)
    d.get(service + "/console/retests")
    _shoot(d, tmp_path, "retests-en")
    _labelled(d)
    _shoot(d, tmp_path, "retests-phone", PHONE)


REVIEW = '[results]\nrelease = "review"\n'


@pytest.mark.parametrize("world", [REVIEW], indirect=True)
def test_release_a_plate_under_review_in_a_browser(world: ConsoleWorld, service: str, browser: object, tmp_path: Path) -> None:
    """A reviewer opens the plates waiting for release, releases one, and its results are signed with the reviewer's name."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 60)
    d.get(service + "/console/login")
    wait.until(ec.presence_of_element_located((By.ID, "username"))).send_keys("rev")
    d.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.ID, "count-release_waiting")))
    d.find_element(By.LINK_TEXT, "Phát hành kết quả").click()
    assert "plate.txt" in d.find_element(By.TAG_NAME, "main").text
    _shoot(d, tmp_path, "release")
    _labelled(d)
    d.find_element(By.CSS_SELECTOR, "form button[type=submit].primary").click()
    assert "Đã phát hành plate.txt" in wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "p.notice"))).text
    d.get(service + "/console/search?q=nguyen+van+a")

    def signed(drv: object) -> bool:
        drv.refresh()
        return "Chữ ký hợp lệ" in drv.find_element(By.TAG_NAME, "main").text

    wait.until(signed)
    with Ledger.open(world.data.ledger, readonly=True) as ledger:
        release = json.loads(ledger.results()[0]["payload"])["release"]
    assert release["rule"] == "review" and release["by"] == "rev" and release["at"].endswith("Z")
