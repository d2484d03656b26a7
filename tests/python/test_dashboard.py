"""The dashboard's read model and web app on a devnet, without a browser: its numbers against the chain and the
round reports, the Host check, the security headers, read-only routes, content by CID, panels, outages.
(tests/python/test_dashboard_browser.py loads the page in Chromium.)"""

from __future__ import annotations

import pytest
from taskkit import FED, finalize, fund_people, new_task, send_reverting

pytest.importorskip("starlette", reason="the dashboard needs starlette (pip install 'fedchain[dashboard]')")
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def people(protocol):
    return fund_people(protocol)


@pytest.fixture(scope="module")
def task(protocol, ipfs, people):
    """Round 0 finalized (alice and bob rewarded, carol slashed, alice claimed), round 1 open, a reverted claim."""
    a, b, c = (people[n] for n in ("alice", "bob", "carol"))
    task_id = new_task(protocol, ipfs, people, name="digits")
    for i, account in enumerate((a, b, c)):
        protocol.submit_update(account, task_id, 0, bytes([0x50 + i]) * 32, 100 + i)
    report = finalize(protocol, ipfs, people, task_id, 0, {a.address: 7 * FED, b.address: 3 * FED}, slashed=(c.address,))
    protocol.claim(a, task_id, 0, 7 * FED, report.reward_tree().proof(a.address))
    protocol.submit_update(b, task_id, 1, b"\x61" * 32, 10)
    bad = send_reverting(protocol, b, protocol.manager.functions.claim(task_id, 0, FED, []))
    return {"id": task_id, "report": report, "bad": bad}


@pytest.fixture(scope="module")
def feed(protocol, ipfs, devnet):
    from fedchain.content.client import IpfsClient
    from fedchain.views.dashboard import DashboardModel
    from fedchain.views.index import EventIndex
    from fedchain.web.app import Feed

    return Feed(DashboardModel(protocol, EventIndex(protocol, None), IpfsClient(devnet.ipfs_api)))


@pytest.fixture
def client(feed, task):
    from starlette.testclient import TestClient

    from fedchain.web.app import create_app

    feed.poll()
    return TestClient(create_app(feed), base_url="http://127.0.0.1:8700")


def shown(feed, task_id: int) -> dict:
    import json

    feed.poll()
    return next(t for t in json.loads(feed.snapshot_json())["tasks"] if t["task_id"] == task_id)


def test_the_snapshot_matches_the_chain_and_the_report(feed, protocol, people, task):
    t = shown(feed, task["id"])
    info = protocol.task(task["id"])
    assert t["spec"]["name"] == "digits" and t["state"] == "running" and t["validator"] == info.validator
    assert (t["budget"]["units"], t["paid_out"]["units"]) == (str(info.funded), str(info.paid_out)) == (
        str(20 * FED), str(7 * FED))
    assert t["allocated"] == {"units": str(10 * FED), "text": "10 FED"}
    first = t["rounds"][0]
    assert first["phase"] == "finalized" and first["accuracy"] == task["report"].metrics["test_accuracy"]
    rows = {u["contributor"]: u for u in first["updates"]}
    for u in task["report"].updates:
        row = rows[u.contributor]
        assert (row["status"], row["reason"], row["score"], row["reward"]["units"]) == (
            u.status, u.reason, u.score, str(u.reward))
    a, b, c = (people[n].address for n in ("alice", "bob", "carol"))
    assert (rows[a]["claimed"]["units"], rows[a]["claimable"]["units"]) == (str(7 * FED), "0")
    assert (rows[b]["claimed"]["units"], rows[b]["claimable"]["units"]) == ("0", str(3 * FED))
    assert rows[c]["slashed"]["units"] == str(info.slash_amount) and rows[c]["status"] == "rejected"
    current = t["current"]
    on_chain = protocol.round(task["id"], 1)
    assert (current["round"], current["phase"], current["deadline"]) == (1, "open", on_chain.submission_deadline)
    assert current["submitted"] == [b] and t["rounds"][1]["updates"][0]["status"] == "submitted"
    assert [p["round"] for p in t["curve"]] == [0]


