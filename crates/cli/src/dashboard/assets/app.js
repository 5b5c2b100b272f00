// flagger-rs dashboard: plain modern JS, no framework, no build step. Every text from the
// cluster goes through textContent (never innerHTML); charts are SVG drawn here.
"use strict";

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const live = document.getElementById("live");
let me = null;
let view = null; // {kind: "list"} or {kind: "canary", ns, name, data}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v; // CSSOM: allowed by the page's CSP
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function showBanner(text, kind) {
  banner.hidden = !text;
  banner.className = kind || "";
  banner.textContent = text || "";
}

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (r.status === 401) { location.href = "/login"; throw new HttpError(401, "not logged in"); }
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) throw new HttpError(r.status, (body && body.error) || r.statusText);
  return body;
}

function failed(e) {
  if (e.status === 403) {
    showBanner("Forbidden: " + e.message, "");
    main.replaceChildren(h("p", { id: "forbidden", class: "muted" },
      "You are logged in as " + (me ? me.user : "?") + ", but Kubernetes RBAC does not let you see this. " +
      "Ask an administrator for a Role granting get (to see) or patch (to act) on canaries.flagger.app."));
  } else {
    showBanner(e.message || String(e), "");
  }
}

function phaseCell(sm) {
  return h("span", { class: "phase " + sm.phase }, sm.phase + (sm.paused ? " (paused)" : ""));
}

function weightCell(w) {
  const bar = h("span", { class: "bar" }, h("span", { style: "width:" + Math.max(0, Math.min(100, w)) + "%" }));
  return h("span", {}, bar, w + "%");
}

function failedText(sm) {
  return sm.threshold ? sm.failedChecks + "/" + sm.threshold : String(sm.failedChecks);
}

// ----- the list --------------------------------------------------------------------------------

function row(sm) {
  const id = "row-" + sm.namespace + "-" + sm.name;
  return h("tr", { id, "data-weight": sm.weight, "data-phase": sm.phase },
    h("td", {}, sm.namespace),
    h("td", {}, h("a", { href: "/canary/" + encodeURIComponent(sm.namespace) + "/" + encodeURIComponent(sm.name) }, sm.name)),
    h("td", {}, phaseCell(sm)),
    h("td", { class: "num weight" }, weightCell(sm.weight)),
    h("td", { class: "num" }, String(sm.iterations)),
    h("td", { class: "num" }, failedText(sm)),
    h("td", {}, sm.lastDecision || "", sm.pendingAction ? h("span", { class: "muted" }, " (requested: " + sm.pendingAction + ")") : null));
}

async function showList() {
  view = { kind: "list" };
  const data = await api("/api/canaries");
  const body = h("tbody", { id: "canaries" }, data.canaries.map(row));
  main.replaceChildren(
    h("h1", {}, "Canaries"),
    h("p", { class: "muted", id: "namespaces" }, data.namespaces.length
      ? "Namespaces you may see: " + data.namespaces.join(", ")
      : "No canary in any namespace you may see."),
    h("table", { id: "list" },
      h("thead", {}, h("tr", {}, ["Namespace", "Name", "Phase", "Weight", "Iteration", "Failed checks", "Last decision"].map(t => h("th", {}, t)))),
      body));
  main.dataset.ready = "list";
}

function listUpdate(sm) {
  const body = document.getElementById("canaries");
  if (!body) return;
  const old = document.getElementById("row-" + sm.namespace + "-" + sm.name);
  const fresh = row(sm);
  if (old) old.replaceWith(fresh);
  else body.append(fresh);
}

// ----- a canary --------------------------------------------------------------------------------

function fmtTime(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8);
}

