"""The dashboard in a real browser: headless Chromium from Debian's `chromium` package, driven by Playwright for
Python with that executable (Playwright's own browser download is never used).

During a real devnet run (`fedchain demo --dashboard` on this module's devnet) the page at the address the demo
prints is watched as rounds appear and finish, without reloading; once the demo has ended, `fedchain dashboard`
serves the same deployment and every number it shows (accuracy, loss, statuses, reasons, scores, rewards, slashes,
claims, the budget) is checked against the chain and the round reports. Screenshots are saved in
test-artifacts/dashboard/ (FEDCHAIN_TEST_ARTIFACTS moves it).

Without chromium or Playwright these tests are skipped, saying how to install them; in CI (the CI variable set, or
running as root with apt-get at hand, where `make setup` installs chromium) a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from taskkit import FED, finalize, fund_people, new_task

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("FEDCHAIN_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "dashboard"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_or_skip() -> str:
    """Debian's chromium and Playwright, or a skip that says how to get them (a failure where they must be there)."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "Playwright for Python is not installed (pip install playwright==1.65.2; never `playwright install`)"
    path = shutil.which("chromium")
    if path is None and problem is None:
        problem = "Debian's chromium is not installed (apt-get install chromium; `make setup` does it as root)"
    if problem is not None:
        must = os.environ.get("CI") or (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"))
        if must:
            pytest.fail(f"the browser tests cannot run: {problem}. Here (CI, or root with apt-get) they must", pytrace=False)
        pytest.skip(f"the browser tests need a real browser: {problem}")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=executable, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        yield context
        context.close()


class Watched:
    """A page whose console errors, page errors and requests beyond the dashboard's origin are recorded (those
    requests are refused: the page must work offline)."""

    def __init__(self, browser, url: str) -> None:
        self.origin = re.match(r"https?://[^/]+", url).group(0)
        self.problems: list[str] = []
        self.page = browser.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.route("**/*", self._only_here)

    def _only_here(self, route) -> None:
        if route.request.url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self.problems.append(f"request beyond the dashboard: {route.request.url}")
            route.abort()

    def shot(self, name: str, full_page: bool = True) -> Path:
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


class Output:
    """A child process's output, read in a thread, searchable while it runs."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.text = process, ""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.text += line

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.text, re.M):
                return match
            if self.process.poll() is not None:
                time.sleep(0.2)
                self._thread.join(timeout=2)
                if match := re.search(pattern, self.text, re.M):
                    return match
                raise AssertionError(f"exited with {self.process.returncode} before {pattern!r}:\n{self.text[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.text[-3000:]}")


def fedchain(*args: str) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT / "python")}
    return subprocess.Popen([sys.executable, "-m", "fedchain.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def network(devnet) -> list[str]:
    return ["--rpc-url", devnet.rpc_url, "--ipfs-api", devnet.ipfs_api, "--deployments", str(devnet.deployments_path)]


def wait_until(condition, timeout: float) -> None:
    """Poll `condition` (the page's CSP forbids the string evaluation wait_for_function would use)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def cells(page, selector: str) -> dict[str, str]:
    """{data-field: data-value} of the cells of the row `selector`."""
    return page.eval_on_selector(selector, "row => Object.fromEntries([...row.querySelectorAll('td')]"
                                           ".map(td => [td.dataset.field, td.dataset.value]))")


def test_a_demo_watched_live_then_every_number_checked_against_the_chain(browser, devnet, protocol, ipfs, tmp_path):
    from fedchain.views.rewards import fetch_report

    rounds = 3
    demo = fedchain("demo", "--dashboard", "--dashboard-port", "0", "--clients", "3", "--rounds", str(rounds),
                    "--seed", "3", "--workdir", str(tmp_path / "work"), "--report", str(tmp_path / "report.json"),
                    "--plot", str(tmp_path / "report.png"), *network(devnet))
    out = Output(demo)
    try:
        url = out.wait_for(r"dashboard: (http://127\.0\.0\.1:\d+/)", timeout=120).group(1)
        task_id = int(out.wait_for(r"^task (\d+): \d+ rounds", timeout=120).group(1))
        live = Watched(browser, url)
        live.page.goto(f"{url}#task={task_id}")
        live.page.wait_for_selector("[data-testid=connection][data-state=live]", timeout=30_000)
        live.page.wait_for_selector('#rounds tr[data-round="0"][data-phase="finalized"]', timeout=300_000)
        first_block = int(live.page.get_attribute("body", "data-indexed-block"))
        live.shot("live-first-round.png")
        # The page follows the chain without reloading: later blocks and rounds appear in place.
        wait_until(lambda: int(live.page.get_attribute("body", "data-indexed-block")) > first_block, timeout=120)
        last = rounds - 1
        live.page.wait_for_selector(f'#rounds tr[data-round="{last}"][data-phase="finalized"]', timeout=300_000)
        live.shot("live-last-round.png")
        assert live.page.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
        assert demo.wait(timeout=300) == 0, out.text[-3000:]
        assert live.problems == []
    finally:
        stop(demo)

    dashboard = fedchain("dashboard", "--port", "0", "--index-dir", str(tmp_path / "index"), *network(devnet))
    served = Output(dashboard)
    try:
        url = served.wait_for(r"(http://127\.0\.0\.1:\d+/)", timeout=60).group(1)
        final = Watched(browser, url)
        final.page.goto(f"{url}#task={task_id}")
        final.page.wait_for_selector(f'[data-testid=task-tab][data-task="{task_id}"] .badge.ended', timeout=60_000)
        check_against_chain(final.page, protocol, ipfs, task_id, json.loads((tmp_path / "report.json").read_text()),
                            fetch_report)
        final.shot("final.png")
        assert final.problems == []
    finally:
        stop(dashboard)


def check_against_chain(page, protocol, ipfs, task_id: int, demo_report: dict, fetch_report) -> None:
    info = protocol.task(task_id)
    budget = page.get_attribute("[data-testid=budget-card] [data-field=budget]", "data-units")
    paid = page.get_attribute("[data-testid=budget-card] [data-field=paid_out]", "data-units")
    assert (int(budget), int(paid)) == (info.funded, info.paid_out)
    claimed: dict[str, int] = {}
    for e in protocol.events("RewardClaimed", taskId=task_id):
        claimed[e["args"]["contributor"]] = claimed.get(e["args"]["contributor"], 0) + e["args"]["amount"]
    earned: dict[str, int] = {}
    for fin in protocol.finalizations(task_id):
        report = fetch_report(ipfs, fin.report_digest)
        row = cells(page, f'#rounds tr[data-round="{fin.round}"]')
        assert float(row["accuracy"]) == report.metrics["test_accuracy"]
        assert float(row["loss"]) == report.metrics["test_loss"]
        assert int(row["total_rewards"]) == fin.total_rewards
        shown = page.inner_text(f'#rounds tr[data-round="{fin.round}"] td[data-field=accuracy]')
        assert shown == f"{100 * report.metrics['test_accuracy']:.2f}%"
        for u in report.updates:
            update = cells(page, f'#updates tr[data-round="{fin.round}"][data-contributor="{u.contributor}"]')
            assert (update["status"], update["reason"] or None, float(update["score"]), int(update["reward"])) == (
                u.status, u.reason, u.score, u.reward)
            assert int(update["claimed"]) == u.reward and int(update["claimable"]) == 0  # the demo claimed it all
            earned[u.contributor] = earned.get(u.contributor, 0) + u.reward
    assert {a: str(v) for a, v in earned.items()} == {a: v for a, v in demo_report["rewards"].items()}
    for address, amount in earned.items():
        row = cells(page, f'#contributors tr[data-contributor="{address}"]')
        assert (int(row["earned"]), int(row["claimed"]), int(row["claimable"])) == (amount, claimed[address], 0)
    assert page.locator("#chart canvas").count() >= 1
    claim_txs = {"0x" + bytes(e["transactionHash"]).hex() for e in protocol.events("RewardClaimed", taskId=task_id)}
    for tx in claim_txs:
        assert cells(page, f'#transactions tr[data-tx="{tx}"]')["error"] == ""


def test_strings_from_the_chain_and_ipfs_are_shown_as_text_and_the_deadline_counts_down(browser, devnet, protocol,
                                                                                        ipfs):
    from fedchain.web.server import running_dashboard

    people = fund_people(protocol)
    name = '<img src=x onerror="window.__pwned = 1">'
    reason = '<script>window.__pwned = 2</script><b>bold</b>'
    # Two contributors fill the round, so it closes at once: no time travel, the page's clock is the chain's.
    task_id = new_task(protocol, ipfs, people, rounds=2, window=3600, name=name, max_contributors=2)
    alice, bob = people["alice"], people["bob"]
    protocol.submit_update(alice, task_id, 0, b"\x71" * 32, 10)
    protocol.submit_update(bob, task_id, 0, b"\x72" * 32, 10)
    finalize(protocol, ipfs, people, task_id, 0, {alice.address: 10 * FED}, slashed=(bob.address,), reason=reason)

    with running_dashboard(protocol, devnet.ipfs_api, None, port=0) as server:
        watched = Watched(browser, server.url)
        page = watched.page
        page.goto(f"{server.url}#task={task_id}")
        page.wait_for_selector("[data-testid=task-name]")
        assert page.inner_text("[data-testid=task-name]") == name
        assert page.inner_text(f'#updates tr[data-contributor="{bob.address}"] td[data-field=reason]') == reason
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main img, main script, main b").count() == 0
        countdown = "[data-testid=current] [data-testid=countdown]"
        first = int(page.get_attribute(countdown, "data-seconds-left"))
        assert 0 < first <= 3600 and re.fullmatch(r"\d+:\d{2}", page.inner_text(countdown))
        page.wait_for_timeout(2200)
        assert int(page.get_attribute(countdown, "data-seconds-left")) < first  # it counts down in the page
        watched.shot("escaped-and-countdown.png")
        assert watched.problems == []