def test_a_reverted_transaction_is_shown_with_its_decoded_error(feed, people, task):
    import json

    feed.poll()
    txs = {t["hash"]: t for t in json.loads(feed.snapshot_json())["transactions"]}
    bad = txs[task["bad"]]
    assert bad["status"] == 0 and bad["function"] == "claim"
    assert bad["error_text"].startswith("TaskManagerInvalidProof(taskId=") and people["bob"].address in bad["error_text"]


def test_the_page_and_its_json_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and "app.js" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    api = client.get("/api/snapshot")
    assert api.status_code == 200 and api.headers["content-type"] == "application/json"
    assert "content-security-policy" in api.headers
    assert client.get("/static/vendor/uPlot.iife.min.js").status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "attacker.local:8700"])
def test_requests_naming_another_host_are_refused(client, host):
    assert client.get("/api/snapshot", headers={"host": host}).status_code == 400
    assert client.get("/", headers={"host": host}).status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1:8700", "localhost:8700"])
def test_loopback_names_are_served(client, host):
    assert client.get("/api/snapshot", headers={"host": host}).status_code == 200


def test_it_is_read_only(client):
    for method in ("post", "put", "delete"):
        assert getattr(client, method)("/api/snapshot").status_code == 405


def test_content_named_by_the_deployment_is_served_and_other_cids_are_not(client, ipfs, task):
    t = client.get("/api/snapshot").json()
    row = next(r for x in t["tasks"] if x["task_id"] == task["id"] for r in x["rounds"] if r["report_cid"])
    report = client.get(f"/content/{row['report_cid']}")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/plain")
    assert report.content == task["report"].to_json_bytes()
    assert report.headers["content-security-policy"] == "sandbox"
    foreign = ipfs.add_bytes(b"not named by any event")
    assert client.get(f"/content/{foreign}").status_code == 404
    assert client.get("/content/not-a-cid").status_code == 404


def test_a_panel_adds_its_data_and_a_broken_one_does_not_break_the_page(feed, task, monkeypatch):
    from fedchain.views import dashboard

    monkeypatch.setattr(dashboard, "PANELS", {})
    dashboard.register_panel("committee", lambda model, task_id: {"members": 3} if task_id == task["id"] else None)
    dashboard.register_panel("broken", lambda model, task_id: 1 / 0)
    feed._cached = None
    panels = shown(feed, task["id"])["panels"]
    assert panels["committee"] == {"members": 3}
    assert panels["broken"]["error"].startswith("ZeroDivisionError")


def test_an_unreachable_chain_is_reported_without_its_url(feed, protocol, monkeypatch):
    import json

    import requests

    url = protocol.chain.rpc_url

    def down():
        raise requests.ConnectionError(f"HTTPConnectionPool: Max retries exceeded with url: {url}")

    monkeypatch.setattr(feed.model.index, "sync", down)
    feed.poll()
    chain = json.loads(feed.snapshot_json())["chain"]
    assert chain["error"].startswith("ConnectionError") and url not in chain["error"]
    assert "the RPC endpoint" in chain["error"]


def test_the_vendored_chart_library_is_the_npm_release_pinned_in_package_json():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    vendored = root / "python" / "fedchain" / "web" / "static" / "vendor"
    pinned = json.loads((root / "package.json").read_text())["devDependencies"]["uplot"]
    script = (vendored / "uPlot.iife.min.js").read_bytes()
    assert script.startswith(f"/*! https://github.com/leeoniya/uPlot (v{pinned}) */".encode())
    installed = root / "node_modules" / "uplot"
    if not (installed / "package.json").exists():
        pytest.skip("node_modules has no uplot yet (npm ci installs it): the byte comparison is skipped")
    assert json.loads((installed / "package.json").read_text())["version"] == pinned
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        assert (vendored / name).read_bytes() == (installed / "dist" / name).read_bytes()


def test_the_host_names_served_are_loopback_the_bound_address_and_those_allowed():
    from fedchain.web.server import allowed_names

    assert allowed_names("127.0.0.1") == ["127.0.0.1", "localhost"]
    assert allowed_names("0.0.0.0", ["lab.example"]) == ["127.0.0.1", "localhost", "lab.example"]
    assert allowed_names("192.168.1.5") == ["127.0.0.1", "localhost", "192.168.1.5"]
