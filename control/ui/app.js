// edgesteer ops console. Plain JS, no build step, no third-party code.
// Reads and writes only the config service's typed API, with the token
// kept in this tab's sessionStorage and sent as a bearer header (never a
// cookie, so no write can be forged cross-site). Data is put in the page
// with textContent only.
"use strict";

const TOKEN_KEY = "edgesteer.token";
const REFRESH_MS = 2000;
const state = {
  token: null,
  role: null,
  version: 0,
  table: null,
  live: null,
  errors: [],
  generation: 0,
};

// Errors the page met; the browser test reads them.
window.__edgesteerErrors = state.errors;
window.addEventListener("error", (e) => state.errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => state.errors.push(String(e.reason)));
document.addEventListener("securitypolicyviolation", (e) =>
  state.errors.push("CSP: " + e.violatedDirective + " " + e.blockedURI));

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") n.className = v;
    else if (k === "text") n.textContent = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
  return n;
}

class ApiError extends Error {
  constructor(status, body) {
    const fields = (body && body.errors || []).map((f) => f.path + ": " + f.reason).join("; ");
    super((body && body.message || ("HTTP " + status)) + (fields ? " (" + fields + ")" : ""));
    this.status = status;
    this.code = body && body.error;
  }
}

async function api(method, path, body, extra) {
  const headers = { "Authorization": "Bearer " + state.token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, Object.assign({
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  }, extra || {}));
  if (res.status === 304) return null;
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!res.ok) {
    if (res.status === 401 && path !== "/v1/whoami") logout("the token is no longer valid");
    throw new ApiError(res.status, json);
  }
  return json;
}

function status(msg, isError) {
  const s = $("status");
  s.textContent = msg;
  s.className = "status" + (isError ? " error" : "");
}

const canAct = () => state.role === "ops";
const pct = (bps) => (bps / 100).toFixed(bps % 100 ? 2 : 0) + "%";

function ago(ms) {
  if (ms === null || ms === undefined) return "never";
  if (ms < 1500) return "just now";
  const s = Math.round(ms / 1000);
  return s < 120 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

// ---------- login ----------

async function login(token) {
  state.token = token;
  try {
    const me = await api("GET", "/v1/whoami");
    state.role = me.role;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("who-name").textContent = me.name;
    $("who-role").textContent = me.role;
    $("whoami").hidden = false;
    $("login").hidden = true;
    $("main").hidden = false;
    document.body.dataset.role = me.role;
    $("login-error").textContent = "";
    start();
  } catch (e) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("login-error").textContent = e.status === 401
      ? "That token is not valid here." : "Cannot log in: " + e.message;
  }
}

function logout(why) {
  state.generation++;
  state.token = null;
  state.role = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("whoami").hidden = true;
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why || "";
}

// ---------- refresh loops ----------

function start() {
  const gen = ++state.generation;
  refreshAll(gen);
  watchLoop(gen);
  pollLoop(gen);
}

async function refreshAll(gen) {
  await Promise.all([refreshTable(), refreshHistory(), refreshFleet(), refreshLive(), refreshRollouts()]
    .map((p) => p.catch((e) => status("refresh failed: " + e.message, true))));
  if (gen === state.generation) render();
}

// The same long-poll the proxies follow: a new version arrives at once.
async function watchLoop(gen) {
  let backoff = 500;
  while (gen === state.generation) {
    try {
      const v = await api("GET", "/v1/watch?after=" + state.version + "&timeout_ms=25000");
      $("live-state").textContent = "live";
      $("live-state").className = "badge live";
      backoff = 500;
      if (v && gen === state.generation) {
        applyTable(v);
        await Promise.all([refreshHistory(), refreshRollouts(), refreshFleet()]);
        render();
      }
    } catch (e) {
      if (gen !== state.generation) return;
      $("live-state").textContent = "reconnecting";
      $("live-state").className = "badge stale";
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 5000);
    }
  }
}

