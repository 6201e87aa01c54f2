// The team's console (docs/admin-api.md#the-console): the admin API read and driven from this page, same origin.
// The admin credential lives in this closure only — never in storage, a cookie or the URL — and every value from
// the API reaches the page as text (textContent, SVG attributes), never as markup.
"use strict";
(() => {
  const API = "/admin/v1";
  let credential = null;
  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || `HTTP ${status}`);
      this.status = status;
    }
  }

  async function call(method, path, body) {
    const init = { method, headers: { Authorization: `Bearer ${credential}` }, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const answer = await fetch(API + path, init);
    const data = await answer.json().catch(() => null);
    if (answer.status === 401) {
      logout("The credential was refused (revoked, or not an admin credential): log in again.");
      throw new ApiError(401, data);
    }
    if (answer.status >= 400) throw new ApiError(answer.status, data);
    return { status: answer.status, data };
  }

  // ---- small DOM helpers: text only ----
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function fill(tableId, rows) {
    const body = $(tableId).tBodies[0];
    body.replaceChildren(...rows);
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "nothing yet", "empty");
      td.colSpan = $(tableId).tHead.rows[0].cells.length;
      tr.append(td);
      body.append(tr);
    }
  }
  function row(cells) {
    const tr = el("tr");
    for (const c of cells) tr.append(c instanceof Node ? wrap(c) : el("td", c));
    return tr;
  }
  function wrap(node) {
    const td = el("td");
    td.append(node);
    return td;
  }
  const num = (v) => (v === null || v === undefined ? "-" : Number(v).toLocaleString("en-US"));
  const usd = (v) => (v === null || v === undefined ? "unknown" : v === 0 ? "$0"
    : v >= 1 ? "$" + v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })
      : "$" + v.toFixed(6));
  function say(text, isError) {
    const s = $("status");
    s.textContent = text;
    s.className = isError ? "status error" : "status";
  }

  // a spend bar: `spent` of `limit` (no limit: the figure alone)
  function bar(spent, limit, format) {
    const box = el("div", null, "spend");
    const label = el("span", limit ? `${format(spent)} of ${format(limit)}` : format(spent), "spend-label");
    if (limit) {
      const track = el("div", null, "track");
      const fillBar = el("div", null, spent >= limit ? "fill over" : "fill");
      fillBar.style.width = `${Math.min(100, (100 * spent) / limit).toFixed(1)}%`;
      track.append(fillBar);
      box.append(track);
    }
    box.append(label);
    return box;
  }

  // ---- keys ----
  async function loadKeys() {
    const { data } = await call("GET", "/keys");
    fill("keys", data.keys.map((k) => {
      const tr = row([k.name, k.state, bar(k.usd_this_month, k.monthly_usd, usd),
        bar(k.tokens_today, k.daily_tokens, num), num(k.requests_today), num(k.refused_today),
        k.last_used || "never", k.state === "active" ? revokeButton(k.name) : el("span")]);
      tr.dataset.key = k.name;
      return tr;
    }));
  }

  function revokeButton(name) {
    // two steps, no window.confirm: the first click arms it, the second revokes
    const b = el("button", "Revoke", "revoke");
    b.addEventListener("click", async () => {
      if (b.dataset.armed !== "1") {
        b.dataset.armed = "1";
        b.textContent = `Revoke ${name}?`;
        return;
      }
      b.disabled = true;
      try {
        const { status, data } = await call("POST", `/keys/${encodeURIComponent(name)}/revoke`);
        say(status === 202 ? `${data.applied} Not confirmed by: ${data.unconfirmed.join(", ")}` : data.applied,
          status === 202);
        await loadKeys();
      } catch (e) {
        say(`Revoke ${name}: ${e.message}`, true);
        b.disabled = false;
      }
    });
    return b;
  }

  async function addKey(event) {
    event.preventDefault();
    const body = { name: $("add-name").value.trim() };
    for (const [id, field, parse] of [["add-monthly-usd", "monthly-usd", Number],
      ["add-daily-tokens", "daily-tokens", (v) => parseInt(v, 10)], ["add-rpm", "rpm", (v) => parseInt(v, 10)]]) {
      if ($(id).value !== "") body[field] = parse($(id).value);
    }
    try {
      const { status, data } = await call("POST", "/keys", body);
      $("add-form").reset();
      $("new-key-name").textContent = data.name;
      $("new-key-value").textContent = data.key;
      $("new-key").hidden = false;
      say(status === 202 ? `${data.applied} Not confirmed by: ${data.unconfirmed.join(", ")}` : data.applied,
        status === 202);
      await loadKeys();
    } catch (e) {
      say(`Add ${body.name}: ${e.message}`, true);
    }
  }

  function forgetNewKey() {
    $("new-key-value").textContent = "";
    $("new-key-name").textContent = "";
    $("new-key").hidden = true;
  }

  // ---- charts: horizontal bars in SVG ----
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function chart(id, items, format) {
    const box = $(id);
    if (!items.length) {
      box.replaceChildren(el("p", "no requests in this period", "empty"));
      return;
    }
    const width = 420, label = 130, line = 22;
    const most = Math.max(...items.map((i) => i.value), 0) || 1;
    const root = svg("svg", { width, height: line * items.length + 4, role: "img", viewBox: `0 0 ${width} ${line * items.length + 4}` });
    items.forEach((item, n) => {
      const y = n * line + 2;
      root.append(svg("text", { x: 0, y: y + 14, class: "label" }, item.label.length > 18 ? item.label.slice(0, 17) + "…" : item.label));
      const w = Math.max(1, ((width - label - 90) * item.value) / most);
      const rect = svg("rect", { x: label, y, width: w, height: line - 6, class: "bar" });
      rect.dataset.label = item.label;
      rect.dataset.value = item.value;
      rect.append(svg("title", {}, `${item.label}: ${format(item.value)}`));
      root.append(rect);
      root.append(svg("text", { x: label + w + 4, y: y + 14, class: "value" }, format(item.value)));
    });
    box.replaceChildren(root);
  }
  async function loadSpend() {
    const since = $("since").value;
    const [byKey, byModel, byDay] = await Promise.all(["key", "model", "day"].map((by) =>
      call("GET", `/spend?by=${by}&since=${encodeURIComponent(since)}`).then((r) => r.data.rows)));
    const tokens = (r) => (r.prompt_tokens || 0) + (r.completion_tokens || 0);
    chart("chart-key", byKey.map((r) => ({ label: r.key, value: r.cost_usd || 0 })), usd);
    chart("chart-model", byModel.map((r) => ({ label: r.model, value: tokens(r) })), num);
    chart("chart-day", byDay.map((r) => ({ label: r.day, value: tokens(r) })), num);
  }

  // ---- the cache doctor, accounts, learned facts ----
  async function loadConversations() {
    const { data } = await call("GET", `/conversations?since=${encodeURIComponent($("since").value)}`);
    fill("conversations", data.rows.map((r) => row([r.conversation, r.first_seen, num(r.turns),
      `${Math.round(100 * r.hit_share)}% (${num(r.cached_tokens)} of ${num(r.prompt_tokens)})`, num(r.missed_turns),
      num(r.lost_tokens), usd(r.lost_usd), r.causes || "-"])));
  }
  async function loadAccounts() {
    const { data } = await call("GET", "/accounts");
    fill("accounts", data.accounts.map((a) => {
      const tr = row([a.name, a.kind, a.state, a.base_url || "-", num(a.requests_today),
        a.cooldown_until ? `cooling down until ${a.cooldown_until}` : a.last_error || "",
        a.kind === "key" ? checkButton(a.name) : el("span")]);
      tr.dataset.account = a.name;
      return tr;
    }));
  }
  function checkButton(name) {
    // qwen-auth check NAME, without --deep: it reads the upstream's list and spends nothing
    const b = el("button", "Check", "check");
    b.addEventListener("click", async () => {
      b.disabled = true;
      say(`Checking ${name}…`);
      try {
        const { data } = await call("POST", `/accounts/${encodeURIComponent(name)}/check`, {});
        say(`${name}: ${data.healthy ? "as the gateway assumes" : "differences"} — ${data.lines.join(" · ")}`,
          !data.healthy);
      } catch (e) {
        say(`Check ${name}: ${e.message}`, true);
      }
      b.disabled = false;
    });
    return b;
  }
  async function loadLearned() {
    const { data } = await call("GET", "/learned");
    fill("learned", data.facts.map((f) => {
      const b = el("button", "Forget", "forget");
      b.addEventListener("click", async () => {
        b.disabled = true;
        try {
          const { data: gone } = await call("DELETE", `/learned?model=${encodeURIComponent(f.model)}&fact=${encodeURIComponent(f.fact)}`);
          say(`Forgot ${gone.forgot} fact${gone.forgot === 1 ? "" : "s"} of ${f.model}.`);
          await loadLearned();
        } catch (e) {
          say(`Forget ${f.model}: ${e.message}`, true);
          b.disabled = false;
        }
      });
      return row([f.model, f.fact, num(f.value), f.expires ? new Date(f.expires * 1000).toISOString() : "-", b]);
    }));
  }

  async function loadAll() {
    const parts = [loadKeys(), loadSpend(), loadConversations(), loadAccounts(), loadLearned()];
    const failed = (await Promise.allSettled(parts)).filter((p) => p.status === "rejected");
    if (credential === null) return;
    if (failed.length) say(failed.map((p) => p.reason.message).join("; "), true);
    else say(`Read at ${new Date().toLocaleTimeString()}.`);
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  }

  // ---- logging in and out ----
  async function login(event) {
    event.preventDefault();
    const input = $("credential");
    credential = input.value.trim();
    input.value = "";  // the field forgets it at once
    $("login-error").textContent = "";
    try {
      await call("GET", "/keys");
    } catch (e) {
      if (credential !== null) logout(e.message);
      return;
    }
    $("login").hidden = true;
    $("console").hidden = false;
    $("refresh").hidden = $("logout").hidden = false;
    await loadAll();
  }
  function logout(why) {
    credential = null;
    forgetNewKey();
    for (const id of ["keys", "conversations", "accounts", "learned"]) $(id).tBodies[0].replaceChildren();
    for (const id of ["chart-key", "chart-model", "chart-day"]) $(id).replaceChildren();
    $("console").hidden = true;
    $("refresh").hidden = $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = typeof why === "string" ? why : "";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("add-form").addEventListener("submit", addKey);
    $("new-key-done").addEventListener("click", forgetNewKey);
    $("refresh").addEventListener("click", loadAll);
    $("logout").addEventListener("click", () => logout());
    $("since").addEventListener("change", loadAll);
  });
})();
