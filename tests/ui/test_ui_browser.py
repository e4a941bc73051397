"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a
live grid: the hub and a process node as subprocesses, a task with two workers, dead
letters. Screenshots go to $GRIDQ_UI_SHOTS (docs/img when refreshing the docs) or to
the test's temporary folder."""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from live_stack import QUEUE, TASK, LiveStack, wait_for
from ui_helpers import ADMIN, JOIN, VIEWER

from gridq import keys
from gridq.queue import Queue

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _root_need() -> Callable[[str], None]:
    # tests/ is not a package and every folder has a conftest.py: load the root one by
    # path to reuse need() (skip on a laptop, fail under CI=true).
    spec = importlib.util.spec_from_file_location(
        "_gridq_root_conftest_ui", Path(__file__).resolve().parents[1] / "conftest.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    need: Callable[[str], None] = mod.need
    return need


need = _root_need()


@pytest.fixture(scope="module")
def stack(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    redis_server.client().flushall()
    s = LiveStack(redis_server.url, tmp_path_factory.mktemp("uistack"))
    try:
        s.start()
    except Exception as exc:
        s.stop()
        raise AssertionError(
            f"live stack did not start: {exc}\nhub: {s.log('hub')}\nnode: {s.log('node')}"
        ) from exc
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        need("no Debian chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = Path(os.environ.get("GRIDQ_UI_SHOTS") or tmp_path_factory.mktemp("shots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


class Tab:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, base: str, **ctx: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800}, **ctx)
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(f"{m.text} {m.location}") if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def go(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def login(self, token: str) -> None:
        self.go("/ui/login")
        self.page.fill("#token", token)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base + "/ui/")

    def close(self) -> None:
        self.context.close()


def _no_secret_in(tab: Tab) -> None:
    html = tab.page.content()
    for secret in (ADMIN, VIEWER, JOIN):
        assert secret not in html
        assert secret not in tab.page.url
    storage = tab.page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage),"
        " document.cookie])"
    )
    assert storage == '[[],[],""]'  # nothing stored; the session cookie is HttpOnly