async function pollLoop(gen) {
  while (gen === state.generation) {
    await new Promise((r) => setTimeout(r, REFRESH_MS));
    if (gen !== state.generation || document.hidden) continue;
    try {
      await Promise.all([refreshFleet(), refreshLive(), refreshRollouts()]);
      render();
    } catch (e) {
      status("refresh failed: " + e.message, true);
    }
  }
}

function applyTable(rec) {
  state.table = rec.table;
  state.version = rec.version;
  $("table-version").textContent = "table v" + rec.version;
}

async function refreshTable() { applyTable(await api("GET", "/v1/table")); }
async function refreshHistory() { state.history = (await api("GET", "/v1/history?limit=30")).versions; }
async function refreshFleet() { state.fleet = await api("GET", "/v1/fleet"); }
async function refreshLive() { state.live = await api("GET", "/v1/live"); }
async function refreshRollouts() { state.rollouts = (await api("GET", "/v1/rollouts")).rollouts; }

// ---------- rendering ----------

function render() {
  if (!state.table) return;
  renderRegions();
  renderRollouts();
  renderFleet();
  renderHistory();
}

function regionShares() {
  const live = state.live && state.live.regions || {};
  const since = (state.live ? state.live.now_ms : Date.now()) - 60000;
  const counts = {};
  let total = 0;
  for (const [name, r] of Object.entries(live)) {
    const n = r.points.filter((p) => p.at_ms >= since).reduce((a, p) => a + p.requests, 0);
    counts[name] = n;
    total += n;
  }
  return { counts, total };
}

// Whether a region serves, by the rule both planes share: not drained,
// and at least half its backends healthy (at least one).
function regionServes(name) {
  const r = state.table.regions[name];
  const live = state.live && state.live.regions || {};
  const down = new Set((live[name] || { unhealthy: [] }).unhealthy);
  const healthy = r.backends.filter((b) => !down.has(b.address)).length;
  return !r.drain && healthy > 0 && 2 * healthy >= r.backends.length;
}

// What GeoDNS answers this region's own clients with: its edges, else its
// first serving failover region's, else (fail-open) its own.
function dnsAnswer(name) {
  const dns = state.table.dns;
  if (!dns || !dns.regions[name]) return null;
  let target = name;
  let how = "its own edges";
  if (!regionServes(name)) {
    const f = (state.table.regions[name].failover || []).find(regionServes);
    target = f || name;
    how = f ? "failover to " + f : "fail-open: its own edges (HTTP 503)";
  }
  return { target, how, addresses: (dns.regions[target] || { addresses: [] }).addresses };
}

function renderRegions() {
  const box = $("regions");
  const shares = regionShares();
  const live = state.live && state.live.regions || {};
  box.replaceChildren();
  for (const [name, r] of Object.entries(state.table.regions)) {
    const l = live[name] || { unhealthy: [], points: [] };
    const total = r.backends.length;
    const down = new Set(l.unhealthy);
    const healthy = r.backends.filter((b) => !down.has(b.address)).length;
    const cls = r.drain ? "drained" : healthy === 0 ? "down" : healthy < total ? "degraded" : "healthy";
    const share = shares.total ? (100 * shares.counts[name] / shares.total).toFixed(1) + "%" : "–";
    const card = el("div", { class: "region " + cls, "data-region": name, "data-state": cls },
      el("div", { class: "region-head" },
        el("h3", { text: name }),
        el("span", { class: "badge zone", text: r.zone ? "zone " + r.zone : "no zone" })),
      el("div", { class: "facts" },
        el("span", { class: "fact health", text: healthy + "/" + total + " healthy" }),
        r.drain ? el("span", { class: "badge drained", text: "drained" }) : null,
        el("span", { class: "fact", text: "canary " + pct(r.canary_bps) }),
        el("span", { class: "fact share", text: "traffic " + share })),
      charts(l.points),
      backendList(name, r, down));
    const d = dnsAnswer(name);
    if (d) {
      card.append(el("p", { class: "dns-answer", "data-dns-target": d.target,
        text: "DNS answers its clients: " + d.addresses.join(", ") + " (" + d.how + ")" }));
    }
    if (canAct()) {
      card.append(el("div", { class: "actions" },
        el("button", {
          type: "button", "data-action": r.drain ? "undrain" : "drain", "data-region": name,
          class: r.drain ? "" : "danger",
          text: r.drain ? "Undrain" : "Drain",
          onclick: () => drain(name, !r.drain),
        }),
        el("button", {
          type: "button", "data-action": "canary", "data-region": name, text: "Canary share…",
          onclick: () => setCanary(name, r.canary_bps),
        })));
    }
    box.append(card);
  }
}

