// synthloom viewer page: talks to the JSON API of synthloom.viewer.app (same origin, no libraries).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { offset: 0, limit: 25, total: 0, selected: null, summary: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

async function api(path, options) {
  const res = await fetch(path, options);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

function option(select, value, label) { select.append(el("option", { value }, label ?? value)); }

function verdictTags(row) {
  const span = el("span");
  const verdicts = (row._meta && row._meta.verdicts) || {};
  for (const [name, v] of Object.entries(verdicts)) {
    const ok = v && v.ok;
    span.append(el("span", { class: "tag " + (ok === true ? "ok" : ok === false ? "fail" : "none"), title: (v && v.detail) || "" }, name));
  }
  return span;
}

function previewText(row) {
  // The longest text column says most about a row (ids and topics are short).
  let best = "";
  for (const [k, v] of Object.entries(row)) if (k !== "_meta" && typeof v === "string" && v.length > best.length) best = v;
  return best || JSON.stringify(row);
}

function filterParams() {
  const p = new URLSearchParams();
  for (const id of ["q", "column", "status", "reason", "step", "verdict", "review"]) if ($(id).value) p.set(id, $(id).value);
  p.set("offset", state.offset); p.set("limit", state.limit);
  return p;
}

async function loadRows() {
  const data = await api("/api/rows?" + filterParams());
  state.total = data.total;
  const tbody = $("rows").querySelector("tbody");
  tbody.replaceChildren();
  for (const item of data.rows) {
    const tr = el("tr", { class: "row", "data-key": item.key, "data-status": item.status },
      el("td", {}, el("span", { class: "tag " + item.status }, item.status)),
      el("td", {}, item.step + (item.reason ? " · " + item.reason : "")),
      el("td", {}, verdictTags(item.row)),
      el("td", { class: "text" }, previewText(item.row)));
    if (item.key === state.selected) tr.classList.add("selected");
    tr.addEventListener("click", () => showRow(item.key));
    tbody.append(tr);
  }
  $("total").textContent = `${data.total} matching rows`;
  const pages = Math.max(1, Math.ceil(data.total / state.limit));
  $("page").textContent = `page ${Math.floor(state.offset / state.limit) + 1} of ${pages}`;
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + state.limit >= data.total;
}

async function showRow(key) {
  state.selected = key;
  for (const tr of document.querySelectorAll("#rows tr.row")) tr.classList.toggle("selected", tr.dataset.key === key);
  const item = await api("/api/rows/" + encodeURIComponent(key));
  $("detail").hidden = false;
  $("detail-key").textContent = item.key;
  $("detail-status").replaceChildren(el("span", { class: "tag " + item.status }, item.status), verdictTags(item.row));
  $("detail-reason").textContent = item.reason ? `rejected at ${item.step}: ${item.reason} — ${item.detail}` : "";
  const cols = $("detail-columns");
  cols.replaceChildren();
  for (const [k, v] of Object.entries(item.row)) {
    if (k === "_meta") continue;
    const text = typeof v === "string" ? v : JSON.stringify(v);
    const area = el("textarea", { rows: Math.min(12, Math.max(2, Math.ceil(text.length / 110))), value: text, "data-col": k });
    area.dataset.json = typeof v === "string" ? "0" : "1";
    area.dataset.original = text;
    cols.append(el("label", {}, k), area);
  }
  const history = item.history || [];
  $("detail-history").replaceChildren(...history.map((d) =>
    el("div", { class: "muted" }, `${d.created_at} · ${d.reviewer}: ${d.decision}${d.comment ? " — " + d.comment : ""}`)));
  $("detail-meta").textContent = JSON.stringify(item.row._meta || {}, null, 2);
  $("comment").value = "";
  $("saved").textContent = "";
}

async function decide(decision) {
  if (!state.selected) return;
  const edits = {};
  for (const area of document.querySelectorAll("#detail-columns textarea")) {
    if (area.value === area.dataset.original) continue;
    try { edits[area.dataset.col] = area.dataset.json === "1" ? JSON.parse(area.value) : area.value; }
    catch (e) { $("saved").textContent = `column ${area.dataset.col}: not valid JSON`; return; }
  }
  const body = { key: state.selected, decision, comment: $("comment").value, reviewer: $("reviewer").value };
  if (decision === "edit") body.edits = edits;
  try {
    const res = await api("/api/review", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const key = state.selected;
    await showRow(key);
    $("saved").textContent = `saved: ${res.saved.decision} by ${res.saved.reviewer} (#${res.saved.seq})`;
    await loadRows();
  } catch (e) {
    $("saved").textContent = "not saved: " + e.message;
    $("saved").className = "error";
  }
}

function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%"; }
function num(x) { return x === null || x === undefined ? "–" : x.toFixed(3); }

function fillTable(table, header, rows) {
  table.replaceChildren(el("tr", {}, ...header.map((h) => el("th", {}, h))), ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c)))));
}

