// The status page: reads the node's HTTP API with the token entered in the page (sent as
// X-Directory-Token, so the node's ACL rules apply) and follows GET /v1/watch for live
// changes. No build step, no dependencies.
"use strict";

const TOKEN_KEY = "directory-token";
const FEED_LENGTH = 50; // changes kept in the live feed
const REFRESH_MS = 15000; // full re-read: heartbeats move leases but are not watch events
const RETRY_MAX_MS = 30000; // longest pause before reconnecting the watch stream

const state = {
  services: new Map(), // service -> Map(instance -> record)
  skewMs: 0, // node clock minus ours, from the Date header
  feed: [],
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { "X-Directory-Token": token } : {};
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  const date = Date.parse(response.headers.get("date") || "");
  // The header has whole seconds: only a clock that is clearly off is corrected.
  if (!Number.isNaN(date)) state.skewMs = Math.abs(date - Date.now()) > 2000 ? date - Date.now() : 0;
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

function setStatus(text, cls) {
  $("status").textContent = text;
  $("status").className = `status ${cls}`;
}

// ---- reading the whole state ----

async function loadAll() {
  const health = await api("/v1/health").catch(() => null);
  if (health) $("node").textContent = `node ${health.node} · ${health.version}`;
  await Promise.all([loadMembers(), loadServices()]);
  render();
}

async function loadMembers() {
  const note = $("members-note");
  try {
    const body = await api("/v1/cluster/members");
    renderMembers(body.members);
    note.hidden = true;
  } catch (e) {
    renderMembers([]);
    note.hidden = false;
    note.textContent = `Members not shown: ${e.message}` +
      (e.status === 401 || e.status === 403 ? " (needs a token with the operator rule)" : "");
  }
}

async function loadServices() {
  try {
    const list = await api("/v1/services");
    const views = await Promise.all(list.services.map((s) => api(`/v1/services/${encodeURIComponent(s.service)}`)));
    state.services = new Map(views.map((v) => [v.service, new Map(v.instances.map((r) => [r.instance, r]))]));
    showError("");
  } catch (e) {
    state.services = new Map();
    showError(`Cannot read services: ${e.message}` + (e.status === 401 ? " (enter a token above)" : ""));
  }
}

// ---- rendering ----

function renderMembers(members) {
  const body = $("members").tBodies[0];
  body.replaceChildren(...members.map((m) => el("tr", { "data-member": m.name },
    el("td", {}, m.name + (m.local ? " (this node)" : "")),
    el("td", {}, m.address || "–"),
    el("td", { class: `state-${m.state}` }, m.state),
    el("td", {}, m.last_change))));
}

function render() {
  const names = [...state.services.keys()].filter((s) => state.services.get(s).size > 0).sort();
  $("services").tBodies[0].replaceChildren(...names.map((s) => el("tr", { "data-service": s },
    el("td", {}, el("a", { href: `#service-${s}` }, s)),
    el("td", { class: "count" }, state.services.get(s).size))));
  const sections = names.map((s) => renderService(s, state.services.get(s)));
  const root = $("instances");
  root.replaceChildren(root.firstElementChild, ...sections);
  if (names.length === 0) root.append(el("p", { class: "muted" }, "No live instances."));
  tickLeases();
}

function renderService(service, instances) {
  const rows = [...instances.values()].sort((a, b) => a.instance.localeCompare(b.instance)).map((r) =>
    el("tr", { "data-instance": `${service}/${r.instance}` },
      el("td", {}, r.instance),
      el("td", {}, r.address),
      el("td", {}, ...r.tags.map((t) => el("span", { class: "chip" }, t))),
      el("td", {}, ...Object.entries(r.meta).map(([k, v]) => el("span", { class: "chip" }, `${k}=${v}`))),
      el("td", { class: "lease", "data-expires": r.lease_expires_at }, "")));
  const table = el("table", {},
    el("thead", {}, el("tr", {}, ...["Instance", "Address", "Tags", "Meta", "Lease"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
  return el("div", { id: `service-${service}`, "data-service": service },
    el("h3", {}, `${service} `, el("span", { class: "muted" }, `(${instances.size})`)),
    el("div", { class: "scroll" }, table));
}

function tickLeases() {
  const now = Date.now() + state.skewMs;
  for (const cell of document.querySelectorAll("td.lease")) {
    const left = Math.round((Date.parse(cell.dataset.expires) - now) / 1000);
    cell.textContent = left > 0 ? `${left}s` : "expiring";
    cell.classList.toggle("expiring", left <= 5);
  }
}

function renderFeed() {
  $("feed").replaceChildren(...state.feed.map((c) => el("li", { "data-change": c.index },
    el("span", { class: `kind-${c.type}` }, c.type), ` ${c.service}/${c.instance} `,
    el("span", { class: "muted" }, `#${c.index} · ${c.at}`))));
}

// ---- the live stream ----

function applyChange(change) {
  let instances = state.services.get(change.service);
  if (!instances) state.services.set(change.service, (instances = new Map()));
  if (change.record) instances.set(change.instance, change.record);
  else instances.delete(change.instance);
  state.feed.unshift({ ...change, at: new Date().toLocaleTimeString() });
  state.feed.length = Math.min(state.feed.length, FEED_LENGTH);
  render();
  renderFeed();
}

// Server-Sent Events read with fetch, so the token travels in a header (EventSource cannot
// set one) and never in a URL.
async function follow(signal) {
  const response = await fetch("/v1/watch", { headers: headers(), signal, cache: "no-store" });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  setStatus("live", "live");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      handleEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
}

function handleEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (data.length === 0) return; // keep-alive comment
  const payload = JSON.parse(data.join("\n"));
  if (["registered", "updated", "expired", "deregistered"].includes(name)) applyChange(payload);
  else loadAll(); // lagged or a kind this page does not know: re-read everything
}

async function watchForever(signal) {
  let pause = 1000;
  while (!signal.aborted) {
    try {
      await follow(signal);
      pause = 1000;
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError) showError(`Live updates stopped: ${e.message}`);
    }
    setStatus("reconnecting", "down");
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, RETRY_MAX_MS);
    await loadAll(); // catch up on what the gap missed
  }
}

// ---- start ----

let watching = new AbortController();

async function start() {
  watching.abort();
  watching = new AbortController();
  await loadAll();
  watchForever(watching.signal);
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  $("token").value = "";
  start();
});

setInterval(tickLeases, 1000);
setInterval(() => loadAll(), REFRESH_MS);
start();