function backendList(region, r, down) {
  const ul = el("ul", { class: "backends" });
  for (const b of r.backends) {
    const li = el("li", { class: down.has(b.address) ? "down" : "up" },
      el("span", { class: "addr", text: b.address }),
      el("span", { class: "track", text: b.track || "stable" }),
      el("span", { class: "weight", text: "w " + b.weight }));
    if (canAct()) {
      li.append(el("button", {
        type: "button", class: "small", "data-action": "weight", "data-region": region,
        "data-backend": b.address, text: "weight…",
        onclick: () => setWeight(region, b.address, b.weight),
      }));
    }
    ul.append(li);
  }
  return ul;
}

// Three small charts: requests/s, 5xx rate, p99 (ms), over 15 minutes.
function charts(points) {
  const pointS = (state.live ? state.live.point_ms : 10000) / 1000;
  const end = state.live ? state.live.now_ms : Date.now();
  const start = end - 15 * 60000;
  const series = [
    ["req/s", points.map((p) => [p.at_ms, p.requests / pointS]), ""],
    ["5xx", points.map((p) => [p.at_ms, p.requests ? 100 * p.errors / p.requests : 0]), "%"],
    ["p99", points.filter((p) => p.p99_ms !== null).map((p) => [p.at_ms, p.p99_ms]), " ms"],
  ];
  const box = el("div", { class: "charts" });
  for (const [label, data, unit] of series) {
    box.append(lineChart(label, data, unit, start, end));
  }
  return box;
}

function fmt(v) {
  return v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function lineChart(label, data, unit, start, end) {
  const W = 300, H = 34;
  const row = el("div", { class: "chart-row" });
  const max = Math.max(1e-9, ...data.map((d) => d[1]));
  const last = data.length ? data[data.length - 1][1] : null;
  row.append(el("span", { class: "chart-label" },
    el("b", { text: label }), " " + (last === null ? "–" : fmt(last) + unit),
    el("span", { class: "dim", text: " max " + (data.length ? fmt(max) + unit : "–") })));
  // Stretched to the card's width: only lines in the SVG, no text.
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "chart", role: "img" });
  const x = (t) => ((t - start) / (end - start)) * W;
  const y = (v) => H - 2 - (v / max) * (H - 6);
  s.append(svg("line", { x1: 0, y1: H - 1, x2: W, y2: H - 1, class: "axis" }));
  if (data.length > 0) {
    const d = data.map(([t, v], i) => (i ? "L" : "M") + x(t).toFixed(1) + " " + y(v).toFixed(1)).join(" ");
    s.append(svg("path", { d, class: "line" }));
  }
  const title = svg("title");
  title.textContent = label + ", last 15 minutes";
  s.append(title);
  row.append(s);
  return row;
}

