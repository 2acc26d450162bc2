// The shard-proxy status page. It reads the admin plane every two seconds
// and draws what it finds; it keeps nothing but the last minute of
// /metrics scrapes (for rates).
"use strict";

const REFRESH_MS = 2000;
const SAMPLES = 31; // 30 intervals of 2 s: the last minute
const TOKEN_KEY = "shard-proxy-admin-token";

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  scrapes: [], // {t: ms, shards: {name: {req, err, buckets: {le: count}}}}
};

class Unauthorized extends Error {}

// el builds an element; children are nodes or text. Everything shown goes
// through textContent: keys come from clients and must never become markup.
function el(tag, attrs, ...children) {
  const svg = ["svg", "circle", "text", "title"].includes(tag);
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function $(id) { return document.getElementById(id); }

async function api(path) {
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 401) throw new Unauthorized(path);
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()).slice(0, 200));
  return path === "/metrics" ? r.text() : r.json();
}

// --- Prometheus text format -------------------------------------------

const SERIES = /^(shard_proxy_requests_total|shard_proxy_request_duration_seconds_bucket)\{([^}]*)\}\s+(\S+)/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

// parseMetrics keeps, per shard, the answers, the 5xx answers and the
// cumulative duration buckets.
function parseMetrics(text) {
  const shards = {};
  for (const line of text.split("\n")) {
    const m = SERIES.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, k, v] of m[2].matchAll(LABEL)) labels[k] = v.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    const s = (shards[labels.shard] ??= { req: 0, err: 0, buckets: {} });
    const v = Number(m[3]);
    if (m[1] === "shard_proxy_requests_total") {
      s.req += v;
      if (labels.code && labels.code.startsWith("5")) s.err += v;
    } else {
      s.buckets[labels.le] = (s.buckets[labels.le] || 0) + v;
    }
  }
  return shards;
}

function addScrape(text) {
  const now = { t: Date.now(), shards: parseMetrics(text) };
  const last = state.scrapes[state.scrapes.length - 1];
  // A counter that went down means the proxy restarted: start over.
  if (last && Object.entries(now.shards).some(([n, s]) => last.shards[n] && s.req < last.shards[n].req)) state.scrapes = [];
  state.scrapes.push(now);
  if (state.scrapes.length > SAMPLES) state.scrapes.shift();
}

// quantile estimates the q-quantile from cumulative bucket deltas the way
// Prometheus's histogram_quantile does: linear within the bucket.
function quantile(q, buckets) {
  const les = Object.keys(buckets).sort((a, b) => Number(a) - Number(b));
  const total = buckets["+Inf"] || 0;
  if (total <= 0) return NaN;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (const le of les) {
    const count = buckets[le];
    if (count >= rank) {
      if (le === "+Inf") return prevLe;
      return prevLe + (Number(le) - prevLe) * ((rank - prevCount) / (count - prevCount || 1));
    }
    prevLe = Number(le); prevCount = count;
  }
  return prevLe;
}

// rates compares the oldest and newest scrape kept: null until there are two.
function rates(name) {
  if (state.scrapes.length < 2) return null;
  const a = state.scrapes[0], b = state.scrapes[state.scrapes.length - 1];
  const sa = a.shards[name] || { req: 0, err: 0, buckets: {} };
  const sb = b.shards[name] || { req: 0, err: 0, buckets: {} };
  const secs = (b.t - a.t) / 1000;
  const req = sb.req - sa.req;
  const delta = {};
  for (const le of Object.keys(sb.buckets)) delta[le] = sb.buckets[le] - (sa.buckets[le] || 0);
  return { rps: req / secs, errRatio: req > 0 ? (sb.err - sa.err) / req : 0, p99: quantile(0.99, delta) };
}

function windowText() {
  if (state.scrapes.length < 2) return "—";
  const a = state.scrapes[0], b = state.scrapes[state.scrapes.length - 1];
  return Math.round((b.t - a.t) / 1000) + " s";
}

// --- formatting ------------------------------------------------------

function fmtRate(r) { return r == null ? "—" : r.rps.toFixed(r.rps < 10 ? 1 : 0); }
function fmtErr(r) { return r == null ? "—" : (100 * r.errRatio).toFixed(1) + "%"; }
function fmtP99(r) {
  if (r == null) return "—";
  if (Number.isNaN(r.p99)) return "idle";
  return r.p99 < 1 ? (r.p99 * 1000).toFixed(1) + " ms" : r.p99.toFixed(2) + " s";
}
function shardState(s) { return !s.owns_keys ? "no-keys" : s.ready ? "ready" : "not-ready"; }
function stateText(st) { return { "ready": "ready", "not-ready": "not ready", "no-keys": "owns no keys" }[st]; }

// --- drawing ---------------------------------------------------------

function drawHeader(t) {
  $("ring").textContent = t.ring + (t.partitions ? " (" + t.partitions + " partitions)" : "");
  $("replicas").textContent = t.replicas;
  $("ready").textContent = t.ready;
  $("fingerprint").textContent = t.fingerprint;
  $("handoff").textContent = t.handoff_from ? ", moving data from N=" + t.handoff_from : "";
  $("window").textContent = windowText();
}

