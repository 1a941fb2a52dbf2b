// fleet.html: one self-contained page (no server, no external asset) with the ledger as a sortable
// table and, per tenant, charts (inline SVG) of the data-loss window, the restore time and the
// repository size over time. The data rides in a JSON script element, escaped so that no string
// of it can close the element or start markup; the page's script writes every value with
// textContent, never as HTML. A Content-Security-Policy allows only this page's own script and style.
import { createHash } from "node:crypto";
import type { Fleet, TenantSeries } from "./fleet-aggregate";
import { worstFirst } from "./fleet-report";

/** JSON that is inert inside a <script> element and in HTML: no <, >, & or line separators. */
export function scriptSafeJson(data: unknown): string {
  return JSON.stringify(data)
    .replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

/** At most `max` points, evenly picked, the last one always kept. */
function thin<T>(xs: T[], max: number): T[] {
  if (xs.length <= max) return xs;
  const step = xs.length / max;
  const out: T[] = [];
  for (let i = 0; i < max - 1; i++) out.push(xs[Math.floor(i * step)]!);
  out.push(xs[xs.length - 1]!);
  return out;
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b1b1b; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
.counts span { margin-right: 1.2em; }
table { border-collapse: collapse; width: 100%; margin-top: 1em; }
th, td { border-bottom: 1px solid #ddd; padding: .3em .5em; text-align: left; vertical-align: top; }
th { cursor: pointer; background: #f2f2f2; position: sticky; top: 0; user-select: none; white-space: nowrap; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; white-space: nowrap; }
tr.status-warn td { background: #fff6c2; }
tr.status-alarm td { background: #fde2c4; }
tr.stale td { background: #f4b4b4; color: #6b0000; }
tr.selected td:first-child { box-shadow: inset 5px 0 #3b6fd8; }
td.nowrap { white-space: nowrap; }
button.tenant { font: inherit; border: 0; background: none; color: #1f4fb8; text-decoration: underline; cursor: pointer; padding: 0; }
.why { min-width: 24em; max-width: 40em; font-size: .9em; }
#charts { display: flex; flex-wrap: wrap; gap: 1.5em; margin-top: 1em; }
#charts figure { margin: 0; }
#charts figcaption { font-weight: 600; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
.problems { color: #6b0000; }
`;

// Plain ES2017 without template literals (this file embeds it in one).
const SCRIPT = String.raw`
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("fleet-data").textContent);
  var SVG = "http://www.w3.org/2000/svg";
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svgEl(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    return e;
  }
  function age(s) {
    if (s === null || s === undefined) return "-";
    if (s >= 172800) return (s / 86400).toFixed(1) + " d";
    if (s >= 3600) return (s / 3600).toFixed(1) + " h";
    return Math.round(s / 60) + " min";
  }
  function bytes(b) {
    if (b === null || b === undefined) return "-";
    var sign = b < 0 ? "-" : "", v = Math.abs(b), units = ["B", "KiB", "MiB", "GiB", "TiB"];
    for (var i = 0; i < units.length; i++) {
      if (v < 1024 || i === units.length - 1) return sign + (i === 0 ? v : v.toFixed(1)) + " " + units[i];
      v /= 1024;
    }
  }
  var STATUS_RANK = { alarm: 0, warn: 1, ok: 2 };
  // key, header, kind (num/str), value for sorting, text shown
  var columns = [
    ["status", "status", "num", function (r) { return STATUS_RANK[r.status]; }, function (r) { return r.status + (r.stale ? " (stale)" : ""); }],
    ["tenant", "tenant", "str", function (r) { return r.tenant; }, null],
    ["box", "box", "str", function (r) { return r.box; }, function (r) { return r.box; }],
    ["age", "newest archive age", "num", function (r) { return r.newestArchive ? r.newestArchive.ageSeconds : null; }, function (r) { return r.newestArchive ? age(r.newestArchive.ageSeconds) : "none"; }],
    ["tamper", "tamper", "str", function (r) { return r.tamper ? r.tamper.verdict : null; }, function (r) { return r.tamper ? r.tamper.verdict : "never"; }],
    ["drill", "last drill", "num", function (r) { return r.lastDrill ? Date.parse(r.lastDrill.time) : null; }, function (r) { return r.lastDrill ? r.lastDrill.time.slice(0, 10) + (r.lastDrill.healthy ? " healthy" : " UNHEALTHY") : "never"; }],
    ["dlw", "data-loss window", "num", function (r) { return r.lastDrill ? r.lastDrill.dataLossWindowSeconds : null; }, function (r) { return age(r.lastDrill ? r.lastDrill.dataLossWindowSeconds : null); }],
    ["restore", "restore time", "num", function (r) { return r.lastDrill ? r.lastDrill.restoreSeconds : null; }, function (r) { return age(r.lastDrill ? r.lastDrill.restoreSeconds : null); }],
    ["size", "repo size", "num", function (r) { return r.repo ? r.repo.uniqueCsize : null; }, function (r) { return bytes(r.repo ? r.repo.uniqueCsize : null); }],
    ["growth", "growth 7 d", "num", function (r) { return r.repo ? r.repo.growth7dBytes : null; }, function (r) { return bytes(r.repo ? r.repo.growth7dBytes : null); }],
    ["unclassified", "unclassified", "num", function (r) { return r.unclassified ? r.unclassified.count : null; }, function (r) { return r.unclassified ? r.unclassified.count : "-"; }],
    ["shrink", "shrink", "str", function (r) { return r.shrink ? r.shrink.verdict : null; }, function (r) { return r.shrink ? r.shrink.verdict : "-"; }],
    ["pins", "pins", "num", function (r) { return r.pins.length; }, function (r) { return r.pins.length; }],
    ["next", "next drill by", "num", function (r) { return r.nextDrill ? Date.parse(r.nextDrill.by) : null; }, function (r) { return r.nextDrill ? r.nextDrill.by.slice(0, 10) + (r.nextDrill.overdue ? " (overdue)" : "") : "-"; }],
    ["why", "why", "str", function (r) { return r.reasons.map(function (x) { return x.text; }).join("; "); }, function (r) { return r.reasons.map(function (x) { return x.text; }).join("; ") || "-"; }]
  ];
  var rows = data.rows.slice();
  var sortKey = null, sortDir = 1, selected = null;
  var table = document.getElementById("fleet");
  var thead = table.querySelector("thead tr"), tbody = table.querySelector("tbody");

  columns.forEach(function (c, i) {
    var th = el("th", { "data-key": c[0], scope: "col", tabindex: "0" }, c[1]);
    th.addEventListener("click", function () { sortBy(i); });
    th.addEventListener("keydown", function (ev) { if (ev.key === "Enter") sortBy(i); });
    thead.appendChild(th);
  });

  function compare(c) {
    return function (a, b) {
      var x = c[3](a), y = c[3](b);
      if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1; // unknown last
      if (y === null || y === undefined) return -1;
      var d = c[2] === "num" ? x - y : (x < y ? -1 : x > y ? 1 : 0);
      return d * sortDir;
    };
  }
  function sortBy(i) {
    var c = columns[i];
    sortDir = sortKey === c[0] ? -sortDir : 1;
    sortKey = c[0];
    rows.sort(compare(c));
    Array.prototype.forEach.call(thead.children, function (th) { th.removeAttribute("aria-sort"); });
    thead.children[i].setAttribute("aria-sort", sortDir === 1 ? "ascending" : "descending");
    render();
  }
  function render() {
    tbody.textContent = "";
    rows.forEach(function (r) {
      var tr = el("tr", { "data-tenant": r.tenant, "class": "status-" + r.status + (r.stale ? " stale" : "") + (r.tenant === selected ? " selected" : "") });
      columns.forEach(function (c) {
        var td;
        if (c[0] === "tenant") {
          td = el("td");
          var b = el("button", { type: "button", "class": "tenant", title: "show charts" }, r.tenant);
          b.addEventListener("click", function () { select(r.tenant); });
          td.appendChild(b);
        } else {
          td = el("td", { "class": c[0] === "why" ? "why" : c[2] === "num" && c[0] !== "status" && c[0] !== "drill" && c[0] !== "next" ? "num" : "nowrap" }, c[4](r));
        }
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
  }

  function chart(title, points, fmt, badIndex) {
    var W = 360, H = 160, L = 62, R = 10, T = 12, B = 28;
    var fig = el("figure"), cap = el("figcaption", {}, title);
    fig.appendChild(cap);
    var svg = svgEl("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title, "data-chart": title });
    var pts = points.filter(function (p) { return p[1] !== null && p[1] !== undefined; });
    if (pts.length === 0) {
      var t = svgEl("text", { x: L, y: H / 2 }); t.textContent = "no data"; svg.appendChild(t);
      fig.appendChild(svg); return fig;
    }
    var x0 = pts[0][0], x1 = pts[pts.length - 1][0], ymax = 0;
    pts.forEach(function (p) { if (p[1] > ymax) ymax = p[1]; });
    if (x1 === x0) { x0 -= 86400; x1 += 86400; }
    if (ymax === 0) ymax = 1;
    function sx(x) { return L + (x - x0) / (x1 - x0) * (W - L - R); }
    function sy(y) { return H - B - y / ymax * (H - T - B); }
    svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }));
    svg.appendChild(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }));
    var top = svgEl("text", { x: 2, y: T + 4 }); top.textContent = fmt(ymax); svg.appendChild(top);
    var zero = svgEl("text", { x: 2, y: H - B }); zero.textContent = fmt(0); svg.appendChild(zero);
    var from = svgEl("text", { x: L, y: H - 8 }); from.textContent = new Date(x0 * 1000).toISOString().slice(0, 10); svg.appendChild(from);
    var to = svgEl("text", { x: W - R, y: H - 8, "text-anchor": "end" }); to.textContent = new Date(x1 * 1000).toISOString().slice(0, 10); svg.appendChild(to);
    var d = pts.map(function (p, i) { return (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1); }).join(" ");
    svg.appendChild(svgEl("path", { d: d, fill: "none", stroke: "#3b6fd8", "stroke-width": 1.5 }));
    if (pts.length <= 60) pts.forEach(function (p) {
      var bad = badIndex !== undefined && p[badIndex] === 0;
      var c = svgEl("circle", { cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r: 3, fill: bad ? "#c00" : "#3b6fd8" });
      var tip = svgEl("title", {}); tip.textContent = new Date(p[0] * 1000).toISOString().slice(0, 16) + ": " + fmt(p[1]) + (bad ? " (unhealthy)" : "");
      c.appendChild(tip); svg.appendChild(c);
    });
    fig.appendChild(svg);
    return fig;
  }
  function select(name) {
    selected = name;
    var s = data.series[name] || { repo: [], drills: [] };
    var box = document.getElementById("charts");
    box.textContent = "";
    document.getElementById("charts-title").textContent = "Tenant " + name + " over time";
    var dlw = s.drills.map(function (d) { return [d[0], d[1], d[3]]; });
    var rt = s.drills.map(function (d) { return [d[0], d[2], d[3]]; });
    box.appendChild(chart("data-loss window at each drill", dlw, age, 2));
    box.appendChild(chart("restore time at each drill", rt, age, 2));
    box.appendChild(chart("repository size (deduplicated, compressed)", s.repo, bytes));
    render();
  }
  document.getElementById("shown").textContent = String(rows.length);
  render();
  if (rows.length) select(rows[0].tenant);
})();
`;

const sha256 = (s: string): string => createHash("sha256").update(s, "utf8").digest("base64");

export function renderPage(fleet: Fleet, series: Map<string, TenantSeries>): string {
  const data = {
    generated: fleet.generated,
    rows: worstFirst(fleet.tenants),
    series: Object.fromEntries(fleet.tenants.map((r) => {
      const s = series.get(r.tenant) ?? { repo: [], drills: [] };
      return [r.tenant, { repo: thin(s.repo, 200), drills: thin(s.drills, 200) }];
    })),
  };
  const c = fleet.counts;
  const csp = `default-src 'none'; script-src 'sha256-${sha256(SCRIPT)}'; style-src 'sha256-${sha256(STYLE)}'; base-uri 'none'; form-action 'none'`;
  const problems = fleet.problems.length
    ? `<details class="problems"><summary>${fleet.problems.length} problem(s) of the state root</summary><ul>${fleet.problems.map((p) => `<li>${escapeHtml(p)}</li>`).join("")}</ul></details>`
    : "";
  const plan = fleet.drillPlan;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${escapeHtml(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fleet recoverability ledger ${escapeHtml(fleet.generated)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Fleet recoverability ledger</h1>
<p>Generated ${escapeHtml(fleet.generated)} &middot; <span id="shown"></span> tenant(s).
Drill rota: ${plan.budgetPerRun} per run every ${plan.runIntervalDays} d, every tenant within ${plan.daysToDrillAll} d${plan.withinPeriod ? "" : ` <strong>(above the ${plan.periodDays} d period: raise the budget)</strong>`}.</p>
<p class="counts"><span>alarm: <strong id="count-alarm">${c.alarm}</strong></span><span>warn: <strong id="count-warn">${c.warn}</strong></span><span>ok: <strong id="count-ok">${c.ok}</strong></span>
Red rows are stale (no archive within the schedule plus grace); orange rows alarm; yellow rows warn. Click a header to sort, a tenant for its charts.</p>
${problems}
<h2 id="charts-title">Charts</h2>
<div id="charts"></div>
<table id="fleet"><thead><tr></tr></thead><tbody></tbody></table>
<noscript>This page draws its table with its own inline script; fleet.json holds the same data.</noscript>
<script type="application/json" id="fleet-data">${scriptSafeJson(data)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
