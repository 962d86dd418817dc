"""Drive the play page in a real browser: Debian's headless Chromium through Selenium and
Debian's chromedriver. Drawings are replayed as pointer strokes (W3C pointer actions: the page
sees real pointerdown / pointermove / pointerup events), and the guesses are read off the page.

    with chromium_driver(profile_dir) as driver:
        driver.get(server.url)
        wait_until_ready(driver)
        replay(driver, [[xs, ys], ...])         # a Kaggle-format drawing, 0-255
        wait_for_answer(driver)
        top_guesses(driver)                      # ["cat", "eye", "mouth"]
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# What a headless Chromium needs here: no sandbox (root), no GPU, no background connections.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
    "--hide-scrollbars",
]
MARGIN = 0.02  # of the pad's side, left free around a replayed drawing


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (requirements.txt)"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "needs Debian's chromium and chromium-driver (.ci/run installs them)"
    return None


@contextlib.contextmanager
def chromium_driver(profile: Path) -> Iterator[Any]:
    """A headless Chromium session with a fresh profile folder, closed at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: Any, script: str, timeout: float = 30) -> Any:
    """Poll a JS expression until it is truthy; its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda d: d.execute_script(f"return {script};")
    )


def wait_until_ready(driver: Any) -> None:
    """The page has the classes and members (its /api/health answered)."""
    wait(driver, "document.body.dataset.state === 'idle'")


def wait_for_answer(driver: Any) -> None:
    """The guesses on the page are for the drawing as it is now, and nothing is in flight."""
    wait(
        driver,
        "document.body.dataset.state === 'idle' && "
        "document.body.dataset.answered === document.body.dataset.version",
    )


def pad_box(driver: Any) -> tuple[float, float, float]:
    """The pad's left, top (viewport CSS pixels) and side."""
    left, top, side = driver.execute_script(
        "const r = document.getElementById('pad').getBoundingClientRect();"
        "return [r.left, r.top, Math.min(r.width, r.height)];"
    )
    return left, top, side


def replay(
    driver: Any,
    drawing: Sequence[Sequence[Sequence[int]]],
    strokes: int | None = None,
    hold_points: int = 0,
) -> None:
    """Draw a 0-255 drawing on the pad with a mouse: its first `strokes` strokes (all by
    default), then, with `hold_points`, that many points of the next stroke with the button
    still down (a drawing caught mid-stroke)."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    left, top, side = pad_box(driver)
    scale = side * (1 - 2 * MARGIN) / 255

    def at(x: int, y: int) -> tuple[int, int]:
        return round(left + side * MARGIN + x * scale), round(top + side * MARGIN + y * scale)

    builder = ActionBuilder(
        driver, mouse=PointerInput(interaction.POINTER_MOUSE, "mouse"), duration=0
    )
    pointer = builder.pointer_action
    todo = list(drawing[: strokes if strokes is not None else len(drawing)])
    held = [] if not hold_points or len(todo) >= len(drawing) else [drawing[len(todo)]]
    for i, (xs, ys) in enumerate(todo + held):
        last = hold_points if i == len(todo) else len(xs)
        pointer.move_to_location(*at(xs[0], ys[0]))
        pointer.pointer_down()
        for x, y in zip(xs[1:last], ys[1:last], strict=True):
            pointer.move_to_location(*at(x, y))
        if i < len(todo):
            pointer.pointer_up()
    builder.perform()


def top_guesses(driver: Any, member: str | None = None) -> list[str]:
    """The words the page shows, best first: the blend's, or one member's."""
    where = "#top li" if member is None else f".member[data-member='{member}'] li"
    return driver.execute_script(
        f'return [...document.querySelectorAll("{where}")].map(li => li.dataset.word);'
    )


def clear(driver: Any) -> None:
    driver.find_element("id", "clear").click()
    wait_for_answer(driver)
