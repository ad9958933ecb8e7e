"""The run report: numbers computed from a real run directory, and the page in real Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from report_run import CHROMIUM, CHROMIUM_ARGS, LEAK, assert_png, make_run

from synthloom.errors import BadInputError
from synthloom.report import metrics
from synthloom.report.html import write_report
from synthloom.report.rundata import load_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    make_run(out)
    return out


@pytest.fixture(scope="module")
def report(run_dir) -> Path:
    return write_report(run_dir)


def test_report_is_self_contained_with_every_section(report, run_dir):
    assert report == run_dir / "report.html"
    html = report.read_text(encoding="utf-8")
    # Nothing fetched from anywhere: no external scripts, styles, images or fonts.
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)=', html)
    assert "url(http" not in html and "@import" not in html
    for section in ("funnel", "usage", "throughput", "lengths", "diversity", "verification", "contamination", "rows"):
        assert f'<section id="{section}">' in html
    funnel = json.loads((run_dir / "stats.json").read_text())["funnel"]
    assert len(re.findall(r'<g id="funnel-bar-\d+"', html)) == len(funnel)
    # one reject segment per (step, reason) with rejects
    segments = sum(len(s["rejected"]) for s in funnel)
    assert len(re.findall(r'<g id="funnel-reject-\d+-\d+"', html)) == segments


def test_numbers_match_the_run(run_dir):
    data = load_run(run_dir)
    stats = data.stats
    assert data.kept_total == stats["rows"] == 12
    assert data.rejected_total == sum(s["rejected_total"] for s in stats["funnel"])
    # verifier verdicts: 12 kept rows passed, 4 rejected failed; rows rejected before it carry none
    rates = {r.verifier: r for r in metrics.verification_rates(data)}
    assert (rates["parity"].passed, rates["parity"].failed) == (12, 4)
    assert rates["parity"].rate == pytest.approx(0.75)
    # contamination: the one leaked row, attributed to the benchmark file and its item
    contam = metrics.contamination(data)
    assert contam["benchmarks"] == {"leakbench": {"rows": 1, "items": {"leakbench/0": 1}}}
    assert LEAK in json.dumps([r.row for r in data.rejected if r.reason == "contaminated"])
    # usage and cache come from stats.json
    usage = metrics.usage_table(stats)
    assert usage[0]["requests"] == stats["usage"]["scripted"]["requests"] == 60 + 17
    cache = metrics.cache_rates(stats)
    assert cache[0]["misses"] == 77 and cache[0]["rate"] == 0.0
    # throughput: cumulative rows out per step never decrease and end at the funnel's numbers
    tp = metrics.throughput(data)
    for s in stats["funnel"]:
        series = tp["steps"][s["step"]]
        assert [y for _, y in series] == sorted(y for _, y in series)
        assert series[-1][1] == s["rows_out"]


def test_contamination_detail_formats_and_cache_hits():
    from synthloom.report.rundata import RejectedRow, RunData

    rejected = [RejectedRow("dc", "contaminated", "13-gram overlap with HumanEval/7 (3 windows)", {"_meta": {"id": "a"}}),
                RejectedRow("dc", "contaminated", "judge: rephrase of HumanEval/7 (cosine 0.91)", {"_meta": {"id": "b"}}),
                RejectedRow("dc", "contaminated", "judge: rephrase of champ-12 (cosine 0.80)", {"_meta": {"id": "c"}}),
                RejectedRow("dd", "duplicate", "same as x", {})]
    data = RunData(Path("."), {}, {"steps": [{"type": "decontaminate", "benchmarks": ["humaneval", "champ"]}]}, [], rejected)
    c = metrics.contamination(data)
    assert c["benchmarks"]["HumanEval"] == {"rows": 2, "items": {"HumanEval/7": 2}}
    assert c["benchmarks"]["champ-12"]["rows"] == 1
    assert c["configured"] == ["humaneval", "champ"]
    rates = metrics.cache_rates({"cache": {"m": {"hits": 3, "misses": 1, "coalesced": 0, "tokens_saved": 40}}})
    assert rates == [{"model": "m", "hits": 3, "misses": 1, "tokens_saved": 40, "rate": 0.75}]


def test_resumed_cache_hits_show_in_report(tmp_path):
    out = tmp_path / "run"
    make_run(out)
    shutil.rmtree(out / "steps")
    shutil.rmtree(out / "rejected")
    make_run(out)  # every request answered from the cache this time
    html = write_report(out).read_text()
    row = re.search(r'<table id="cache-table">.*?</table>', html, re.DOTALL).group(0)
    assert "100.0%" in row


def test_unfinished_run_without_dataset_and_bad_dir(tmp_path):
    out = tmp_path / "run"
    make_run(out)
    shutil.rmtree(out / "data")
    data = load_run(out)
    assert data.kept_total == 12  # read back from the last step's checkpoint parts
    assert "funnel-bar-0" in write_report(out).read_text()
    with pytest.raises(BadInputError, match="not a synthloom run directory"):
        write_report(tmp_path)
    with pytest.raises(BadInputError, match="does not exist"):
        write_report(tmp_path / "nope")


@pytest.mark.browser
def test_report_renders_in_chromium(report, run_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    funnel = json.loads((run_dir / "stats.json").read_text())["funnel"]
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            bars = page.locator('svg g[id^="funnel-bar-"] path')
            assert bars.count() == len(funnel)
            # every bar has drawn geometry and the chart has a real on-screen size
            assert all(len(d) > 10 for d in bars.evaluate_all("els => els.map(e => e.getAttribute('d'))"))
            box = page.locator("#funnel svg").bounding_box()
            assert box and box["width"] > 300 and box["height"] > 150
            for section in ("usage", "throughput", "lengths", "verification"):
                assert page.locator(f"#{section} svg").count() >= 1, section
            assert "leakbench\t1\tleakbench/0" in page.locator("#contamination-table").inner_text()
            # the embedded row browser filters offline
            total = page.locator("details.row").count()
            page.select_option("#row-status", "rejected")
            rejected = page.locator("details.row:visible").count()
            assert 0 < rejected < total
            page.fill("#row-search", "contaminated")
            assert page.locator("details.row:visible").count() == 1
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert requests == [report.as_uri()]  # self-contained: nothing else was requested
    assert_png(shot)