function renderRollouts() {
  const box = $("rollouts");
  box.replaceChildren();
  const list = state.rollouts || [];
  const regions = Object.keys(state.table.regions);
  const byRegion = Object.fromEntries(list.map((r) => [r.region, r]));
  const table = el("table", {},
    el("thead", {}, el("tr", {}, ...["region", "state", "step", "share", "gates (now / limit)", "next step", "share over time", ""].map((h) => el("th", { text: h })))));
  const body = el("tbody");
  for (const region of regions) {
    const ro = byRegion[region];
    if (!ro && !canAct()) continue;
    const tr = el("tr", { "data-rollout": region });
    tr.append(el("td", { text: region }));
    if (ro) {
      const f = ro.figures;
      const g = ro.gates;
      const gate = f
        ? `5xx ${(100 * f.canary_error_rate).toFixed(2)}% / ${(100 * g.max_error_rate).toFixed(2)}% · p99 ${f.canary_p99_ms ?? "–"} vs ${f.stable_p99_ms ?? "–"} ms (×${g.max_p99_ratio}) · ${f.canary_requests} / ${g.min_requests} req`
        : `no figures yet (limits: 5xx ${(100 * g.max_error_rate).toFixed(2)}%, p99 ×${g.max_p99_ratio}, ${g.min_requests} req)`;
      tr.append(
        el("td", {}, el("span", { class: "badge ro-" + ro.state, text: ro.state })),
        el("td", { text: (ro.step + 1) + " / " + ro.steps.length }),
        el("td", { text: pct(ro.canary_bps) }),
        el("td", { class: "gates", text: gate }),
        el("td", { text: ro.next_step_in_ms === null || ro.next_step_in_ms === undefined ? "–" : Math.ceil(ro.next_step_in_ms / 1000) + " s" }));
    } else {
      tr.append(el("td", { text: "none" }), el("td"), el("td", { text: pct(state.table.regions[region].canary_bps) }), el("td"), el("td"));
    }
    const l = state.live && state.live.regions[region];
    tr.append(el("td", {}, stepChart(l ? l.canary_changes : [])));
    const actions = el("td", { class: "actions" });
    if (canAct()) {
      const st = ro ? ro.state : "none";
      const can = {
        start: st !== "running" && st !== "paused",
        pause: st === "running",
        resume: st === "paused",
        abort: st === "running" || st === "paused",
      };
      for (const [action, ok] of Object.entries(can)) {
        if (!ok) continue;
        actions.append(el("button", {
          type: "button", class: "small" + (action === "abort" ? " danger" : ""),
          "data-action": "rollout-" + action, "data-region": region, text: action,
          onclick: () => rolloutAction(region, action),
        }));
      }
    }
    tr.append(actions);
    body.append(tr);
  }
  table.append(body);
  box.append(table);
}

// The canary share's steps over the last 15 minutes.
function stepChart(changes) {
  const W = 160, H = 30;
  const end = state.live ? state.live.now_ms : Date.now();
  const start = end - 15 * 60000;
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "chart steps", role: "img" });
  s.append(svg("line", { x1: 0, y1: H - 1, x2: W, y2: H - 1, class: "axis" }));
  if (changes.length) {
    const x = (t) => Math.max(0, ((t - start) / (end - start)) * W);
    const y = (bps) => H - 2 - (bps / 10000) * (H - 4);
    let d = "M" + x(changes[0].at_ms).toFixed(1) + " " + y(changes[0].canary_bps).toFixed(1);
    for (let i = 1; i < changes.length; i++) {
      d += " H" + x(changes[i].at_ms).toFixed(1) + " V" + y(changes[i].canary_bps).toFixed(1);
    }
    d += " H" + W;
    s.append(svg("path", { d, class: "line" }));
  }
  const title = svg("title");
  title.textContent = changes.map((c) => "v" + c.version + " " + c.action + " " + pct(c.canary_bps)).join("\n") || "no change in 15 minutes";
  s.append(title);
  return s;
}

function renderFleet() {
  const body = $("fleet").tBodies[0];
  body.replaceChildren();
  const f = state.fleet || { proxies: [] };
  for (const p of f.proxies) {
    const current = p.applied_version !== null && p.applied_version === f.current_version;
    body.append(el("tr", { "data-proxy": p.proxy, "data-version": p.applied_version ?? "", class: current ? "current" : "behind" },
      el("td", { text: p.proxy }),
      el("td", { text: p.build || "–" }),
      el("td", {}, el("span", { class: "badge " + (current ? "ok" : "warn"), text: p.applied_version === null ? "none" : "v" + p.applied_version + (current ? " (current)" : " (behind)") })),
      el("td", { text: p.last_status || "–" }),
      el("td", { class: p.last_rejection ? "error" : "", text: p.last_rejection ? "v" + p.rejected_version + ": " + p.last_rejection : "–" }),
      el("td", { text: ago(p.last_seen_ms_ago) + (p.watching ? " · watching" : "") })));
  }
  if (!f.proxies.length) body.append(el("tr", {}, el("td", { colspan: 6, text: "no proxy has reported yet" })));
}

