"""The local dataset viewer: a Starlette app over one run directory (and optionally a second one
to compare funnels with), plus `serve_viewer` to run it on loopback with uvicorn.

JSON API (used by static/viewer.js):
    GET  /api/summary                 run name, funnel, facets (columns, reasons, verifiers), reviewer
    GET  /api/rows?q&column&status&reason&step&verdict&review&offset&limit
    GET  /api/rows/{key}              one row (review applied) and its decision history
    POST /api/review                  {key, decision: accept|reject|edit, comment, reviewer, edits}
    GET  /api/agreement               reviewer-reviewer and reviewer-verifier agreement
    GET  /api/compare                 funnels of this run and --compare side by side
    GET  /api/export?mode=filter|gold reviewed rows as JSONL (download)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from synthloom.errors import BadInputError, SynthloomError
from synthloom.report import charts
from synthloom.report.rundata import load_stats
from synthloom.viewer.agreement import agreement_report
from synthloom.viewer.dataset import Query, ViewerDataset
from synthloom.viewer.export import reviewed_rows
from synthloom.viewer.store import ReviewStore

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise BadInputError(f"query parameter {name!r} must be an integer, got {raw!r}") from None


def _same_origin(request: Request) -> bool:
    """Refuse cross-site writes: a web page elsewhere must not post reviews to this local server."""
    origin = request.headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _closing(store: ReviewStore) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        store.close()

    return lifespan


def create_viewer_app(run_dir: Path, compare: Path | None = None, reviewer: str = "reviewer") -> Starlette:
    """The viewer as an ASGI app (tests drive it in-process or through `serve_viewer`)."""
    run_dir = Path(run_dir)
    dataset = ViewerDataset.load(run_dir)
    store = ReviewStore.for_run(run_dir)
    compare_stats = load_stats(Path(compare)) if compare is not None else None

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def summary(request: Request) -> Response:
        stats = dataset.data.stats
        return JSONResponse({
            "run": dataset.data.name, "run_dir": str(run_dir), "rows": len(dataset.entries),
            "kept": sum(e.status == "kept" for e in dataset.entries),
            "rejected": sum(e.status == "rejected" for e in dataset.entries),
            "funnel": stats.get("funnel") or [], "columns": dataset.columns(), "reasons": dataset.reasons(),
            "steps": dataset.steps(), "verifiers": dataset.verifiers(), "reviewer": reviewer,
            "compare": str(compare) if compare is not None else None,
        })

    def rows(request: Request) -> Response:
        p = request.query_params
        query = Query(q=p.get("q", ""), column=p.get("column", ""), status=p.get("status", ""),
                      reason=p.get("reason", ""), step=p.get("step", ""), verdict=p.get("verdict", ""),
                      review=p.get("review", ""), offset=_int(request, "offset", 0), limit=_int(request, "limit", 25))
        reviews = store.latest()
        total, page = dataset.query(query, reviews)
        return JSONResponse({"total": total, "offset": query.offset,
                             "rows": [dataset.shown(e, reviews) for e in page]})

    def one_row(request: Request) -> Response:
        entry = dataset.get(request.path_params["key"])
        shown = dataset.shown(entry, store.latest())
        shown["history"] = [d.to_dict() for d in store.history(entry.key)]
        return JSONResponse(shown)

    async def review(request: Request) -> Response:
        if not _same_origin(request):
            return JSONResponse({"error": "cross-origin review refused"}, status_code=403)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send the decision as application/json"}, status_code=415)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise BadInputError("review body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadInputError("review body must be a JSON object")
        entry = dataset.get(str(body.get("key", "")))
        edits = body.get("edits") or None
        if edits is not None:
            if not isinstance(edits, dict):
                raise BadInputError("'edits' must map column names to new values")
            unknown = [k for k in edits if k == "_meta" or k not in entry.row]
            if unknown:
                raise BadInputError(f"cannot edit column {unknown[0]!r}: not a column of this row")
            edits = {k: v for k, v in edits.items() if entry.row.get(k) != v} or None
        decision = str(body.get("decision", ""))
        if decision == "edit" and not edits:
            decision = "accept"  # nothing changed: an edit without changes is an acceptance
        saved = store.record(entry.key, str(body.get("reviewer") or reviewer), decision,
                             str(body.get("comment") or ""), edits)
        return JSONResponse({"saved": saved.to_dict(), "row": dataset.shown(entry, store.latest())})

    def agreement(request: Request) -> Response:
        reviews = store.latest()
        auto = ((e.key, e.automatic_verdicts()) for e in dataset.entries if e.key in reviews)
        return JSONResponse(agreement_report(reviews, auto))

    def compare_view(request: Request) -> Response:
        funnel = dataset.data.stats.get("funnel") or []
        if compare_stats is None:
            return JSONResponse({"compare": None, "svg": charts.funnel_chart(funnel) if funnel else "", "funnel": funnel})
        other = compare_stats.get("funnel") or []
        label_a, label_b = run_dir.name, Path(compare or "").name  # type: ignore[arg-type]
        return JSONResponse({"compare": str(compare), "label_a": label_a, "label_b": label_b,
                             "funnel": funnel, "other": other,
                             "svg": charts.compare_funnels(funnel, other, label_a, label_b)})

    def export(request: Request) -> Response:
        mode = request.query_params.get("mode", "filter")
        lines = [json.dumps(r, ensure_ascii=False, default=str) for r in reviewed_rows(dataset, store.latest(), mode)]
        return Response("\n".join(lines) + ("\n" if lines else ""), media_type="application/x-ndjson",
                        headers={"Content-Disposition": f'attachment; filename="{run_dir.name}-{mode}.jsonl"'})

    async def on_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    app = Starlette(routes=[
        Route("/", index),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/summary", summary),
        Route("/api/rows", rows),
        Route("/api/rows/{key:path}", one_row),
        Route("/api/review", review, methods=["POST"]),
        Route("/api/agreement", agreement),
        Route("/api/compare", compare_view),
        Route("/api/export", export),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], exception_handlers={SynthloomError: on_error}, lifespan=_closing(store))
    app.state.dataset = dataset
    app.state.store = store
    return app


def serve_viewer(run_dir: Path, host: str = "127.0.0.1", port: int = 8765, compare: Path | None = None,
                 reviewer: str = "reviewer") -> None:
    """Serve the viewer on loopback until interrupted (blocking)."""
    import uvicorn

    if host not in LOOPBACK:
        raise BadInputError(f"the viewer only listens on loopback (127.0.0.1, localhost, ::1), not {host!r}")
    app = create_viewer_app(Path(run_dir), compare=compare, reviewer=reviewer)
    print(f"synthloom viewer: http://{'[::1]' if host == '::1' else host}:{port}/  (run {run_dir}, reviewer {reviewer})",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__: list[Any] = ["create_viewer_app", "serve_viewer"]