function chart(title, points, opts) {
  const W = 360, H = 140, L = 36, R = 8, T = 8, B = 20;
  const vals = points.map(p => p.v).filter(v => v !== null && v !== undefined);
  let lo = opts.min !== undefined ? opts.min : Math.min(...vals, opts.limitMin ?? Infinity, opts.limitMax ?? Infinity);
  let hi = opts.max !== undefined ? opts.max : Math.max(...vals, opts.limitMin ?? -Infinity, opts.limitMax ?? -Infinity);
  if (!isFinite(lo) || !isFinite(hi)) { lo = 0; hi = 1; }
  if (hi === lo) { hi = lo + 1; }
  const t0 = points.length ? points[0].t : 0;
  const t1 = points.length ? points[points.length - 1].t : 1;
  const x = t => L + (t1 === t0 ? (W - L - R) : (t - t0) / (t1 - t0) * (W - L - R));
  const y = v => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  svg.append(s("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  svg.append(s("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  svg.append(s("text", { x: 2, y: T + 8 }, fmtNum(hi)));
  svg.append(s("text", { x: 2, y: H - B }, fmtNum(lo)));
  if (points.length) {
    svg.append(s("text", { x: L, y: H - 4 }, fmtTime(t0)));
    svg.append(s("text", { x: W - R - 44, y: H - 4 }, fmtTime(t1)));
  }
  for (const lim of [opts.limitMin, opts.limitMax]) {
    if (lim === undefined || lim === null) continue;
    svg.append(s("line", { class: "limit", x1: L, x2: W - R, y1: y(lim), y2: y(lim) }));
  }
  // A step line: a value holds until the next point.
  const coords = [];
  let prev = null;
  for (const p of points) {
    if (p.v === null || p.v === undefined) { prev = null; continue; }
    if (prev !== null) coords.push(x(p.t) + "," + y(prev));
    coords.push(x(p.t) + "," + y(p.v));
    prev = p.v;
  }
  if (prev !== null) coords.push((W - R) + "," + y(prev));
  svg.append(s("polyline", { points: coords.join(" ") }));
  const last = vals.length ? vals[vals.length - 1] : null;
  return h("div", { class: "chart", "data-title": title },
    h("p", { class: "title" }, title, last !== null ? h("span", { class: "muted" }, "  now " + fmtNum(last) + (opts.unit || "")) : null),
    svg);
}

function fmtNum(v) {
  if (v === null || v === undefined) return "-";
  return (Math.round(v * 100) / 100).toString();
}

function thresholdText(c) {
  if (c.min != null && c.max != null) return fmtNum(c.min) + " .. " + fmtNum(c.max);
  if (c.min != null) return ">= " + fmtNum(c.min);
  if (c.max != null) return "<= " + fmtNum(c.max);
  return "any";
}

function checksTable(checks) {
  if (!checks || !checks.length) return h("p", { class: "muted", id: "checks" }, "No metric check in this analysis yet.");
  return h("table", { id: "checks" },
    h("thead", {}, h("tr", {}, ["Check", "Provider", "Value", "Threshold", "Verdict", "Failed", "Reason"].map(t => h("th", {}, t)))),
    h("tbody", {}, checks.map(c => h("tr", {},
      h("td", {}, c.name),
      h("td", {}, c.provider || ""),
      h("td", { class: "num" }, fmtNum(c.value)),
      h("td", {}, thresholdText(c)),
      h("td", { class: "verdict " + String(c.verdict).toLowerCase() }, c.verdict === "InsufficientData" ? "insufficient data" : String(c.verdict).toLowerCase()),
      h("td", { class: "num" }, String(c.failures)),
      h("td", {}, c.reason || "", c.query ? h("div", { class: "muted" }, h("code", {}, c.query)) : null)))));
}

function eventItem(e) {
  return h("li", { class: e.type },
    h("time", {}, (e.time || "").replace("T", " ").slice(0, 19)),
    e.message, e.count > 1 ? h("span", { class: "muted" }, " x" + e.count) : null);
}

function drawCharts(d) {
  const hist = d.history || [];
  const charts = [chart("Canary weight", hist.map(p => ({ t: p.t, v: p.weight })), { min: 0, max: 100, unit: "%" })];
  const names = [];
  for (const p of hist) for (const [n] of p.checks) if (!names.includes(n)) names.push(n);
  for (const n of names) {
    const chk = (d.checks || []).find(c => c.name === n) || {};
    charts.push(chart(n, hist.map(p => {
      const hit = p.checks.find(c => c[0] === n);
      return { t: p.t, v: hit ? hit[1] : null };
    }), { limitMin: chk.min, limitMax: chk.max }));
  }
  const box = document.getElementById("charts");
  if (box) box.replaceChildren(...charts);
}

function drawSummary(d) {
  const sm = d.summary;
  const cards = h("div", { class: "cards", id: "summary" },
    h("div", { class: "card" }, h("div", { class: "k" }, "Phase"), h("div", { class: "v" }, phaseCell(sm))),
    h("div", { class: "card" }, h("div", { class: "k" }, "Weight"), h("div", { class: "v", id: "weight", "data-weight": sm.weight }, sm.weight + "%")),
    h("div", { class: "card" }, h("div", { class: "k" }, "Iteration"), h("div", { class: "v" }, String(sm.iterations))),
    h("div", { class: "card" }, h("div", { class: "k" }, "Failed checks"), h("div", { class: "v" }, failedText(sm))));
  document.getElementById("summary").replaceWith(cards);
  const dec = document.getElementById("decision");
  dec.textContent = sm.lastDecision ? "Last decision: " + sm.lastDecision : "No decision yet.";
  document.getElementById("checks").replaceWith(checksTable(d.checks));
}

async function act(verb) {
  const d = view.data;
  const msg = document.getElementById("action-result");
  try {
    const r = await api("/api/canaries/" + encodeURIComponent(d.summary.namespace) + "/" + encodeURIComponent(d.summary.name) + "/" + verb, {
      method: "POST", headers: { "X-CSRF-Token": me.csrf },
    });
    msg.textContent = verb + " requested (id " + r.id + "); the controller acts on it at once.";
    msg.className = "muted";
  } catch (e) {
    msg.textContent = (e.status === 403 ? "Forbidden: " : "Failed: ") + e.message;
    msg.className = "error";
  }
}

async function showCanary(ns, name) {
  const d = await api("/api/canaries/" + encodeURIComponent(ns) + "/" + encodeURIComponent(name));
  view = { kind: "canary", ns, name, data: d };
  const verbs = [["promote", ""], ["pause", ""], ["resume", ""], ["retry", ""], ["abort", "danger"]];
  let why = null;
  if (me.readOnly) why = "This dashboard is read-only.";
  else if (!d.mayAct) why = "You may not patch canaries in namespace " + ns + ": actions are off.";
  const actions = h("div", { class: "actions" },
    verbs.map(([v, cls]) => h("button", { class: cls, id: "action-" + v, disabled: !!why, onclick: () => act(v) }, v)),
    h("span", { id: "action-result", class: why ? "muted" : "" }, why || ""));
  const generated = h("table", { id: "generated" },
    h("thead", {}, h("tr", {}, ["Kind", "Name", "State"].map(t => h("th", {}, t)))),
    h("tbody", {}, (d.generated || []).map(g => h("tr", {}, h("td", {}, g.kind), h("td", {}, g.name), h("td", { class: "state " + g.state }, g.state)))));
  const a = d.analysis || {};
  main.replaceChildren(
    h("p", {}, h("a", { href: "/" }, "← all canaries")),
    h("h1", {}, "Canary " + name + "." + ns),
    h("p", { class: "muted" }, (d.target ? d.target.kind + " " + d.target.name : "") +
      (d.provider ? " · provider " + d.provider : "") +
      (a.interval ? " · every " + a.interval : "") +
      (a.stepWeight ? " · step " + a.stepWeight + "%" : "") +
      (a.maxWeight ? " · max " + a.maxWeight + "%" : "") +
      (a.iterations ? " · " + a.iterations + " iterations" : "") +
      (a.threshold ? " · threshold " + a.threshold : "")),
    h("div", { id: "summary" }),
    h("p", { id: "decision" }),
    actions,
    h("h2", {}, "Over time"),
    h("div", { class: "charts", id: "charts" }),
    h("h2", {}, "Analysis"),
    h("div", { id: "checks" }),
    h("h2", {}, "Events"),
    h("ol", { class: "timeline", id: "events" }, (d.events || []).map(eventItem)),
    h("h2", {}, "Generated objects"),
    generated);
  drawSummary(d);
  drawCharts(d);
  main.dataset.ready = "canary";
}

function canaryUpdate(msg) {
  const d = view.data;
  const sm = msg.summary;
  if (sm.namespace !== view.ns || sm.name !== view.name) return;
  d.summary = sm;
  d.checks = msg.checks || [];
  if (msg.point) d.history.push(msg.point);
  drawSummary(d);
  drawCharts(d);
}

// ----- live updates ----------------------------------------------------------------------------

function connect() {
  const es = new EventSource("/api/stream");
  let first = true;
  es.addEventListener("hello", () => {
    live.textContent = "live"; live.className = "live on";
    // After a reconnection, what was missed is read again.
    if (!first) route().catch(failed);
    first = false;
  });
  es.addEventListener("canary", ev => {
    const msg = JSON.parse(ev.data);
    if (view && view.kind === "list") listUpdate(msg.summary);
    if (view && view.kind === "canary") canaryUpdate(msg);
  });
  es.addEventListener("deleted", ev => {
    const msg = JSON.parse(ev.data);
    const old = document.getElementById("row-" + msg.namespace + "-" + msg.name);
    if (old) old.remove();
    if (view && view.kind === "canary" && view.ns === msg.namespace && view.name === msg.name) {
      showBanner("This canary was deleted.", "info");
    }
  });
  es.addEventListener("event", ev => {
    const msg = JSON.parse(ev.data);
    if (view && view.kind === "canary" && view.ns === msg.namespace && view.name === msg.name) {
      const list = document.getElementById("events");
      if (list) list.append(eventItem(msg.event));
    }
  });
  es.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
}

async function route() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "canary" && parts.length === 3) return showCanary(parts[1], parts[2]);
  return showList();
}

async function start() {
  try {
    me = await api("/api/whoami");
    document.getElementById("who").textContent = me.user + (me.readOnly ? " · read-only" : "");
    await route();
    connect();
  } catch (e) {
    failed(e);
  }
}

start();
