// telephony-bot admin page: live calls with their transcripts, and the last call records.
// Read-only. The token comes from ?token= (kept in this tab's sessionStorage, then removed
// from the address bar) or from the login form; it is sent as a Bearer header, never in a URL.
"use strict";

const TOKEN_KEY = "telephony-bot-admin-token";
const RECONCILE_MS = 10000;
const ENDED_LINGER_MS = 5000;
const cards = new Map(); // call_id -> {el, base, seen:Set, ended:bool}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

(function takeTokenFromUrl() {
  const url = new URL(location.href);
  const t = url.searchParams.get("token");
  if (t) {
    sessionStorage.setItem(TOKEN_KEY, t);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
})();

class Unauthorized extends Error {}

async function api(path) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  const resp = await fetch(path, { headers, cache: "no-store" });
  if (resp.status === 401) throw new Unauthorized();
  return resp;
}

function $(sel, root = document) { return root.querySelector(sel); }

function setPill(el, text, cls, title = "") {
  el.textContent = text;
  el.className = "pill " + cls;
  el.title = title;
}

// The call record's cost: USD from the price table in force; null when the table does not
// price a model the call used (unknown, never a guess); "free" for a call only free
// providers answered (the offline engine, the echo): no dollar figure.
function fmtCost(usage) {
  if (!usage || !("cost_usd" in usage)) return "";
  if (usage.billed === false) return "free";
  const c = usage.cost_usd;
  return typeof c === "number" ? "$" + c.toFixed(4) : "unknown";
}