function drawRing(t) {
  const svg = $("ring-svg"), c = 160, r = 120, n = t.shards.length;
  svg.replaceChildren(el("circle", { class: "track", cx: c, cy: c, r }),
    el("text", { class: "centre", x: c, y: c + 4 }, "N=" + t.replicas));
  t.shards.forEach((s, i) => {
    const a = (2 * Math.PI * i) / n - Math.PI / 2;
    const x = c + r * Math.cos(a), y = c + r * Math.sin(a);
    const st = shardState(s);
    const dot = el("circle", { class: st, cx: x.toFixed(1), cy: y.toFixed(1), r: n > 24 ? 5 : 10, "data-shard": s.name });
    dot.append(el("title", {}, s.name + ": " + stateText(st)));
    svg.append(dot);
    if (n <= 24) svg.append(el("text", { x: (c + (r + 24) * Math.cos(a)).toFixed(1), y: (c + (r + 24) * Math.sin(a) + 4).toFixed(1) }, s.name));
  });
}

function drawShards(t, hot) {
  const keysOf = {};
  for (const h of hot.shards || []) keysOf[h.shard] = h.keys;
  $("shards").replaceChildren(...t.shards.map((s) => {
    const st = shardState(s), r = rates(s.name);
    const keys = (keysOf[s.name] || []).map((k) => k.key + " (" + k.rate.toFixed(1) + ")").join(", ");
    return el("tr", { "data-shard": s.name, "data-state": st },
      el("td", {}, s.ordinal), el("td", {}, s.name), el("td", { class: "state " + st }, stateText(st)),
      el("td", {}, s.address || "—"), el("td", { class: "num rate" }, fmtRate(r)),
      el("td", { class: "num errors" }, fmtErr(r)), el("td", { class: "num p99" }, fmtP99(r)),
      el("td", { class: "hot" }, keys || "—"));
  }));
}

function drawBroadcasts(b) {
  const rows = (b.broadcasts || []).slice(0, 10).map((x) =>
    el("tr", { "data-id": x.id }, el("td", {}, el("code", {}, x.id)), el("td", {}, x.method), el("td", {}, x.path),
      el("td", { class: "num" }, x.succeeded), el("td", { class: "num" + (x.failed ? " failed" : "") }, x.failed)));
  $("broadcasts").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5 }, "no broadcasts yet"))]));
}

// drawChanges shows the topologies the proxy applied (GET /topology),
// newest first, with what changed in each.
function drawChanges(c) {
  const items = (c.changes || []).slice(0, 20).map((x) =>
    el("li", {}, el("time", {}, new Date(x.time).toLocaleTimeString()),
      "N=" + x.replicas + ", " + x.ready + " ready" + (x.ring_rebuilt ? ", ring rebuilt" : "") + ": " +
      (x.changes.length ? x.changes.join("; ") : "no shard changed")));
  $("changes").replaceChildren(...(items.length ? items : [el("li", {}, "none yet")]));
}

// --- the loop --------------------------------------------------------

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = "status" + (error ? " error" : "");
}

function askForToken(why) {
  $("token-form").hidden = false;
  setStatus(why, true);
}

async function refresh() {
  try {
    // /metrics needs no token: scrape it even while waiting for one.
    addScrape(await api("/metrics"));
    const [t, hot, b, c] = await Promise.all([api("/shards"), api("/hotkeys?n=5"), api("/broadcasts"), api("/topology")]);
    $("token-form").hidden = true;
    drawHeader(t); drawRing(t); drawShards(t, hot); drawBroadcasts(b); drawChanges(c);
    setStatus("updated " + new Date().toLocaleTimeString() + ", every " + REFRESH_MS / 1000 + " s");
  } catch (e) {
    if (e instanceof Unauthorized) askForToken(state.token ? "The token was refused." : "This admin plane needs a token.");
    else setStatus(String(e.message || e), true);
  }
}

async function locate(key) {
  const out = $("locate-result");
  if (!key) { out.replaceChildren(); return; }
  $("locate-key").value = key;
  try {
    const a = await api("/locate?key=" + encodeURIComponent(key));
    out.dataset.shard = a.shard;
    out.replaceChildren("key ", el("code", {}, a.key), " → ", el("b", { class: "owner" }, a.shard),
      " (ordinal " + a.ordinal + ", " + (a.address || "no address") + ", " + (a.ready ? "ready" : "not ready") + ")");
  } catch (e) {
    delete out.dataset.shard;
    if (e instanceof Unauthorized) askForToken("This admin plane needs a token.");
    out.textContent = String(e.message || e);
  }
}

// The locate box follows the URL fragment (#locate=KEY), so a located key
// can be linked to, and a headless browser can be asked for one.
function locateFromHash() {
  const m = /^#locate=(.*)$/.exec(location.hash);
  locate(m ? decodeURIComponent(m[1]) : "");
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $("token").value = "";
    refresh();
    locateFromHash();
  });
  $("locate-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = "locate=" + encodeURIComponent($("locate-key").value);
  });
  window.addEventListener("hashchange", locateFromHash);
  locateFromHash();
  refresh();
  setInterval(refresh, REFRESH_MS);
});