async function loadFunnel() {
  const data = await api("/api/compare");
  $("funnel-chart").innerHTML = data.svg;  // SVG rendered by matplotlib on this server
  const other = Object.fromEntries((data.other || []).map((s) => [s.step, s]));
  const reasons = (s) => Object.entries(s.rejected || {}).map(([r, n]) => `${r}: ${n}`).join(", ");
  if (data.compare) {
    fillTable($("funnel-table"), ["step", `${data.label_a} in`, `${data.label_a} kept`, `${data.label_b} in`, `${data.label_b} kept`, "reasons (A)", "reasons (B)"],
      data.funnel.map((s) => [s.step, s.rows_in, s.rows_out, other[s.step]?.rows_in ?? "–", other[s.step]?.rows_out ?? "–", reasons(s), other[s.step] ? reasons(other[s.step]) : ""]));
  } else {
    fillTable($("funnel-table"), ["step", "in", "kept", "rejected", "reasons"],
      data.funnel.map((s) => [s.step, s.rows_in, s.rows_out, s.rejected_total, reasons(s)]));
  }
}

async function loadAgreement() {
  const data = await api("/api/agreement");
  fillTable($("agree-pairs"), ["reviewer A", "reviewer B", "rows both reviewed", "agreement", "κ"],
    data.pairs.map((p) => [p.a, p.b, p.n, pct(p.agreement), num(p.kappa)]));
  fillTable($("agree-auto"), ["reviewer", "rater", "rows", "agreement", "κ"],
    data.automatic.map((p) => [p.reviewer, p.rater, p.n, pct(p.agreement), num(p.kappa)]));
}

function showTab(name) {
  for (const b of document.querySelectorAll("nav .tab")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll("main .panel")) s.hidden = s.id !== "tab-" + name;
  if (name === "funnel") loadFunnel();
  if (name === "agreement") loadAgreement();
}

async function init() {
  const s = await api("/api/summary");
  state.summary = s;
  $("run-name").textContent = s.run;
  $("run-counts").textContent = `${s.kept} kept · ${s.rejected} rejected · ${s.run_dir}`;
  $("reviewer").value = localStorage.getItem("synthloom-reviewer") || s.reviewer;
  $("reviewer").addEventListener("change", () => localStorage.setItem("synthloom-reviewer", $("reviewer").value));
  for (const c of s.columns) option($("column"), c, "in " + c);
  for (const st of s.steps) option($("step"), st);
  for (const r of s.reasons) option($("reason"), r);
  for (const v of s.verifiers) for (const w of ["pass", "fail"]) option($("verdict"), `${v}:${w}`, `${v} ${w}ed`);
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; loadRows(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadRows(); });
  $("next").addEventListener("click", () => { state.offset += state.limit; loadRows(); });
  $("accept").addEventListener("click", () => decide("accept"));
  $("reject").addEventListener("click", () => decide("reject"));
  $("save-edit").addEventListener("click", () => decide("edit"));
  for (const b of document.querySelectorAll("nav .tab")) b.addEventListener("click", () => showTab(b.dataset.tab));
  await loadRows();
  document.body.dataset.ready = "1";
}

init().catch((e) => { document.body.prepend(el("p", { class: "error" }, "viewer error: " + e.message)); });