function renderHistory() {
  const body = $("history").tBodies[0];
  body.replaceChildren();
  for (const v of state.history || []) {
    const a = v.audit;
    const tr = el("tr", { "data-version": v.version },
      el("td", { text: "v" + v.version + (v.version === state.version ? " (current)" : "") }),
      el("td", { text: a.at }),
      el("td", { text: a.actor }),
      el("td", { text: a.action + (a.restored ? " → v" + a.restored : "") }),
      el("td", { class: "reason", text: a.reason }),
      el("td", { class: "summary", text: (a.summary || []).slice(0, 3).join("; ") + ((a.summary || []).length > 3 ? " …" : "") }));
    const actions = el("td", { class: "actions" });
    if (v.version > 1) {
      actions.append(el("button", { type: "button", class: "small", "data-action": "diff", "data-version": v.version, text: "diff", onclick: () => showDiff(v.version) }));
    }
    if (canAct() && v.version !== state.version) {
      actions.append(el("button", { type: "button", class: "small danger", "data-action": "rollback", "data-version": v.version, text: "roll back to this", onclick: () => rollback(v.version) }));
    }
    tr.append(actions);
    body.append(tr);
  }
}

async function showDiff(version) {
  try {
    const d = await api("GET", "/v1/diff?from=" + (version - 1) + "&to=" + version);
    const out = $("diff-out");
    out.hidden = false;
    out.textContent = "v" + d.from + " → v" + d.to + "\n" + (d.changes.length ? d.changes.join("\n") : "(no change)");
  } catch (e) {
    status("diff failed: " + e.message, true);
  }
}

// ---------- actions (ops) ----------

// Asks for confirmation and a reason (and a value when `value` is given);
// resolves to {reason, value} or null when cancelled. With `preview` (the
// value -> the body of POST /v1/preview), the dialog shows what the change
// would do to the fleet's traffic before the reason is typed, and again
// whenever the value changes.
function confirmAction(title, text, value, preview) {
  const dlg = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-reason").value = "";
  $("confirm-error").textContent = "";
  $("confirm-value-label").hidden = !value;
  if (value) {
    $("confirm-value-name").textContent = value.label;
    $("confirm-value").value = String(value.initial);
  }
  const box = $("confirm-preview");
  box.hidden = !preview;
  box.replaceChildren();
  let timer = null;
  if (preview) {
    showPreview(preview(value ? value.initial : null));
    $("confirm-value").oninput = () => {
      clearTimeout(timer);
      const v = Number($("confirm-value").value);
      if (!value || !Number.isInteger(v) || v < value.min || v > value.max) return;
      timer = setTimeout(() => showPreview(preview(v)), 300);
    };
  }
  dlg.showModal();
  (value ? $("confirm-value") : $("confirm-reason")).focus();
  return new Promise((resolve) => {
    const done = (result) => {
      clearTimeout(timer);
      previewSeq++;
      $("confirm-value").oninput = null;
      $("confirm-form").onsubmit = null;
      $("confirm-cancel").onclick = null;
      dlg.onclose = null;
      if (dlg.open) dlg.close();
      resolve(result);
    };
    $("confirm-cancel").onclick = () => done(null);
    dlg.onclose = () => done(null);
    $("confirm-form").onsubmit = (e) => {
      e.preventDefault();
      const reason = $("confirm-reason").value.trim();
      if (!reason) { $("confirm-error").textContent = "A reason is required."; return; }
      let v = null;
      if (value) {
        v = Number($("confirm-value").value);
        if (!Number.isInteger(v) || v < value.min || v > value.max) {
          $("confirm-error").textContent = value.label + " must be a whole number from " + value.min + " to " + value.max + ".";
          return;
        }
      }
      done({ reason, value: v });
    };
  });
}