function fmtDuration(s) {
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(h ? 2 : 1, "0"), ss = String(sec).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function epoch(v) {
  if (typeof v === "number") return v;
  if (typeof v === "string" && v) { const t = Date.parse(v); if (!isNaN(t)) return t / 1000; }
  return null;
}

// ---------- live calls ----------

function addLine(card, role, text, opts = {}) {
  if (!text) return;
  const key = opts.key || `${role}|${text}`;
  if (card.seen.has(key)) return;
  card.seen.add(key);
  const list = $(".transcript", card.el);
  const li = document.createElement("li");
  li.className = role + (opts.interrupted ? " interrupted" : "");
  if (role === "user" || role === "agent") {
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "Caller" : "Bot";
    li.append(who);
  }
  li.append(document.createTextNode(text));
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function upsertCall(c) {
  let card = cards.get(c.call_id);
  if (!card) {
    const el = $("#call-card").content.firstElementChild.cloneNode(true);
    el.dataset.callId = c.call_id;
    card = { el, base: null, seen: new Set(), ended: false };
    cards.set(c.call_id, card);
    $("#calls").append(el);
  }
  const el = card.el;
  if (c.route !== undefined) $(".route", el).textContent = c.route || "(default route)";
  if (c.caller !== undefined) $(".caller", el).textContent = c.caller || "unknown caller";
  if (c.called !== undefined) $(".called", el).textContent = c.called || "?";
  if (c.worker !== undefined && c.worker !== null) $(".worker", el).textContent = `worker ${c.worker}`;
  if (c.trunk) $(".trunk", el).textContent = `via ${c.trunk}`;
  if (c.state && !card.ended) $(".state", el).textContent = c.state;
  if (typeof c.duration_s === "number") card.base = Date.now() / 1000 - c.duration_s;
  else if (card.base === null) card.base = epoch(c.started_at) || Date.now() / 1000;
  for (const t of c.transcript || []) {
    addLine(card, t.role, t.text, { interrupted: t.interrupted, key: t.item_id ? `${t.role}|${t.item_id}` : undefined });
  }
  tick();
  return card;
}

function endCall(callId, reason) {
  const card = cards.get(callId);
  if (!card || card.ended) return;
  card.ended = true;
  card.el.classList.add("ended");
  $(".state", card.el).textContent = "ended" + (reason ? " · " + reason : "");
  setTimeout(() => { card.el.remove(); cards.delete(callId); updateCount(); }, ENDED_LINGER_MS);
  updateCount();
  setTimeout(loadRecords, 700);
  setTimeout(loadRecords, 2500);
}

function updateCount() {
  const live = [...cards.values()].filter((c) => !c.ended).length;
  $("#count").textContent = String(live);
  $("#empty").hidden = cards.size > 0;
}

function tick() {
  const now = Date.now() / 1000;
  for (const card of cards.values()) {
    if (!card.ended && card.base !== null) $(".duration", card.el).textContent = fmtDuration(now - card.base);
  }
  updateCount();
}

function onEvent(ev) {
  const id = ev.call_id;
  switch (ev.type) {
    case "call.started":
      upsertCall({ call_id: id, called: ev.called, caller: ev.caller, route: ev.route,
                   trunk: ev.trunk, worker: ev.worker, state: "ringing", started_at: ev.ts });
      break;
    case "call.answered":
      upsertCall({ call_id: id, state: "talking" });
      break;
    case "turn.user":
    case "turn.agent": {
      const card = cards.get(id) || upsertCall({ call_id: id, worker: ev.worker });
      const role = ev.type === "turn.user" ? "user" : "agent";
      addLine(card, role, ev.text, { interrupted: ev.interrupted, key: ev.item_id ? `${role}|${ev.item_id}` : undefined });
      break;
    }
    case "barge_in": {
      const card = cards.get(id);
      if (card) addLine(card, "note", "caller interrupted the bot", { key: `barge|${ev.seq}|${ev.ts}` });
      break;
    }
    case "tool.called": {
      const card = cards.get(id);
      // the arguments as the engine published them: sensitive ones read "***"
      const args = ev.arguments && typeof ev.arguments === "object"
        ? Object.entries(ev.arguments).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ")
        : (ev.arguments ? String(ev.arguments) : "");
      if (card) addLine(card, "note", `tool ${ev.tool} called${args ? ` (${args})` : ""}`, { key: `tool|${ev.tool_call_id}` });
      break;
    }
    case "tool.pending": {
      const card = cards.get(id);
      if (card) addLine(card, "note", `tool ${ev.tool}: its result will follow`, { key: `toolp|${ev.tool_call_id}` });
      break;
    }
    case "transfer.started": {
      const card = cards.get(id);
      if (card) addLine(card, "note", `transferring to ${ev.target}`, { key: `xfer|${ev.target}|${ev.ts}` });
      break;
    }
    case "transfer.refused": {
      const card = cards.get(id);
      if (card) addLine(card, "note", `transfer refused: ${ev.target}`, { key: `xferr|${ev.ts}` });
      break;
    }
    case "transfer.failed": {
      const card = cards.get(id);
      if (card) addLine(card, "note", `transfer failed: ${ev.reason || ev.status || ""}`, { key: `xferf|${ev.ts}` });
      break;
    }
    case "call.ended":
      endCall(id, ev.reason || ev.ended_by || "");
      break;
  }
}

async function reconcile() {
  const resp = await api("/calls");
  if (!resp.ok) return;
  const { calls } = await resp.json();
  const live = new Set();
  for (const c of calls) { live.add(c.call_id); upsertCall(c); }
  for (const [id, card] of cards) if (!card.ended && !live.has(id)) endCall(id, "");
}

// ---------- the event stream (fetch, so the token travels in a header) ----------

async function stream() {
  const stateEl = $("#stream");
  for (;;) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (token()) headers["Authorization"] = "Bearer " + token();
      const resp = await fetch("/events", { headers, cache: "no-store" });
      if (resp.status === 401) throw new Unauthorized();
      if (!resp.ok || !resp.body) throw new Error("events: HTTP " + resp.status);
      setPill(stateEl, "live", "ok");
      await reconcile();
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
          if (data) { try { onEvent(JSON.parse(data)); } catch (e) { console.warn(e); } }
        }
      }
    } catch (e) {
      if (e instanceof Unauthorized) { showLogin(true); return; }
    }
    setPill(stateEl, "reconnecting …", "warn");
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---------- health and records ----------

