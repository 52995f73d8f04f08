/*
 * The NetSentinel dashboard page (GET /ws/dashboard), on top of client.js.
 *
 * Event fields come from attackers (user names, paths, payloads): they are only ever written
 * with textContent, never as HTML. The page keeps bounded state (MAX_ROWS events per view,
 * PLOT_SECONDS of rate buckets) so it can stay open for days.
 */
(function () {
  "use strict";

  const SEVERITIES = ["info", "low", "medium", "high", "critical"];
  const MAX_ROWS = 500;
  const PLOT_SECONDS = 180;
  const TOKEN_KEY = "netsentinel.token";
  const THEME_KEY = "netsentinel.theme";
  const ALL = "all";

  const $ = (id) => document.getElementById(id);

  // --- configuration handed over by the server ---

  const pathMeta = document.querySelector('meta[name="netsentinel-ws-path"]');
  const wsPath = pathMeta && pathMeta.content.startsWith("/") ? pathMeta.content : "/ws";
  const wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + wsPath;
  // Only `serve --dev` puts a token in the page; production asks the analyst for one.
  const devMeta = document.querySelector('meta[name="netsentinel-dev-token"]');
  const devToken = devMeta ? devMeta.content : "";

  // --- state (all of it bounded) ---

  let client = null;
  let canAck = false;
  let view = ALL;
  let channelList = [];
  const events = { [ALL]: [] }; // view -> messages, oldest first, at most MAX_ROWS
  const counts = { [ALL]: 0 }; // view -> messages received since the page opened
  const acked = new Set(); // alert ids acknowledged from this page
  const rowMessage = new WeakMap(); // <tr> -> its message, for the detail view
  const buckets = new Map(); // epoch second -> per-severity counts, for the rate plot
  let queue = []; // messages waiting for the next animation frame
  let renderScheduled = false;
  let gapChannels = new Set();
  let detailMessage = null;

  // --- the token ---

  function decodeClaims(token) {
    const parts = token.split(".");
    if (parts.length !== 3) {
      throw new Error("this is not a JWT (expected three dot-separated parts)");
    }
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  function scopesOf(claims) {
    const scope = claims.scope || "";
    return Array.isArray(scope) ? scope : String(scope).split(/\s+/).filter(Boolean);
  }

  /** Connect with a token; the claims are read only to show who and what it allows. */
  function signIn(token) {
    let claims;
    try {
      claims = decodeClaims(token);
    } catch (err) {
      showLogin("Cannot read the token: " + err.message);
      return;
    }
    if (claims.exp && claims.exp * 1000 < Date.now()) {
      showLogin("This token has expired; paste a fresh one.");
      return;
    }
    if (token !== devToken) {
      sessionStorage.setItem(TOKEN_KEY, token);
    }
    canAck = scopesOf(claims).includes("alerts:ack");
    const expires = claims.exp ? " (until " + clock(claims.exp) + ")" : "";
    $("identity").textContent = (claims.sub || "?") + expires;
    $("login").hidden = true;
    $("main").hidden = false;
    $("signout").hidden = false;
    if (client) {
      client.setToken(token);
      client.start(); // keeps the positions: the new session resumes where the old one stopped
    } else {
      client = new window.NetSentinelClient({
        url: wsUrl,
        token,
        onState: showState,
        onWelcome: buildChannels,
        onEvent: receive,
        onGap: showGap,
        onError: (err) => setFilterStatus(err.message || String(err), true),
      }).start();
    }
    rerender();
  }

  function showLogin(message) {
    $("login").hidden = false;
    $("main").hidden = true;
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  function signOut() {
    if (client) {
      client.stop();
    }
    sessionStorage.removeItem(TOKEN_KEY);
    $("identity").textContent = "";
    $("signout").hidden = true;
    showLogin("");
  }

  // --- connection state and gaps ---

  function showState(state, detail) {
    const el = $("state");
    el.dataset.state = state;
    let text = state;
    if (state === "connecting") {
      text = "connecting\u2026";
    } else if (state === "reconnecting" && detail.retryIn) {
      text = "reconnecting (retry in " + Math.ceil(detail.retryIn / 1000) + " s)";
    } else if (state === "auth-failed") {
      text = "auth failed: " + (detail.reason || "token refused");
      showLogin("The server refused the token (" + (detail.reason || "code " + detail.code) + ").");
    }
    el.textContent = text;
  }

  function showGap(msg) {
    gapChannels.add(msg.channel);
    $("gap-text").textContent =
      "Gap detected at " + clock(Date.now() / 1000) + " on " + [...gapChannels].join(", ") +
      ": events from the outage are no longer in the server's history.";
    $("gap").hidden = false;
  }

  function dismissGap() {
    gapChannels = new Set();
    $("gap").hidden = true;
  }

  // --- channels: filter check boxes and tabs ---

  function buildChannels(welcome) {
    const channels = welcome.channels;
    if (channels.join() === channelList.join()) {
      return; // a reconnect: keep the analyst's choices
    }
    channelList = channels.slice();
    const box = $("channels");
    box.replaceChildren(box.querySelector("legend"));
    for (const channel of channels) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = channel;
      input.checked = !client.channels || client.channels.includes(channel);
      label.append(input, " " + channel);
      box.append(label);
      if (!(channel in events)) {
        events[channel] = [];
        counts[channel] = 0;
      }
    }
    buildTabs();
  }

  function buildTabs() {
    const tabs = $("tabs");
    tabs.replaceChildren();
    for (const name of [ALL, ...channelList]) {
      const tab = document.createElement("button");
      tab.type = "button";
      tab.id = "tab-" + name;
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-controls", "events");
      tab.dataset.view = name;
      const count = document.createElement("span");
      count.className = "count";
      tab.append(name, count);
      tabs.append(tab);
    }
    selectTab(view in events ? view : ALL, false);
    updateCounts();
  }

  function selectTab(name, focus) {
    view = name;
    for (const tab of $("tabs").children) {
      const selected = tab.dataset.view === name;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1; // roving tab stop: arrows move between tabs
      if (selected && focus) {
        tab.focus();
      }
    }
    rerender();
  }

  function onTabKey(e) {
    const tabs = [...$("tabs").children];
    const index = tabs.findIndex((t) => t.dataset.view === view);
    const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 };
    if (e.key in moves) {
      e.preventDefault();
      const next = tabs[(moves[e.key] + tabs.length) % tabs.length];
      selectTab(next.dataset.view, true);
    }
  }

  function updateCounts() {
    for (const tab of $("tabs").children) {
      tab.querySelector(".count").textContent = String(counts[tab.dataset.view] || 0);
    }
  }

  // --- filters: map the form to the protocol's subscribe filter ---

  function splitList(text) {
    return text.split(/[\s,]+/).filter(Boolean);
  }

  function applyFilters() {
    if (!client) {
      return;
    }
    const channels = [...$("channels").querySelectorAll("input:checked")].map((i) => i.value);
    const filter = {};
    const minSeverity = $("min-severity").value;
    const types = splitList($("event-types").value);
    const cidrs = splitList($("src-ip").value);
    if (minSeverity) {
      filter.min_severity = minSeverity;
    }
    if (types.length) {
      filter.event_types = types;
    }
    if (cidrs.length) {
      filter.src_ip = cidrs;
    }
    setFilterStatus("applying\u2026", false);
    client
      .setSubscription(channels, filter)
      .then(() => setFilterStatus(client.state === "connected" ? "filter applied" : "filter saved"))
      .catch((err) => setFilterStatus("filter refused: " + err.message, true));
  }

  function setFilterStatus(text, isError) {
    const el = $("filter-status");
    el.textContent = text;
    el.classList.toggle("error", Boolean(isError));
  }

  // --- events: bounded model, batched rendering ---

  function receive(msg) {
    for (const name of [ALL, msg.channel]) {
      const list = events[name] || (events[name] = []);
      list.push(msg);
      if (list.length > MAX_ROWS) {
        list.shift();
      }
      counts[name] = (counts[name] || 0) + 1;
    }
    countRate(msg.event.severity);
    if (view === ALL || view === msg.channel) {
      queue.push(msg);
      // A hidden tab gets no animation frames; keep only what the table can show.
      if (queue.length > MAX_ROWS) {
        queue = queue.slice(-MAX_ROWS);
      }
      if (!renderScheduled) {
        renderScheduled = true;
        requestAnimationFrame(flushQueue);
      }
    }
  }

  /** Insert queued rows once per frame: a busy feed costs one layout per frame, not per event. */
  function flushQueue() {
    renderScheduled = false;
    const batch = queue;
    queue = [];
    const fragment = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) {
      fragment.append(makeRow(batch[i]));
    }
    const tbody = $("rows");
    tbody.prepend(fragment);
    while (tbody.rows.length > MAX_ROWS) {
      tbody.lastElementChild.remove();
    }
    $("empty").hidden = tbody.rows.length > 0;
    updateCounts();
  }

  /** Rebuild the table for the current view (tab switch, sign-in). */
  function rerender() {
    queue = [];
    const fragment = document.createDocumentFragment();
    const list = events[view] || [];
    for (let i = list.length - 1; i >= 0; i--) {
      fragment.append(makeRow(list[i]));
    }
    $("rows").replaceChildren(fragment);
    $("empty").hidden = list.length > 0;
    updateCounts();
  }

  function isAlert(msg) {
    return msg.channel === "alerts";
  }

  function alertId(msg) {
    const data = msg.event.data || {};
    return String(data.alert_id != null ? data.alert_id : msg.event.id);
  }

  function makeRow(msg) {
    const ev = msg.event;
    const data = ev.data || {};
    const severity = SEVERITIES.includes(ev.severity) ? ev.severity : "info";
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.eventId = ev.id;
    const cell = (text, className) => {
      const td = document.createElement("td");
      td.textContent = text == null ? "" : String(text);
      if (className) {
        td.className = className;
      }
      tr.append(td);
      return td;
    };
    cell(clock(ev.timestamp));
    cell(msg.channel, "channel");
    const sev = document.createElement("span");
    sev.className = "sev sev-" + severity;
    sev.textContent = severity;
    cell("", "severity").append(sev);
    cell(ev.event_type, "type");
    cell(ev.source, "wide");
    cell(data.src_ip || data.src_host || "", "src");
    cell(summary(data), "details wide");
    const ackCell = cell("", "ack");
    if (isAlert(msg)) {
      tr.dataset.alert = alertId(msg);
      renderAck(tr, ackCell);
    }
    rowMessage.set(tr, msg);
    return tr;
  }

  function renderAck(tr, td) {
    const id = tr.dataset.alert;
    if (acked.has(id)) {
      tr.classList.add("acked");
      td.textContent = "acked";
    } else if (canAck) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "ack-button";
      button.textContent = "Ack";
      button.setAttribute("aria-label", "Acknowledge alert " + id);
      td.replaceChildren(button);
    }
  }

  /** A one-line digest of `data` (its own src_ip is shown in a column). */
  function summary(data) {
    const parts = [];
    for (const [key, value] of Object.entries(data)) {
      if (key === "src_ip") {
        continue;
      }
      const text = typeof value === "object" && value !== null ? JSON.stringify(value) : value;
      parts.push(key + "=" + text);
      if (parts.join(" ").length > 120) {
        break;
      }
    }
    return parts.join(" ");
  }

  function clock(seconds) {
    const date = seconds ? new Date(seconds * 1000) : new Date();
    return date.toLocaleTimeString([], { hour12: false });
  }

  // --- acknowledging alerts ---

  function acknowledge(id, note) {
    return client.ack(id, note).then(() => {
      acked.add(id);
      for (const tr of $("rows").querySelectorAll("tr[data-alert]")) {
        if (tr.dataset.alert === id) {
          renderAck(tr, tr.querySelector("td.ack"));
        }
      }
    });
  }

  function onRowsClick(e) {
    const tr = e.target.closest("tr");
    if (!tr) {
      return;
    }
    if (e.target.closest(".ack-button")) {
      const button = e.target.closest(".ack-button");
      button.disabled = true;
      acknowledge(tr.dataset.alert).catch((err) => {
        button.disabled = false;
        button.title = err.message;
        button.textContent = "Ack failed";
      });
      return;
    }
    openDetail(rowMessage.get(tr));
  }

  function onRowsKey(e) {
    if ((e.key === "Enter" || e.key === " ") && e.target.matches("tbody tr")) {
      e.preventDefault();
      openDetail(rowMessage.get(e.target));
    }
  }

  function openDetail(msg) {
    detailMessage = msg;
    $("detail-title").textContent = msg.event.event_type + " on " + msg.channel;
    $("detail-json").textContent = JSON.stringify(msg, null, 2);
    const showAck = isAlert(msg) && canAck;
    $("ack-form").hidden = !showAck;
    $("ack-status").textContent = showAck && acked.has(alertId(msg)) ? "acknowledged" : "";
    $("ack-note").value = "";
    $("detail").showModal();
  }

  function onAckSubmit(e) {
    e.preventDefault();
    const status = $("ack-status");
    status.textContent = "sending\u2026";
    acknowledge(alertId(detailMessage), $("ack-note").value.trim())
      .then(() => (status.textContent = "acknowledged"))
      .catch((err) => (status.textContent = "failed: " + err.message));
  }

  // --- the rate plot: stacked bars per second, coloured by severity ---

  function countRate(severity) {
    const second = Math.floor(Date.now() / 1000);
    let bucket = buckets.get(second);
    if (!bucket) {
      bucket = [0, 0, 0, 0, 0];
      buckets.set(second, bucket);
    }
    const index = SEVERITIES.indexOf(severity);
    bucket[index < 0 ? 0 : index] += 1;
  }

  function drawPlot() {
    const now = Math.floor(Date.now() / 1000);
    for (const second of buckets.keys()) {
      if (second <= now - PLOT_SECONDS) {
        buckets.delete(second);
      }
    }
    const canvas = $("rate");
    if (canvas.offsetParent === null) {
      return; // not on screen (token form shown)
    }
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    const style = getComputedStyle(document.documentElement);
    const colours = SEVERITIES.map((s) => style.getPropertyValue("--sev-" + s).trim());
    const totals = [];
    for (let i = PLOT_SECONDS; i >= 1; i--) {
      const bucket = buckets.get(now - i);
      totals.push(bucket ? bucket.reduce((a, b) => a + b, 0) : 0);
    }
    const peak = Math.max(1, ...totals);
    const top = 14;
    const barWidth = width / PLOT_SECONDS;
    for (let i = 0; i < PLOT_SECONDS; i++) {
      const bucket = buckets.get(now - PLOT_SECONDS + i);
      if (!bucket) {
        continue;
      }
      let y = height;
      for (let s = 0; s < SEVERITIES.length; s++) {
        const h = (bucket[s] / peak) * (height - top);
        ctx.fillStyle = colours[s];
        ctx.fillRect(i * barWidth, y - h, Math.max(1, barWidth - 0.5), h);
        y -= h;
      }
    }
    ctx.fillStyle = style.getPropertyValue("--muted").trim();
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText("peak " + peak + "/s", 4, 11);
    ctx.fillText("-" + PLOT_SECONDS / 60 + " min", 4, height - 4);
    const current = totals[totals.length - 1];
    $("rate-now").textContent = String(current);
    canvas.setAttribute(
      "aria-label",
      "Events per second over the last " + PLOT_SECONDS / 60 + " minutes: now " + current +
        ", peak " + peak,
    );
  }

  // --- theme ---

  function setTheme(theme) {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem(THEME_KEY, theme);
    $("theme").textContent = theme === "dark" ? "Light theme" : "Dark theme";
    drawPlot();
  }

  // --- wiring ---

  function init() {
    setTheme(localStorage.getItem(THEME_KEY) || "dark");
    $("theme").addEventListener("click", () =>
      setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"),
    );
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      $("token").value = "";
      signIn(token);
    });
    $("signout").addEventListener("click", signOut);
    $("gap-dismiss").addEventListener("click", dismissGap);
    const filters = $("filters");
    filters.addEventListener("change", applyFilters);
    filters.addEventListener("submit", (e) => {
      e.preventDefault();
      applyFilters();
    });
    $("tabs").addEventListener("click", (e) => {
      const tab = e.target.closest("[role=tab]");
      if (tab) {
        selectTab(tab.dataset.view, false);
      }
    });
    $("tabs").addEventListener("keydown", onTabKey);
    $("rows").addEventListener("click", onRowsClick);
    $("rows").addEventListener("keydown", onRowsKey);
    $("ack-form").addEventListener("submit", onAckSubmit);
    setInterval(drawPlot, 1000);

    const token = sessionStorage.getItem(TOKEN_KEY) || devToken;
    if (token) {
      signIn(token);
    } else {
      showLogin("");
    }
  }

  init();
})();