def test_pages_actions_and_access(
    stack: LiveStack, browser: Any, shots: Path, redis_server: Any
) -> None:
    tab = Tab(browser, stack.url)
    page = tab.page
    # Without a session every page goes to the login.
    tab.go("/ui/tasks")
    assert page.url.startswith(stack.url + "/ui/login")
    page.screenshot(path=str(shots / "ui-login.png"))
    tab.login(ADMIN)
    # Jobs arrive for a while, so the charts have a line: the sampler writes every 5 s.
    conn = redis_server.client()
    feed = Queue.from_url(redis_server.url, QUEUE)
    before = conn.llen(keys.HUB_UI_TOTALS)
    while conn.llen(keys.HUB_UI_TOTALS) < before + 3:
        feed.push_raw(*[str(i).encode() for i in range(40)])
        time.sleep(1)
    tab.go("/ui/")
    page.wait_for_selector("#c15 .uplot")
    page.wait_for_selector("[data-doctor-summary]:not(.muted)")
    assert "nodes online" in page.inner_text(".tiles")
    page.screenshot(path=str(shots / "ui-overview.png"), full_page=True)
    _no_secret_in(tab)

    tab.go("/ui/tasks")
    row = page.inner_text(f"table.grid tr:has(a[href='/ui/tasks/{TASK}'])")
    assert "2/2" in row and "active" in row
    page.click("th a:has-text('Processed')")  # sort
    assert "sort=processed" in page.url
    page.screenshot(path=str(shots / "ui-tasks.png"), full_page=True)

    tab.go(f"/ui/tasks/{TASK}")
    page.wait_for_selector("#crate .uplot")
    assert page.locator("ol.dead > li").count() == 7
    assert "ValueError" in page.inner_text("#dead")
    page.locator("ol.dead > li details summary").first.click()
    assert "Traceback" in page.inner_text("ol.dead > li pre >> nth=0")
    page.screenshot(path=str(shots / "ui-task.png"), full_page=True)

    # Pause (seen through the REST API), then requeue one dead letter while nothing runs.
    page.click("button:has-text('Pause')")
    page.wait_for_selector("p.note")
    assert stack.task()["status"] == "paused"
    wait_for(lambda: stack.task()["instances"]["running"] == 0, what="workers to stop")
    page.locator("ol.dead > li button:has-text('Requeue')").first.click()
    page.wait_for_selector("p.note:has-text('requeued 1')")
    live = wait_for(lambda: (f := stack.task()["live"]) and f["dead"] == 6 and f)
    assert live["depth"] == 1
    page.click("button:has-text('Resume')")
    page.wait_for_selector("p.note:has-text('resumed')")
    assert stack.task()["status"] == "active"
    # The requeued job fails again (it is still not a number) and returns to the list.
    wait_for(lambda: stack.task()["live"]["dead"] == 7, what="the job to die again")

    # A change without its CSRF token is refused (the session cookie alone is not enough).
    r = page.request.post(f"{stack.url}/ui/tasks/{TASK}/pause", form={"x": "1"})
    assert r.status == 403
    assert stack.task()["status"] == "active"

    tab.go("/ui/nodes")
    node = stack.node()
    assert node["hostname"] in page.inner_text("table.grid")
    page.screenshot(path=str(shots / "ui-nodes.png"), full_page=True)
    tab.go(f"/ui/nodes/{node['node_id']}")
    assert "process" in page.inner_text(".facts")
    page.screenshot(path=str(shots / "ui-node.png"), full_page=True)

    tab.go("/ui/doctor")
    assert page.locator("table.grid tbody tr").count() > 0
    page.screenshot(path=str(shots / "ui-doctor.png"), full_page=True)
    with stack.api() as c:
        body = {"name": "hourly", "task": TASK, "cron": "0 * * * *", "payload": {"item": "1"}}
        assert c.post("/api/schedules", json=body).status_code == 201
    tab.go("/ui/schedules")
    assert "hourly" in page.inner_text("main")
    page.click("button:has-text('Run now')")
    page.wait_for_selector("p.note:has-text('pushed')")
    with stack.api() as c:
        job_id = c.get("/api/schedules/hourly").json()["last_job_id"]
    assert job_id and job_id in page.inner_text("main")
    page.screenshot(path=str(shots / "ui-schedules.png"), full_page=True)
    with stack.api() as c:
        assert c.delete("/api/schedules/hourly").status_code == 204
    # The audit trail shows the changes made above, by whom, without any token value.
    tab.go("/ui/audit")
    trail = page.inner_text("table.grid")
    assert "task.pause" in trail and "schedule.run" in trail and "admin" in trail
    page.screenshot(path=str(shots / "ui-audit.png"), full_page=True)

    # Keyboard: the first Tab reaches the skip link, the next ones the navigation.
    tab.go("/ui/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    for _ in range(3):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Tasks"
    page.keyboard.press("Enter")
    page.wait_for_url(stack.url + "/ui/tasks")
    _no_secret_in(tab)
    assert tab.errors == []
    tab.close()


def test_viewer_is_refused_and_phone_width(stack: LiveStack, browser: Any, shots: Path) -> None:
    tab = Tab(browser, stack.url)
    tab.login(VIEWER)
    tab.go(f"/ui/tasks/{TASK}")
    tab.page.click("button:has-text('Pause')")
    assert "viewer token may look, not change" in tab.page.inner_text("main")
    assert stack.task()["status"] == "active"
    _no_secret_in(tab)
    # The browser reports the refused POST's status; that is the only error.
    assert len(tab.errors) == 1 and "403" in tab.errors[0] and "/pause" in tab.errors[0]
    tab.close()

    phone = Tab(browser, stack.url, color_scheme="dark")
    phone.page.set_viewport_size({"width": 375, "height": 800})
    phone.login(ADMIN)
    phone.page.wait_for_selector("#c15 .uplot")
    # Nothing wider than the screen but the scrollable tables.
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 375
    phone.page.screenshot(path=str(shots / "ui-overview-phone-dark.png"), full_page=True)
    phone.go(f"/ui/tasks/{TASK}")
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 375
    phone.page.screenshot(path=str(shots / "ui-task-phone-dark.png"), full_page=True)
    assert phone.errors == []
    phone.close()


def test_live_refresh_and_background_tab(stack: LiveStack, browser: Any) -> None:
    """Pages change without a reload, and a hidden tab stops asking the hub."""
    tab = Tab(browser, stack.url)
    tab.login(ADMIN)
    page = tab.page
    with stack.api() as c:
        assert c.patch(f"/api/tasks/{TASK}", json={"replicas": 2}).status_code == 200
    page.wait_for_selector("[data-live=events] li:has-text('changed: replicas')")
    assert page.url == stack.url + "/ui/"  # no navigation: the region was swapped in

    live: list[str] = []
    page.on("request", lambda r: live.append(r.url) if r.headers.get("x-live") else None)
    visibility = """h => { Object.defineProperty(document, 'hidden', {configurable: true,
        get: () => h}); document.dispatchEvent(new Event('visibilitychange')); }"""
    page.evaluate(visibility, True)
    page.wait_for_timeout(500)  # a refresh already in flight may finish
    live.clear()
    page.wait_for_timeout(5000)  # two and a half refresh intervals
    assert live == []
    with page.expect_request(lambda r: r.headers.get("x-live") == "1"):
        page.evaluate(visibility, False)
    assert tab.errors == []
    tab.close()


def test_expired_session_and_drain(
    stack: LiveStack, browser: Any, redis_server: Any, shots: Path
) -> None:
    tab = Tab(browser, stack.url)
    tab.login(ADMIN)
    conn: redis.Redis = redis_server.client()
    for k in conn.scan_iter(match=keys.hub_ui_session("*")):
        conn.pexpire(k, 1)
    tab.go("/ui/nodes")
    assert tab.page.url.startswith(stack.url + "/ui/login")
    tab.login(ADMIN)
    node = stack.node()
    tab.go(f"/ui/nodes/{node['node_id']}")
    tab.page.click("button:has-text('Drain and stop')")
    tab.page.wait_for_selector("p.note:has-text('drain and stop requested')")
    assert stack.node()["stop_requested"]
    wait_for(lambda: stack.node()["status"] in ("stopping", "left"), what="the node to drain")
    # The overview's scripts may have asked for data after the session expired: those
    # 401s (which send the page to the login) are the only errors allowed.
    assert [e for e in tab.errors if not ("401" in e and "/ui/api/" in e)] == []
    tab.close()
    if os.environ.get("GRIDQ_UI_SHOTS"):
        shutil.copy(shots / "ui-overview.png", shots / "dashboard.png")