// Answers of an older preview request (or of a closed dialog) are dropped.
let previewSeq = 0;

// Fills the dialog's preview box from POST /v1/preview (nothing is committed).
async function showPreview(body) {
  const box = $("confirm-preview");
  const seq = ++previewSeq;
  box.dataset.state = "loading";
  box.replaceChildren(el("p", { text: "Preview: asking the service what this would move..." }));
  let p;
  try {
    p = await api("POST", "/v1/preview", body);
  } catch (e) {
    if (seq !== previewSeq) return;
    box.dataset.state = "error";
    box.replaceChildren(el("p", { class: "warning", text: "No preview: " + e.message }));
    return;
  }
  if (seq !== previewSeq) return;
  const rps = (x) => x.toFixed(1) + " req/s";
  const lines = [el("p", { text: "Preview over the last " + Math.round(p.window_s / 60) + " min, " + p.proxies +
    " proxies, " + rps(p.total_rps) + " (nothing is committed until you confirm):" })];
  if (!p.moves.length) lines.push(el("p", { class: "move", text: "No traffic changes region." }));
  for (const m of p.moves) {
    lines.push(el("p", { class: "move", text: m.from + " \u2192 " + m.to + ": " + rps(m.rps) + " (" + (m.share * 100).toFixed(1) + "%)" }));
  }
  if (p.countries.length) {
    lines.push(el("p", { text: "Countries that move: " + p.countries.slice(0, 12)
      .map((c) => (c.country || "unknown") + (c.pin ? " via " + c.pin : "")).join(", ") +
      (p.countries.length > 12 ? ", ..." : "") }));
  }
  for (const [name, r] of Object.entries(p.regions)) {
    if (r.canary_bps_before !== r.canary_bps_after) {
      lines.push(el("p", { text: name + " canary " + pct(r.canary_bps_before) + " \u2192 " + pct(r.canary_bps_after) +
        ": " + rps(r.canary_rps_before) + " \u2192 " + rps(r.canary_rps_after) }));
    }
    if (r.capacity_warning) lines.push(el("p", { class: "warning", text: name + ": " + r.capacity_warning }));
  }
  lines.push(el("p", { text: "Zone crossings: " + rps(p.zone_crossings) }));
  for (const u of p.unmodeled) lines.push(el("p", { text: "Not modeled: " + u.what + " (" + rps(u.rps) + ")" }));
  box.replaceChildren(...lines);
  box.dataset.moves = p.moves.map((m) => m.from + ">" + m.to).join(",");
  box.dataset.state = "ready";
}

async function act(what, fn) {
  try {
    const rec = await fn();
    status(what + (rec && rec.version ? ": now table v" + rec.version : "") + ".");
    if (rec && rec.table) applyTable(rec);
    await refreshAll(state.generation);
  } catch (e) {
    status(what + " failed: " + e.message, true);
  }
}

async function drain(region, on) {
  const ok = await confirmAction(
    (on ? "Drain " : "Undrain ") + region,
    on ? "Every client of " + region + " goes to its failover regions (within its zone) until it is undrained."
       : region + " takes its clients back.",
    null, () => ({ region, patch: { drain: on } }));
  if (ok) act((on ? "drained " : "undrained ") + region,
    () => api("PATCH", "/v1/regions/" + encodeURIComponent(region), { drain: on, reason: ok.reason }));
}

async function setCanary(region, bps) {
  const ok = await confirmAction("Canary share of " + region, "Share of " + region + "'s users sent to the canary track.",
    { label: "basis points (100 = 1%)", initial: bps, min: 0, max: 10000 },
    (v) => ({ region, patch: { canary_bps: v } }));
  if (ok) act("canary share of " + region + " set to " + pct(ok.value),
    () => api("PATCH", "/v1/regions/" + encodeURIComponent(region), { canary_bps: ok.value, reason: ok.reason }));
}