async function loadHealth() {
  try {
    const resp = await fetch("/health", { cache: "no-store" });
    const h = await resp.json();
    const reasons = (h.reasons || []).join("\n");
    setPill($("#health"), h.ready ? "ready" : "not ready", h.ready ? "ok" : "bad", reasons);
    showAlerts(h.ready ? [] : h.reasons || ["not ready"]);
    if (typeof h.calls === "number") {
      $("#load").textContent = `${h.calls} / ${h.max_calls ?? "?"} calls`;
    }
    showTrunks(h.trunks || []);
  } catch (e) {
    setPill($("#health"), "unreachable", "bad");
    showAlerts(["The admin API does not answer."]);
  }
}

// One pill per trunk the engine registers with: its state, the registrar's last answer.
function showTrunks(trunks) {
  const box = $("#trunks");
  box.replaceChildren();
  for (const t of trunks) {
    if (t.state === "off") continue;
    const pill = document.createElement("span");
    pill.dataset.trunk = t.trunk;
    const text = t.state === "failed" ? `${t.trunk}: failed ${t.status_code || ""}`.trim()
                                      : `${t.trunk}: ${t.state}`;
    setPill(pill, text, t.state === "registered" ? "ok" : t.state === "failed" ? "bad" : "warn",
            t.detail || "");
    box.append(pill, " ");
  }
}

function showAlerts(reasons) {
  const box = $("#alerts");
  box.hidden = reasons.length === 0;
  const ul = document.createElement("ul");
  for (const r of reasons) {
    const li = document.createElement("li");
    li.textContent = r;
    ul.append(li);
  }
  box.replaceChildren(document.createTextNode("Not ready:"), ul);
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (cls) td.className = cls;
  tr.append(td);
}

function outcome(r) {
  if (r.answered === false) return ["not answered", "error"];
  if (/transferred/.test(r.end_reason || "")) return ["transferred", "transferred"];
  if (/error|unavailable/.test(r.end_reason || "")) return ["failed", "error"];
  if (r.ended_by === "remote") return ["caller hung up", "completed"];
  if (r.ended_by === "local") return ["bot hung up", "completed"];
  return [r.ended_by || "", "completed"];
}

async function loadRecords() {
  let resp;
  try { resp = await api("/records?limit=25"); } catch (e) { return; }
  if (!resp.ok) return;
  const { records } = await resp.json();
  const body = $("#records tbody");
  body.replaceChildren();
  for (const r of records) {
    const tr = document.createElement("tr");
    const ended = epoch((r.times || {}).end) ?? epoch(r.ended_at);
    cell(tr, ended ? new Date(ended * 1000).toLocaleTimeString() : "");
    cell(tr, r.caller);
    cell(tr, r.called);
    cell(tr, r.route || "(default)");
    cell(tr, typeof r.duration_s === "number" ? fmtDuration(r.duration_s) : "", "num");
    const [result, cls] = outcome(r);
    cell(tr, result, "result-" + cls);
    cell(tr, r.end_reason ?? r.reason);
    cell(tr, fmtCost(r.usage), "num cost");
    body.append(tr);
  }
  $("#no-records").hidden = records.length > 0;
  $("#records").hidden = records.length === 0;
}

// ---------- start ----------

function showLogin(failed) {
  $("#board").hidden = true;
  $("#login").hidden = false;
  const err = $("#login-error");
  err.hidden = !failed || !token();
  err.textContent = "That token was refused.";
  $("#token").focus();
}

let started = false;
async function start() {
  if (started) return;
  try {
    const resp = await api("/calls");
    if (!resp.ok) throw new Error("HTTP " + resp.status);
  } catch (e) {
    if (e instanceof Unauthorized) { showLogin(true); return; }
  }
  started = true;
  $("#login").hidden = true;
  $("#board").hidden = false;
  updateCount();
  loadRecords();
  stream();
  setInterval(tick, 1000);
  setInterval(() => reconcile().catch(() => {}), RECONCILE_MS);
  setInterval(loadRecords, 15000);
}

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
  start();
});

loadHealth();
setInterval(loadHealth, 5000);
start();
