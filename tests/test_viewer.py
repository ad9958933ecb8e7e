"""The dataset viewer and expert review: store durability, agreement, search/filter, export, and
the real page in Chromium against the viewer running as a real subprocess (killed and restarted)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from report_run import CHROMIUM, CHROMIUM_ARGS, assert_png, make_run
from starlette.testclient import TestClient

from synthloom.errors import BadInputError
from synthloom.io import read_rows
from synthloom.pipeline.checkpoint import Checkpoints
from synthloom.records import META
from synthloom.report.rundata import step_dirs
from synthloom.viewer import create_viewer_app, export_reviewed
from synthloom.viewer.agreement import agreement_report, cohen_kappa
from synthloom.viewer.store import ReviewStore


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("viewer")
    make_run(base / "run")
    make_run(base / "run2", min_len=34)  # stricter length filter: a different funnel to compare
    return base / "run", base / "run2"


def all_rows(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """Kept and rejected rows read straight from the run directory (independent of the viewer)."""
    kept = read_rows(run_dir / "data" / "train.jsonl")
    rejected = [r for i, name, _ in step_dirs(run_dir, "rejected") for r in Checkpoints(run_dir).read_rejected(i, name)]
    return kept, rejected


def fresh_copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# --- store and agreement --------------------------------------------------------------------

def test_store_is_durable_append_only_and_validated(tmp_path):
    store = ReviewStore(tmp_path / "review.sqlite")
    store.record("r1", "alice", "accept", "fine")
    store.record("r1", "alice", "reject", "changed my mind")
    store.record("r1", "bob", "edit", "typo", {"output": "fixed"})
    with pytest.raises(BadInputError, match="unknown review decision"):
        store.record("r1", "alice", "maybe")
    with pytest.raises(BadInputError, match="needs the edited columns"):
        store.record("r1", "alice", "edit")
    # no close(): a second connection (another process after a crash) sees every committed decision
    other = ReviewStore(tmp_path / "review.sqlite")
    latest = other.latest()["r1"]
    assert latest["alice"].decision == "reject" and latest["bob"].edits == {"output": "fixed"}
    assert [d.decision for d in other.history("r1")] == ["accept", "reject", "edit"]
    mode = other._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_cohen_kappa_matches_sklearn_and_agreement_report():
    from sklearn.metrics import cohen_kappa_score

    a = [True, True, False, True, False, False, True, True]
    b = [True, False, False, True, False, True, True, True]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa([True, True], [True, True]) is None  # undefined: one label only

    store_decisions = {}
    from synthloom.viewer.store import Decision

    for i, (x, y) in enumerate(zip(a, b)):
        store_decisions[f"k{i}"] = {"alice": Decision(2 * i, f"k{i}", "alice", "accept" if x else "reject", "", ""),
                                    "bob": Decision(2 * i + 1, f"k{i}", "bob", "edit" if y else "reject", "", "")}
    auto = [(f"k{i}", {"parity": x, "pipeline": True}) for i, x in enumerate(a)]
    rep = agreement_report(store_decisions, auto)
    pair = rep["pairs"][0]
    assert (pair["a"], pair["b"], pair["n"]) == ("alice", "bob", 8)
    assert pair["agreement"] == pytest.approx(6 / 8)
    assert pair["kappa"] == pytest.approx(cohen_kappa_score(a, b))
    vs = {(r["reviewer"], r["rater"]): r for r in rep["automatic"]}
    assert vs[("alice", "parity")]["agreement"] == 1.0 and vs[("alice", "parity")]["kappa"] == pytest.approx(1.0)
    assert vs[("bob", "pipeline")]["agreement"] == pytest.approx(sum(b) / 8)  # pipeline kept all 8


# --- API: search, filters, review, export ----------------------------------------------------

def test_search_and_filters_return_the_right_rows(runs):
    run_dir, _ = runs
    kept, rejected = all_rows(run_dir)
    client = TestClient(create_viewer_app(run_dir))

    def keys(**params) -> list[str]:
        body = client.get("/api/rows", params={"limit": 500, **params}).json()
        assert body["total"] == len(body["rows"])
        return sorted(r["row"][META]["id"] for r in body["rows"])

    def ids(rows) -> list[str]:
        return sorted(r[META]["id"] for r in rows)

    assert keys() == sorted(ids(kept) + ids(r["row"] for r in rejected))
    assert keys(status="kept") == ids(kept)
    assert keys(reason="duplicate") == ids(r["row"] for r in rejected if r["reason"] == "duplicate")
    assert keys(step="verify", status="rejected") == ids(r["row"] for r in rejected if r["step"] == "verify")
    assert keys(verdict="parity:fail") == ids(r["row"] for r in rejected if r["reason"] == "wrong_answer")
    assert keys(verdict="parity:pass") == ids(kept)
    # text search, anywhere or in one column (case-insensitive)
    want = ids(r for r in kept if "topic 3]" in r["output"])
    assert want and keys(q="TOPIC 3]", column="output", status="kept") == want
    assert keys(q="topic 13", column="topic") == ids([r for r in kept if r["topic"] == "topic 13"]
                                                      + [r["row"] for r in rejected if r["row"].get("topic") == "topic 13"])
    assert keys(q="no such text anywhere") == []
    # paging
    page = client.get("/api/rows", params={"limit": 5, "offset": 10}).json()
    assert page["total"] == len(kept) + len(rejected) and len(page["rows"]) == 5
    assert client.get("/api/rows", params={"status": "bogus"}).json()["error"].startswith("unknown status")


def test_review_api_applies_human_verdict_and_exports(runs, tmp_path):
    run_dir = fresh_copy(runs[0], tmp_path / "run")
    kept, rejected = all_rows(run_dir)
    client = TestClient(create_viewer_app(run_dir, reviewer="alice"))
    k0, k1, k2 = (r[META]["id"] for r in kept[:3])
    rescued = next(r["row"][META]["id"] for r in rejected if r["reason"] == "wrong_answer")

    def review(**body):
        return client.post("/api/review", json=body)

    assert review(key=k0, decision="accept", comment="correct").status_code == 200
    assert review(key=k1, decision="reject", comment="wrong").status_code == 200
    r = review(key=k2, decision="edit", comment="fixed answer", edits={"output": "the corrected answer"})
    assert r.json()["row"]["row"]["output"] == "the corrected answer"
    assert review(key=rescued, decision="accept", reviewer="bob").status_code == 200
    # refused: unknown row, editing _meta, cross-site post, non-JSON body
    assert "no row with key" in review(key="nope", decision="accept").json()["error"]
    assert review(key=k0, decision="edit", edits={"_meta": {}}).status_code == 400
    assert client.post("/api/review", json={"key": k0, "decision": "reject"},
                       headers={"origin": "http://evil.example"}).status_code == 403
    assert client.post("/api/review", content="key=x",
                       headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 415

    row = client.get(f"/api/rows/{k2}").json()["row"]
    human = row[META]["verdicts"]["human"]
    assert human["ok"] is True and human["detail"] == "fixed answer" and human["original"]["output"] == kept[2]["output"]
    assert client.get("/api/rows", params={"review": "rejected"}).json()["total"] == 1
    assert client.get("/api/rows", params={"verdict": "human:pass"}).json()["total"] == 3

    n = export_reviewed(run_dir, tmp_path / "accepted.jsonl", mode="filter")
    accepted = read_rows(tmp_path / "accepted.jsonl")
    assert n == 3 and sorted(r[META]["id"] for r in accepted) == sorted([k0, k2, rescued])
    assert next(r for r in accepted if r[META]["id"] == k2)["output"] == "the corrected answer"
    n = export_reviewed(run_dir, tmp_path / "gold.jsonl", mode="gold")
    gold = {r[META]["id"]: r for r in read_rows(tmp_path / "gold.jsonl")}
    assert n == 4 and gold[k1]["human_label"] == "reject" and gold[k1]["human_comment"] == "wrong"
    assert gold[rescued]["pipeline_status"] == "rejected" and gold[rescued]["human_label"] == "accept"
    with pytest.raises(BadInputError, match="unknown export mode"):
        export_reviewed(run_dir, tmp_path / "x.jsonl", mode="bogus")  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="no reviews yet"):
        export_reviewed(runs[1], tmp_path / "x.jsonl")


# --- the real page in Chromium, the viewer as a real subprocess --------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_viewer(run_dir: Path, port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "synthloom.viewer", "--run-dir", str(run_dir), "--port", str(port), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"viewer exited: {proc.stdout.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/summary", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("viewer did not start in 60 s")


def test_loopback_only(runs):
    from synthloom.viewer import serve_viewer

    with pytest.raises(BadInputError, match="only listens on loopback"):
        serve_viewer(runs[0], host="0.0.0.0", port=free_port())


@pytest.mark.browser
@pytest.mark.slow
def test_review_in_chromium_survives_killed_server(runs, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    run_dir = fresh_copy(runs[0], tmp_path / "run")
    kept, rejected = all_rows(run_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = start_viewer(run_dir, port, "--reviewer", "dr-house")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(url)
                page.wait_for_selector("body[data-ready='1']")
                expect(page.locator("#total")).to_have_text(f"{len(kept) + len(rejected)} matching rows")
                # filter: rejected rows of the dedup step, then a text search inside one column
                page.select_option("#status", "rejected")
                page.select_option("#reason", "duplicate")
                page.click("#apply")
                n_dup = sum(r["reason"] == "duplicate" for r in rejected)
                expect(page.locator("#total")).to_have_text(f"{n_dup} matching rows")
                page.select_option("#status", "kept")
                page.select_option("#reason", "")
                page.fill("#q", "topic 7]")
                page.select_option("#column", "output")
                page.click("#apply")
                target = next(r for r in kept if "topic 7]" in r["output"])
                expect(page.locator("#rows tr.row")).to_have_count(1)
                assert page.locator("#rows tr.row").get_attribute("data-key") == target[META]["id"]
                # review it: reject with a comment, clicked in the page
                page.locator("#rows tr.row").click()
                page.fill("#comment", "answer is vague")
                page.click("#reject")
                expect(page.locator("#saved")).to_contain_text("saved: reject by dr-house")
                # and correct another row's output, then save the edit
                page.fill("#q", "")
                page.click("#apply")
                other = kept[0]
                page.locator(f'#rows tr.row[data-key="{other[META]["id"]}"]').click()
                editor = page.locator('#detail-columns textarea[data-col="output"]')
                expect(editor).to_have_value(str(other["output"]))  # the pane shows the clicked row
                editor.fill("An expert-corrected answer.")
                page.fill("#comment", "rewrote")
                page.click("#save-edit")
                expect(page.locator("#saved")).to_contain_text("saved: edit by dr-house")
            finally:
                browser.close()
        # crash: no graceful shutdown
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

        proc = start_viewer(run_dir, port, "--compare", str(runs[1]))
        row = httpx.get(f"{url}api/rows/{target[META]['id']}").json()["row"]
        human = row[META]["verdicts"]["human"]
        assert human["ok"] is False and human["detail"] == "answer is vague"
        assert human["reviews"][0]["reviewer"] == "dr-house"
        assert row[META]["verdicts"]["parity"]["ok"] is True  # automatic verdicts untouched
        edited = httpx.get(f"{url}api/rows/{other[META]['id']}").json()["row"]
        assert edited["output"] == "An expert-corrected answer."
        assert edited[META]["verdicts"]["human"]["original"]["output"] == other["output"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(url)
                page.wait_for_selector("body[data-ready='1']")
                # the decision shows in the page after the restart, as a human verdict
                page.select_option("#verdict", "human:fail")
                page.click("#apply")
                expect(page.locator("#rows tr.row")).to_have_count(1)
                page.locator("#rows tr.row").click()
                expect(page.locator("#detail-history")).to_contain_text("dr-house: reject — answer is vague")
                expect(page.locator("#detail-meta")).to_contain_text('"human"')
                # funnels of both runs side by side
                page.click('nav .tab[data-tab="funnel"]')
                steps = len(json.loads((run_dir / "stats.json").read_text())["funnel"])
                expect(page.locator('#funnel-chart g[id^="compare-bar-0-"]')).to_have_count(steps)
                expect(page.locator('#funnel-chart g[id^="compare-bar-1-"]')).to_have_count(steps)
                assert "too_short: 36" in page.locator("#funnel-table").inner_text()
                page.click('nav .tab[data-tab="agreement"]')
                expect(page.locator("#agree-auto")).to_contain_text("parity")
                shot = tmp_path / "viewer.png"
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
        assert_png(shot)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert export_reviewed(run_dir, tmp_path / "gold.jsonl", mode="gold") == 2
