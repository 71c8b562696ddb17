"""The sampling station in headless Chromium: a collector types (as a keyboard-wedge scanner does) cards and tubes, fills a pool, the manifest is in the ledger.

Same browser and service fixtures as tests/engine/console/test_browser.py (skipped, with the reason, without
/usr/bin/chromium and /usr/bin/chromedriver). Screenshots go to the test's folder, and to docs/station/ when
KETQUA_CONSOLE_SCREENSHOTS=1 (how docs/station.md's were made).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from engine.ledger import Ledger
from tests.engine.console.test_browser import PHONE, _labelled, browser, service, world  # noqa: F401 - fixtures
from tests.engine.console.world import PASSWORD, ConsoleWorld

pytestmark = [
    pytest.mark.skipif(not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()),
                       reason="no system Chromium: apt-get install -y chromium chromium-driver (Debian) to run the station's browser test"),
    pytest.mark.slow,
]
DOCS = Path(__file__).resolve().parents[3] / "docs" / "station"
STATION = '\n[station]\ndesign = "dorfman:3"\nsite = "Trạm Y tế Phường 1"\n'
CARDS = [
    "079090001234||Nguyễn Văn An|02091990|Nam|12 Lê Lợi, Phường Bến Nghé, Quận 1|15042021",
    "001185000777|012345678|Trần Thị Bình|15031985|Nữ|5 Hàng Bài, Hoàn Kiếm, Hà Nội|01072021",
    "048205123456||Lê Hoàng Cường|30122005|Nam|7 Bạch Đằng, Hải Châu, Đà Nẵng|20112022",
]


def _shoot(driver: object, tmp_path: Path, name: str) -> None:
    driver.set_window_size(*PHONE)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(PHONE[0], min(max(PHONE[1], int(height) + 40), 1800))
    driver.execute_script("window.scrollTo(0, 0)")
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("KETQUA_CONSOLE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)
    driver.set_window_size(*PHONE)


@pytest.mark.parametrize("world", [STATION], indirect=True)
def test_station_in_a_browser(world: ConsoleWorld, service: str, browser: object, tmp_path: Path) -> None:  # noqa: F811 - fixtures
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    d.set_window_size(*PHONE)
    wait = WebDriverWait(d, 60)
    d.get(service + "/station/")
    wait.until(ec.presence_of_element_located((By.ID, "username")))
    d.find_element(By.ID, "username").send_keys("col")
    d.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.ID, "qr")))
    assert "/station/" in d.current_url and "?" not in d.current_url
    _labelled(d)
    for i, qr in enumerate(CARDS, start=1):
        assert d.switch_to.active_element.get_attribute("id") == "qr"  # the scanner types into the focused field
        d.switch_to.active_element.send_keys(qr + Keys.ENTER)
        wait.until(ec.presence_of_element_located((By.ID, "station-card")))
        assert d.switch_to.active_element.get_attribute("id") == "phone"
        if i == 2:
            _shoot(d, tmp_path, "station-card")
            _labelled(d)
        d.switch_to.active_element.send_keys("0901 234 56" + str(i))
        tube = d.find_element(By.ID, "tube")
        tube.click()
        tube.send_keys(f"TUBE-{i:04d}" + Keys.ENTER)
        wait.until(ec.presence_of_element_located((By.ID, "qr")))
        assert "?" not in d.current_url and "Nguy" not in d.current_url
    message = d.find_element(By.ID, "station-message").text
    assert "đã đủ 3 ống" in message
    _shoot(d, tmp_path, "station-pool-full")
    with Ledger.open(world.data.ledger) as ledger:
        events = ledger.events(kind="station_manifest")
        assert len(events) == 1 and events[0]["detail"]["tubes"] == 3 and events[0]["detail"]["collector"] == "col"
        assert ledger.file(events[0]["file"])["state"] == "done"
        names = [r[0] for r in ledger.conn.execute("SELECT full_name FROM specimens WHERE specimen_id LIKE 'TUBE-%' ORDER BY specimen_id")]
        assert names == ["Nguyễn Văn An", "Trần Thị Bình", "Lê Hoàng Cường"]