async function setWeight(region, backend, weight) {
  const ok = await confirmAction("Weight of " + backend, "Relative weight within " + region + " and its track; 0 takes it out.",
    { label: "weight", initial: weight, min: 0, max: 1000000 },
    (v) => ({ region, patch: { weights: { [backend]: v } } }));
  if (ok) act("weight of " + backend + " set to " + ok.value,
    () => api("PATCH", "/v1/regions/" + encodeURIComponent(region), { weights: { [backend]: ok.value }, reason: ok.reason }));
}

async function rolloutAction(region, action) {
  const text = {
    start: "Start the default plan (5% → 10% → 25% → 50% → 100%, 60 s each), rolled back by itself if a gate fails.",
    pause: "Hold the current share; no further step until resumed.",
    resume: "Continue from the current step (its hold restarts).",
    abort: "Set the canary share to 0 now.",
  }[action];
  const ok = await confirmAction(action[0].toUpperCase() + action.slice(1) + " the rollout in " + region, text);
  if (ok) act("rollout " + action + " in " + region,
    () => api("POST", "/v1/rollouts/" + encodeURIComponent(region), { action, reason: ok.reason }));
}

async function rollback(version) {
  const ok = await confirmAction("Roll back to v" + version, "Version " + version + "'s table becomes a new version, pushed to every proxy at once.");
  if (ok) act("rolled back to v" + version, () => api("POST", "/v1/rollback", { to: version, reason: ok.reason }));
}

// ---------- explain ----------

async function explain(ev) {
  ev.preventDefault();
  const q = new URLSearchParams({ ip: $("explain-ip").value.trim() });
  if ($("explain-key").value.trim()) q.set("key", $("explain-key").value.trim());
  if ($("explain-host").value.trim()) q.set("host", $("explain-host").value.trim());
  const out = $("explain-out");
  try {
    const x = await api("GET", "/v1/explain?" + q);
    const d = x.decision;
    const c = x.client;
    const headline = d.outcome === "route"
      ? `→ ${d.region} (${d.reason}), backend ${d.backend}, track ${d.track}`
      : `→ ${d.status} ${d.reason}` + (d.zone ? " (zone " + d.zone + ")" : "");
    const candidates = el("ol", { class: "candidates" });
    for (const r of x.candidates) {
      candidates.append(el("li", { class: r.available ? "up" : "down" },
        `${r.region} as ${r.as}` + (r.zone ? ` · zone ${r.zone}` : "") + (r.drained ? " · drained" : "") +
        (r.available ? "" : " · unavailable") + ` · track ${r.track}`));
    }
    out.replaceChildren(
      el("p", { class: "explain-head", "data-outcome": d.outcome, "data-region": d.region || "", "data-zone": c.zone || "" }, headline),
      el("p", { text: `client ${c.ip}: country ${c.country || "unknown"} (${c.lookup}), continent ${c.continent || "–"}, ` +
        `zone ${c.zone || "none"}, home ${c.home} (via ${c.home_via}), allowed: ${c.allowed.join(", ")}` +
        (x.pin ? `, pinned to ${x.pin}` : "") }),
      el("p", { text: "candidates, in order (health as " + x.health.reporting_proxies + " proxies report it):" }),
      candidates);
    if (x.dns) {
      const n = x.dns;
      const agree = n.agrees_with_http === true ? "agrees with HTTP" : n.agrees_with_http === false ? "DISAGREES with HTTP" : "";
      const text = n.answer === "addresses"
        ? `DNS ${n.name} → ${n.region} edges ${n.addresses.join(", ")} · TTL ${n.ttl} (${n.state}) · ${agree}`
        : `DNS ${n.name} → ${n.answer}` + (n.why ? ` (${n.why})` : "") + (agree ? " · " + agree : "");
      out.append(el("p", { class: "explain-dns", "data-region": n.region || "", "data-agrees": String(n.agrees_with_http), text }));
    }
  } catch (e) {
    out.replaceChildren(el("p", { class: "error", text: "explain failed: " + e.message }));
  }
}

// ---------- start ----------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    login($("token").value.trim());
    $("token").value = "";
  });
  $("logout").addEventListener("click", () => logout(""));
  $("explain-form").addEventListener("submit", explain);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) login(saved);
});
