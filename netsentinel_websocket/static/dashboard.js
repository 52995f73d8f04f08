/*
 * The NetSentinel dashboard page (GET /ws/dashboard), on top of client.js. See docs/dashboard.md.
 *
 * Event fields come from attackers (user names, paths, payloads): they are only ever written
 * with textContent or as attribute values through the DOM, never as HTML. Every collection the
 * page keeps is bounded (the constants below) so it can stay on a wall for days.
 */
(function () {
  "use strict";

  const SEVERITIES = ["info", "low", "medium", "high", "critical"];
  const MAX_EVENTS = 5000; // events kept, one per event id; the oldest go first
  const MAX_ROWS = 300; // table rows: the newest events that match the view
  const HISTORY_PER_CHANNEL = 2000; // events loaded per channel on open
  const HISTORY_PAGE = 1000; // the server's largest page
  const FETCH_TIMEOUT_MS = 10000; // history and map requests
  const MAX_ACKS = 5000; // acknowledgements remembered (alert id -> who, when)
  const MAX_SENSORS = 500; // sensors tracked for the "went quiet" panel
  const TOP_N = 8; // entries per top list
  const BUCKET_SECONDS = 10; // timeline resolution; 24 h of buckets at most
  const DAY = 86400;
  const WARN_BEFORE_EXPIRY_MS = 120000; // ask for a fresh token this long before exp
  const ATTENTION_EVERY_MS = 5000; // at most one sound / notification this often
  const MAX_SUMMARY_CHARS = 400;
  const FLUSH_EVERY_MS = 250; // new rows go into the table at most this often
  const ACK_TYPE = "alert.acknowledged";
  const REDACTED = "[redacted]";
  const TOKEN_KEY = "netsentinel.token";
  const VIEW_KEY = "netsentinel.view";
  const PREFS_KEY = "netsentinel.prefs";
  const ALL = "all";
  // Fields shown first in the details column, in this order; the rest follow.
  const PRIORITY = [
    "username", "password", "input", "command", "path", "filename", "url", "session",
    "rule", "score", "alert_id", "by", "note", "message",
  ];
  // Shown elsewhere in the row (or noise): left out of the details column.
  const NOT_IN_DETAILS = new Set([
    "src_ip", "src_geo", "service", "dst_port", "logtype", "logdata", "src_host",
  ]);
  const FACET_LABELS = {
    src_ip: "source", country: "country", service: "service", dst_port: "port",
    event_type: "type", sensor: "sensor", username: "user", password: "password",
  };
  const COUNTED = ["src_ip", "country", "service", "dst_port", "username", "password"];

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
  let token = "";
  let subject = null;
  let canAck = false;
  let sensitive = false;
  let everConnected = false;
  let expiryTimer = null;
  let channelList = [];

  const entries = []; // kept events, oldest first, at most MAX_EVENTS
  const byId = new Map(); // event id -> entry
  const counts = { [ALL]: 0 }; // view -> events seen since the page opened (each id once)
  const acks = new Map(); // alert id -> {by, at, note}
  const counters = Object.fromEntries(COUNTED.map((k) => [k, new Map()])); // over kept events
  const countryNames = new Map();
  const sensors = new Map(); // sensor -> last event time (s)
  const buckets = new Map(); // timestamp / BUCKET_SECONDS -> per-severity counts
  const rowById = new Map(); // event id -> its <tr>, for rows on screen
  const rowEntry = new WeakMap(); // <tr> -> entry

  let view = ALL;
  let search = "";
  let facets = []; // [key, value] pairs every shown event must match
  let paused = false;
  let pending = new Set(); // ids that arrived for the view while paused (MAX_EVENTS at most)
  let queue = []; // entries waiting for the next animation frame
  let renderScheduled = false;
  let lastFlush = 0;
  let panelsDirty = true;
  let gapChannels = new Set();
  let detailEntry = null;

  let unseenCritical = 0;
  let lastAttention = 0;
  let audio = null;
  const baseTitle = document.title;
  const mapPaths = new Map(); // country code -> <path>
  let heated = [];

  // --- the token ---

  function decodeClaims(text) {
    const parts = text.split(".");
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

  /** The claims of a usable token, or null after saying on the form what is wrong with it. */
  function readToken(text) {
    let claims;
    try {
      claims = decodeClaims(text);
    } catch (err) {
      showLogin("Cannot read the token: " + err.message);
      return null;
    }
    if (claims.exp && claims.exp * 1000 < Date.now()) {
      showLogin("This token has expired; paste a fresh one.");
      return null;
    }
    return claims;
  }

  /** Take a token: what it allows, who it is, when to ask for the next one. */
  function accept(text, claims) {
    token = text;
    if (text !== devToken) {
      sessionStorage.setItem(TOKEN_KEY, text);
    }
    subject = claims.sub || "?";
    const scopes = scopesOf(claims);
    canAck = scopes.includes("alerts:ack");
    sensitive = scopes.includes("events:sensitive");
    $("passwords-panel").hidden = !sensitive;
    const expires = claims.exp ? " (until " + clock(claims.exp) + ")" : "";
    $("identity").textContent = subject + expires;
    clearTimeout(expiryTimer);
    if (claims.exp) {
      const warnIn = claims.exp * 1000 - Date.now() - WARN_BEFORE_EXPIRY_MS;
      expiryTimer = setTimeout(() => expiring(claims.exp), Math.max(0, warnIn));
    }
    $("refresh").hidden = false;
    $("signout").hidden = false;
    hideLogin();
    $("main").hidden = false;
  }

  /** Connect with a first token. */
  function signIn(text) {
    const claims = readToken(text);
    if (!claims) {
      return;
    }
    accept(text, claims);
    client = new window.NetSentinelClient({
      url: wsUrl,
      token: text,
      onState: showState,
      onWelcome: welcomed,
      onEvent: receive,
      onGap: showGap,
      onError: (err) => setFilterStatus(err.message || String(err), true),
    }).start();
    rerender();
  }

  /**
   * A new token while the page is open. The same subject keeps the view: on a live connection
   * the token is handed over in place (`auth` refresh: nothing reconnects), after an expiry or
   * refusal the client reconnects with it and resumes from its positions. Another subject
   * starts over, as after "Change token".
   */
  function useToken(text) {
    if (!client) {
      signIn(text);
      return Promise.resolve();
    }
    const claims = readToken(text);
    if (!claims) {
      return Promise.reject(new Error("token not usable"));
    }
    const sameSubject = (claims.sub || "?") === subject;
    if (client.state === "connected" && sameSubject) {
      return client.refreshToken(text).then(
        () => {
          accept(text, claims);
          setViewStatus("token refreshed");
        },
        (err) => {
          showLogin("The server refused the token: " + err.message, true);
          throw err;
        },
      );
    }
    if (!sameSubject) {
      client.stop(); // another analyst: a new session, and nothing of the last one's view
      forget();
    }
    accept(text, claims);
    client.setToken(text);
    if (["idle", "stopped", "auth-failed"].includes(client.state)) {
      client.start(); // resumes from the positions (a reconnect under way takes the new token)
    }
    rerender();
    return Promise.resolve();
  }

  /** Drop every event, count and acknowledgement held, and the positions: the next session
   * starts from the server's history, as a fresh page would. */
  function forget() {
    entries.length = 0;
    byId.clear();
    acks.clear();
    countryNames.clear();
    sensors.clear();
    buckets.clear();
    for (const map of Object.values(counters)) {
      map.clear();
    }
    for (const key of Object.keys(counts)) {
      counts[key] = 0;
    }
    client.positions = {};
    clearCritical();
    panelsDirty = true;
    rerender();
  }

  function expiring(exp) {
    window.dispatchEvent(new CustomEvent("netsentinel:token-expiring", { detail: { exp } }));
    showLogin("Your token expires at " + clock(exp) + ": paste a fresh one to keep the feed.", true);
  }

  /** The token form: alone before the first connection, above the kept view afterwards. */
  function showLogin(message, inPlace) {
    const keep = inPlace || everConnected;
    $("login").hidden = false;
    $("login").classList.toggle("in-place", Boolean(keep));
    $("main").hidden = !keep;
    $("login-title").textContent = keep ? "Refresh token" : "Connect";
    $("login-submit").textContent = keep ? "Use this token" : "Connect";
    $("login-cancel").hidden = !keep;
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  function hideLogin() {
    $("login").hidden = true;
    $("login-error").textContent = "";
  }

  function signOut() {
    if (client) {
      client.stop();
    }
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(expiryTimer);
    subject = null; // the next token, whoever's, starts afresh
    $("identity").textContent = "";
    $("signout").hidden = true;
    $("refresh").hidden = true;
    everConnected = false;
    showLogin("");
  }

  // --- connection state and gaps ---

  function showState(state, detail) {
    const el = $("state");
    el.dataset.state = state;
    let text = state;
    if (state === "connected") {
      everConnected = true;
    } else if (state === "connecting") {
      text = "connecting\u2026";
    } else if (state === "reconnecting" && detail.retryIn) {
      text = "reconnecting (retry in " + Math.ceil(detail.retryIn / 1000) + " s)";
    } else if (state === "auth-failed") {
      const reason = detail.reason || "code " + detail.code;
      text = "auth failed: " + (detail.reason || "token refused");
      showLogin("The server refused the token (" + reason + ").");
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

  // --- opening: channels, then history, then the live stream from where history ended ---

  /** The client subscribes once this settles, with `since` = where the history ended. */
  function welcomed(welcome) {
    buildChannels(welcome);
    const wanted = client.channels || welcome.channels;
    const missing = welcome.channels.filter((c) => wanted.includes(c) && !client.positions[c]);
    return missing.length ? loadHistory(missing) : undefined;
  }

  function fetchJson(url, bearer) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
    const headers = bearer ? { Authorization: "Bearer " + bearer } : {};
    return fetch(url, { headers, signal: abort.signal, cache: "no-store" })
      .then((response) => {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .finally(() => clearTimeout(timer));
  }

  function parseCursor(text) {
    const cut = String(text).lastIndexOf(":");
    return { epoch: text.slice(0, cut), offset: Number(text.slice(cut + 1)) };
  }

  /** The newest HISTORY_PER_CHANNEL events of a channel (pages walked backwards) and `next`. */
  async function channelHistory(channel) {
    const url = (query) => "history/" + encodeURIComponent(channel) + "?" + query;
    const newest = await fetchJson(url("limit=" + HISTORY_PAGE), token);
    let events = newest.events;
    while (events.length && events.length < HISTORY_PER_CHANNEL) {
      const oldest = events[0];
      const want = Math.min(HISTORY_PAGE, HISTORY_PER_CHANNEL - events.length, oldest.offset - 1);
      if (want <= 0) {
        break;
      }
      const since = oldest.epoch + ":" + (oldest.offset - 1 - want);
      const page = await fetchJson(url("since=" + since + "&limit=" + want), token);
      const older = page.events.filter(
        (m) => m.epoch === oldest.epoch && m.offset < oldest.offset,
      );
      if (!older.length) {
        break;
      }
      events = older.concat(events);
    }
    return { channel, events, next: newest.next };
  }

  async function loadHistory(channels) {
    setViewStatus("loading history\u2026");
    const results = await Promise.all(
      channels.map((c) => channelHistory(c).catch((error) => ({ channel: c, error }))),
    );
    const messages = [];
    const failed = [];
    for (const result of results) {
      if (result.error) {
        failed.push(result.channel);
        continue;
      }
      messages.push(...result.events);
      if (result.next && !client.positions[result.channel]) {
        client.positions[result.channel] = parseCursor(result.next);
      }
    }
    messages.sort((a, b) => a.event.timestamp - b.event.timestamp);
    const before = entries.length;
    for (const msg of messages) {
      add(msg);
    }
    rerender();
    panelsDirty = true;
    const loaded = entries.length - before;
    setViewStatus(
      loaded + " events from history" +
        (failed.length ? "; history unavailable for " + failed.join(", ") + " (live only)" : ""),
    );
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
      counts[channel] = counts[channel] || 0;
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
    selectTab(channelList.includes(view) ? view : ALL, false);
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
    viewChanged();
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
      const count = tab.querySelector(".count");
      const text = String(counts[tab.dataset.view] || 0);
      if (count.textContent !== text) {
        count.textContent = text;
      }
    }
  }

  // --- server-side filters: map the form to the protocol's subscribe filter ---

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

  function setViewStatus(text) {
    $("view-status").textContent = text;
  }

  // --- the model: one entry per event id, however many channels carry it ---

  /** The fields panels, facets and the detail view look at, read once per event. */
  function fieldsOf(ev) {
    const data = ev.data && typeof ev.data === "object" ? ev.data : {};
    const logdata = data.logdata && typeof data.logdata === "object" ? data.logdata : {};
    const geo = data.src_geo && typeof data.src_geo === "object" ? data.src_geo : {};
    const type = String(ev.event_type || "");
    const parts = type.split(".");
    const port = Number(data.dst_port);
    const text = (v) => (v == null || v === "" ? null : String(v));
    return {
      src_ip: text(data.src_ip || data.src_host),
      country: typeof geo.country === "string" ? geo.country : null,
      countryName: typeof geo.name === "string" ? geo.name : null,
      service: text(data.service) || (parts[0] === "honeypot" && parts[1]) || null,
      dst_port: Number.isInteger(port) && port > 0 ? String(port) : null,
      event_type: type,
      sensor: /^(honeypot|status|system)\./.test(type) ? text(ev.source) : null,
      username: text(data.username != null ? data.username : logdata.USERNAME),
      password: text(data.password != null ? data.password : logdata.PASSWORD),
    };
  }

  function severityOf(ev) {
    return SEVERITIES.includes(ev.severity) ? ev.severity : "info";
  }

  /** Add an event message; the new entry, or null when its id is already kept. */
  function add(msg) {
    const ev = msg.event;
    const known = byId.get(ev.id);
    if (known) {
      if (!known.channels.includes(msg.channel)) {
        known.channels.push(msg.channel);
        counts[msg.channel] = (counts[msg.channel] || 0) + 1;
      }
      return null;
    }
    const entry = {
      id: ev.id,
      ev,
      channels: [msg.channel],
      f: fieldsOf(ev),
      hay: JSON.stringify(ev).toLowerCase(),
    };
    byId.set(ev.id, entry);
    entries.push(entry);
    counts[ALL] += 1;
    counts[msg.channel] = (counts[msg.channel] || 0) + 1;
    tally(entry, 1);
    countTime(ev);
    if (entry.f.sensor) {
      sawSensor(entry.f.sensor, ev.timestamp);
    }
    if (ev.event_type === ACK_TYPE) {
      recordAck(ev.data || {});
    }
    if (entries.length > MAX_EVENTS) {
      const old = entries.shift();
      byId.delete(old.id);
      tally(old, -1);
    }
    panelsDirty = true;
    return entry;
  }

  function tally(entry, delta) {
    for (const key of COUNTED) {
      const value = entry.f[key];
      if (value == null || value === REDACTED) {
        continue;
      }
      const map = counters[key];
      const n = (map.get(value) || 0) + delta;
      if (n > 0) {
        map.set(value, n);
      } else {
        map.delete(value);
      }
    }
    if (entry.f.country && entry.f.countryName) {
      countryNames.set(entry.f.country, entry.f.countryName);
    }
  }

  function sawSensor(name, at) {
    if ((sensors.get(name) || 0) < at) {
      sensors.delete(name); // re-insert: the map stays ordered by last sighting
      sensors.set(name, at);
    }
    if (sensors.size > MAX_SENSORS) {
      sensors.delete(sensors.keys().next().value);
    }
  }

  /** A live event from the client. */
  function receive(msg) {
    const fresh = add(msg);
    const entry = fresh || byId.get(msg.event.id);
    if (fresh) {
      attention(fresh);
    }
    const row = rowById.get(entry.id);
    if (row) {
      fillChannels(row.querySelector("td.channels"), entry);
    } else if (matches(entry)) {
      if (paused) {
        if (pending.size < MAX_EVENTS) {
          pending.add(entry.id);
        }
        showPaused();
      } else {
        queue.push(entry);
        if (queue.length > MAX_ROWS) {
          queue = queue.slice(-MAX_ROWS); // a hidden tab gets no frames: keep what can show
        }
      }
    }
    if (!renderScheduled) {
      renderScheduled = true;
      const wait = lastFlush + FLUSH_EVERY_MS - performance.now();
      setTimeout(() => requestAnimationFrame(flushQueue), Math.max(0, wait));
    }
  }

  // --- what the view shows: tab, search, facets ---

  function matches(entry) {
    if (view !== ALL && !entry.channels.includes(view)) {
      return false;
    }
    for (const [key, value] of facets) {
      if (entry.f[key] !== value) {
        return false;
      }
    }
    return !search || entry.hay.includes(search);
  }

  function viewChanged() {
    saveView();
    renderFacets();
    rerender();
  }

  function addFacet(key, value) {
    if (!(key in FACET_LABELS) || value == null) {
      return;
    }
    facets = facets.filter(([k]) => k !== key).concat([[key, String(value)]]);
    viewChanged();
  }

  function renderFacets() {
    const box = $("facets");
    box.replaceChildren();
    for (const [key, value] of facets) {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip facet-on";
      chip.dataset.key = key;
      chip.textContent = FACET_LABELS[key] + ": " + value + " \u00d7";
      chip.setAttribute("aria-label", "Remove filter " + FACET_LABELS[key] + " " + value);
      box.append(chip);
    }
  }

  function saveView() {
    const state = { view, search, facets, range: $("range").value };
    sessionStorage.setItem(VIEW_KEY, JSON.stringify(state));
  }

  function restoreView() {
    try {
      const state = JSON.parse(sessionStorage.getItem(VIEW_KEY) || "{}");
      view = typeof state.view === "string" ? state.view : ALL;
      search = typeof state.search === "string" ? state.search : "";
      facets = (Array.isArray(state.facets) ? state.facets : []).filter(
        (f) => Array.isArray(f) && f.length === 2 && f[0] in FACET_LABELS && typeof f[1] === "string",
      );
      if (["900", "3600", "86400"].includes(state.range)) {
        $("range").value = state.range;
      }
    } catch (err) {
      sessionStorage.removeItem(VIEW_KEY);
    }
    $("search").value = search;
    renderFacets();
  }

  function togglePause() {
    paused = !paused;
    if (!paused) {
      rerender();
    }
    showPaused();
  }

  function showPaused() {
    const button = $("pause");
    button.setAttribute("aria-pressed", String(paused));
    button.classList.toggle("paused", paused);
    const more = pending.size >= MAX_EVENTS ? "+" : "";
    button.textContent = paused ? "Resume (" + pending.size + more + " new)" : "Pause";
  }

  // --- the table: bounded, newest first, built once per frame ---

  /** Insert queued rows in one go, at most every FLUSH_EVERY_MS: a busy feed costs a few
   * table layouts a second, not one per event (nor one per frame). */
  function flushQueue() {
    renderScheduled = false;
    lastFlush = performance.now();
    // An event queued again (its copy on another channel) keeps its first place.
    const seen = new Set();
    const batch = queue.filter((entry) => !seen.has(entry.id) && seen.add(entry.id));
    queue = [];
    const fragment = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) {
      const entry = batch[i];
      if (!rowById.has(entry.id) && matches(entry)) {
        fragment.append(makeRow(entry));
      }
    }
    const tbody = $("rows");
    tbody.prepend(fragment);
    trimRows(tbody);
    $("empty").hidden = tbody.rows.length > 0;
    updateCounts();
    showCritical();
  }

  function trimRows(tbody) {
    while (tbody.rows.length > MAX_ROWS) {
      const last = tbody.lastElementChild;
      rowById.delete(last.dataset.eventId);
      last.remove();
    }
  }

  /** Rebuild the table for the current view (tab, search, facet, resume, history). */
  function rerender() {
    queue = [];
    pending = new Set();
    rowById.clear();
    const fragment = document.createDocumentFragment();
    for (let i = entries.length - 1; i >= 0 && rowById.size < MAX_ROWS; i--) {
      if (matches(entries[i])) {
        fragment.append(makeRow(entries[i]));
      }
    }
    $("rows").replaceChildren(fragment);
    $("empty").hidden = rowById.size > 0;
    $("empty").textContent =
      entries.length && (search || facets.length) ? "No event matches." : "Waiting for events\u2026";
    updateCounts();
    showPaused();
  }

  function facetButton(key, value, label) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "facet";
    button.dataset.key = key;
    button.dataset.value = value;
    button.textContent = label == null ? value : label;
    button.title = "Show only " + FACET_LABELS[key] + " " + value;
    return button;
  }

  function makeRow(entry) {
    const ev = entry.ev;
    const f = entry.f;
    const severity = severityOf(ev);
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.eventId = entry.id;
    tr.className = "sev-row-" + severity;
    const cell = (className, label) => {
      const td = document.createElement("td");
      td.className = className;
      td.dataset.label = label;
      tr.append(td);
      return td;
    };
    const time = cell("time", "Time");
    time.textContent = clock(ev.timestamp);
    time.title = new Date(ev.timestamp * 1000).toISOString();
    const sev = document.createElement("span");
    sev.className = "sev sev-" + severity;
    sev.textContent = severity;
    cell("severity", "Severity").append(sev);
    cell("type", "Type").append(facetButton("event_type", f.event_type));
    const src = cell("src", "Src IP");
    if (f.src_ip) {
      src.append(facetButton("src_ip", f.src_ip));
    }
    if (f.country) {
      src.append(" ", facetButton("country", f.country));
    }
    const details = cell("details", "Details");
    if (f.service) {
      details.append(facetButton("service", f.service), " ");
    }
    if (f.dst_port) {
      details.append(facetButton("dst_port", f.dst_port, ":" + f.dst_port), " ");
    }
    details.append(summary(ev.data));
    const sensor = cell("sensor", "Sensor");
    if (f.sensor) {
      sensor.append(facetButton("sensor", f.sensor));
    } else {
      sensor.textContent = ev.source == null ? "" : String(ev.source);
    }
    fillChannels(cell("channels", "Channels"), entry);
    const ack = cell("ack", "");
    if (isAlert(entry)) {
      tr.dataset.alert = alertId(entry);
      renderAck(tr, ack);
    }
    rowById.set(entry.id, tr);
    rowEntry.set(tr, entry);
    return tr;
  }

  function fillChannels(td, entry) {
    td.replaceChildren(
      ...entry.channels.map((channel) => {
        const chip = document.createElement("span");
        chip.className = "chip";
        chip.textContent = channel;
        return chip;
      }),
    );
  }

  /** A digest of `data`, the fields an analyst reads first at the front. */
  function summary(data) {
    if (!data || typeof data !== "object") {
      return "";
    }
    const flat = Object.assign({}, data);
    if (data.logdata && typeof data.logdata === "object") {
      for (const [key, value] of Object.entries(data.logdata)) {
        flat[key.toLowerCase()] = flat[key.toLowerCase()] ?? value;
      }
    }
    const keys = Object.keys(flat).filter((k) => !NOT_IN_DETAILS.has(k) && flat[k] != null);
    keys.sort((a, b) => rank(a) - rank(b));
    let text = "";
    for (const key of keys) {
      const value = flat[key];
      const shown = typeof value === "object" ? JSON.stringify(value) : String(value);
      text += (text ? " " : "") + key + "=" + shown;
      if (text.length > MAX_SUMMARY_CHARS) {
        return text.slice(0, MAX_SUMMARY_CHARS) + "\u2026";
      }
    }
    return text;
  }

  function rank(key) {
    const index = PRIORITY.indexOf(key);
    return index < 0 ? PRIORITY.length : index;
  }

  const TIME_FORMAT = new Intl.DateTimeFormat([], {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  }); // one formatter: toLocaleTimeString builds one per call, per row

  function clock(seconds) {
    return TIME_FORMAT.format(seconds ? new Date(seconds * 1000) : new Date());
  }

  // --- alerts and shared acknowledgements ---

  function isAlert(entry) {
    const type = entry.ev.event_type;
    return typeof type === "string" && type.startsWith("alert.") && type !== ACK_TYPE;
  }

  function alertId(entry) {
    const data = entry.ev.data || {};
    return String(data.alert_id != null ? data.alert_id : entry.id);
  }

  /** An `alert.acknowledged` event (from any analyst, on any node): mark that alert's rows. */
  function recordAck(data) {
    if (data.alert_id == null) {
      return;
    }
    const id = String(data.alert_id);
    acks.delete(id);
    acks.set(id, { by: String(data.by ?? "?"), at: Number(data.at) || 0, note: data.note });
    if (acks.size > MAX_ACKS) {
      acks.delete(acks.keys().next().value);
    }
    for (const tr of $("rows").querySelectorAll("tr[data-alert]")) {
      if (tr.dataset.alert === id) {
        renderAck(tr, tr.querySelector("td.ack"));
      }
    }
    if (detailEntry && isAlert(detailEntry) && alertId(detailEntry) === id) {
      showAckInfo(detailEntry);
    }
  }

  function ackText(ack) {
    return "acked by " + ack.by + (ack.at ? " at " + clock(ack.at) : "");
  }

  function renderAck(tr, td) {
    const ack = acks.get(tr.dataset.alert);
    if (ack) {
      tr.classList.add("acked");
      td.textContent = ackText(ack);
      td.title = ack.note ? "note: " + ack.note : "";
    } else if (canAck) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "ack-button";
      button.textContent = "Ack";
      button.setAttribute("aria-label", "Acknowledge alert " + tr.dataset.alert);
      td.replaceChildren(button);
    } else {
      td.replaceChildren();
    }
  }

  function onRowsClick(e) {
    const tr = e.target.closest("tr");
    if (!tr) {
      return;
    }
    const facet = e.target.closest(".facet");
    if (facet) {
      addFacet(facet.dataset.key, facet.dataset.value);
      return;
    }
    const button = e.target.closest(".ack-button");
    if (button) {
      const id = tr.dataset.alert;
      button.disabled = true;
      button.textContent = "sending\u2026";
      client.ack(id).then(
        // The shared announcement usually comes first and replaces the button.
        () => (button.textContent = "acked"),
        (err) => {
          button.disabled = false;
          button.title = err.message;
          button.textContent = "Ack failed";
        },
      );
      return;
    }
    openDetail(rowEntry.get(tr));
  }

  function onRowsKey(e) {
    if ((e.key === "Enter" || e.key === " ") && e.target.matches("tbody tr")) {
      e.preventDefault();
      openDetail(rowEntry.get(e.target));
    }
  }

  // --- the detail view: who, what, credentials first, then the whole event ---

  function openDetail(entry) {
    detailEntry = entry;
    const ev = entry.ev;
    const f = entry.f;
    $("detail-title").textContent = ev.event_type + " (" + severityOf(ev) + ")";
    const list = $("detail-fields");
    list.replaceChildren();
    const row = (term, value) => {
      if (value == null || value === "") {
        return;
      }
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      list.append(dt, dd);
    };
    const data = ev.data || {};
    row("Who", [f.src_ip, data.src_port ? "port " + data.src_port : null].filter(Boolean).join(" "));
    row("From", f.countryName ? f.countryName + " (" + f.country + ")" : f.country);
    row("What", [f.service, f.dst_port ? "port " + f.dst_port : null].filter(Boolean).join(" "));
    row("Target", data.dst_host);
    row("Sensor", ev.source);
    row("When", new Date(ev.timestamp * 1000).toISOString());
    row("Username", f.username);
    if (f.password === REDACTED) {
      row("Password", "hidden (needs the events:sensitive scope)");
    } else {
      row("Password", f.password);
    }
    row("Channels", entry.channels.join(", "));
    $("detail-json").textContent = JSON.stringify(ev, null, 2);
    $("ack-note").value = "";
    $("ack-status").textContent = "";
    showAckInfo(entry);
    $("detail").showModal();
  }

  function showAckInfo(entry) {
    const alert = isAlert(entry);
    const ack = alert ? acks.get(alertId(entry)) : null;
    $("ack-info").hidden = !ack;
    $("ack-info").textContent = ack ? ackText(ack) + (ack.note ? ": " + ack.note : "") : "";
    $("ack-form").hidden = !(alert && canAck && !ack);
  }

  function onAckSubmit(e) {
    e.preventDefault();
    const status = $("ack-status");
    status.textContent = "sending\u2026";
    client
      .ack(alertId(detailEntry), $("ack-note").value.trim())
      .then(() => (status.textContent = "acknowledged"))
      .catch((err) => (status.textContent = "failed: " + err.message));
  }

  // --- critical events get attention ---

  function attention(entry) {
    if (severityOf(entry.ev) !== "critical") {
      return;
    }
    unseenCritical += 1; // shown with the next frame
    const now = Date.now();
    if (now - lastAttention < ATTENTION_EVERY_MS) {
      return;
    }
    lastAttention = now;
    if ($("sound").checked && audio) {
      beep();
    }
    if ($("notify").checked && window.Notification && Notification.permission === "granted") {
      const from = entry.f.src_ip ? " from " + entry.f.src_ip : "";
      new Notification("Critical: " + entry.ev.event_type + from, {
        body: summary(entry.ev.data).slice(0, 200),
        tag: "netsentinel-critical",
      });
    }
  }

  function beep() {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.1;
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.2);
  }

  function showCritical() {
    const badge = $("critical-badge");
    badge.hidden = unseenCritical === 0;
    badge.textContent = unseenCritical + " critical";
    const title = (unseenCritical ? "(" + unseenCritical + ") " : "") + baseTitle;
    if (document.title !== title) {
      document.title = title;
    }
  }

  function clearCritical() {
    unseenCritical = 0;
    showCritical();
  }

  function savePrefs() {
    const prefs = { sound: $("sound").checked, notify: $("notify").checked };
    prefs.quiet = $("quiet-after").value;
    localStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
  }

  function onSoundChange() {
    // Created on the click: browsers let a page make sound only after a user gesture.
    if ($("sound").checked && !audio && window.AudioContext) {
      audio = new AudioContext();
    }
    savePrefs();
  }

  function onNotifyChange() {
    if ($("notify").checked && window.Notification && Notification.permission === "default") {
      Notification.requestPermission();
    }
    savePrefs();
  }

  // --- panels: top lists, sensors, timeline, map (redrawn at most once a second) ---

  function topOf(map, n) {
    return [...map].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, n);
  }

  function renderTop(key) {
    const list = $("top-" + key);
    const top = topOf(counters[key], TOP_N);
    const max = top.length ? top[0][1] : 1;
    list.replaceChildren(
      ...top.map(([value, n]) => {
        const li = document.createElement("li");
        let label = value;
        if (key === "country" && countryNames.has(value)) {
          label = countryNames.get(value) + " (" + value + ")";
        } else if (key === "dst_port") {
          label = ":" + value;
        }
        const meter = document.createElement("meter");
        meter.max = max;
        meter.value = n;
        const count = document.createElement("span");
        count.className = "n";
        count.textContent = String(n);
        li.append(facetButton(key, value, label), meter, count);
        return li;
      }),
    );
    if (!top.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "none yet";
      list.append(li);
    }
  }

  function renderSensors() {
    const quietAfter = Number($("quiet-after").value);
    const now = Date.now() / 1000;
    const rows = [...sensors].map(([name, last]) => [name, last, now - last > quietAfter]);
    rows.sort((a, b) => b[2] - a[2] || (a[0] < b[0] ? -1 : 1));
    const list = $("sensors");
    list.replaceChildren(
      ...rows.slice(0, 3 * TOP_N).map(([name, last, quiet]) => {
        const li = document.createElement("li");
        li.classList.toggle("quiet", quiet);
        const state = document.createElement("span");
        state.className = "n";
        state.textContent = (quiet ? "quiet " : "") + age(now - last);
        li.append(facetButton("sensor", name), state);
        return li;
      }),
    );
  }

  function age(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 120) {
      return s + " s ago";
    }
    return s < 7200 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
  }

  function renderPanels() {
    if (!panelsDirty || $("main").hidden) {
      return;
    }
    panelsDirty = false;
    for (const key of COUNTED) {
      if (key !== "password" || sensitive) {
        renderTop(key);
      }
    }
    renderMap();
  }

  function countTime(ev) {
    const ts = Number(ev.timestamp);
    const now = Date.now() / 1000;
    if (!(ts > now - DAY && ts < now + 60)) {
      return; // outside every range (a sensor's clock far ahead would never be pruned)
    }
    const key = Math.floor(ts / BUCKET_SECONDS);
    let bucket = buckets.get(key);
    if (!bucket) {
      bucket = [0, 0, 0, 0, 0];
      buckets.set(key, bucket);
    }
    bucket[SEVERITIES.indexOf(severityOf(ev))] += 1;
  }

  function drawTimeline() {
    const now = Date.now() / 1000;
    const oldest = Math.floor((now - DAY) / BUCKET_SECONDS);
    for (const key of buckets.keys()) {
      if (key < oldest) {
        buckets.delete(key);
      }
    }
    const canvas = $("rate");
    if (canvas.offsetParent === null) {
      return; // not on screen (token form shown)
    }
    const range = Number($("range").value);
    const width = range === 900 ? 10 : range === 3600 ? 60 : 900; // seconds per bar
    const bars = range / width;
    const end = Math.floor(now / width) * width + width; // end of the current bar
    const start = end - bars * width;
    const stacks = Array.from({ length: bars }, () => [0, 0, 0, 0, 0]);
    let total = 0;
    for (const [key, bucket] of buckets) {
      const index = Math.floor((key * BUCKET_SECONDS - start) / width);
      if (index >= 0 && index < bars) {
        for (let s = 0; s < SEVERITIES.length; s++) {
          stacks[index][s] += bucket[s];
          total += bucket[s];
        }
      }
    }
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    const style = getComputedStyle(document.documentElement);
    const colours = SEVERITIES.map((s) => style.getPropertyValue("--sev-" + s).trim());
    const peak = Math.max(1, ...stacks.map((b) => b.reduce((x, y) => x + y, 0)));
    const top = 14;
    const barWidth = w / bars;
    for (let i = 0; i < bars; i++) {
      let y = h;
      for (let s = 0; s < SEVERITIES.length; s++) {
        const bh = (stacks[i][s] / peak) * (h - top);
        if (bh > 0) {
          ctx.fillStyle = colours[s];
          ctx.fillRect(i * barWidth, y - bh, Math.max(1, barWidth - 1), bh);
          y -= bh;
        }
      }
    }
    const per = width < 60 ? width + " s" : width / 60 + " min";
    const label = $("range").selectedOptions[0].textContent;
    ctx.fillStyle = style.getPropertyValue("--muted").trim();
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText("peak " + peak + " per " + per, 4, 11);
    const caption = total + " events, " + label + " (bars of " + per + ", by severity)";
    $("rate-caption").textContent = caption;
    canvas.setAttribute("aria-label", "Events over time: " + caption + ", peak " + peak);
  }

  // --- the world map (static/world.json: Natural Earth 1:110m outlines, no tile server) ---

  function loadMap() {
    fetchJson("static/world.json", null)
      .then((world) => {
        const svg = $("map");
        const ns = svg.namespaceURI; // the SVG namespace, as the HTML parser gave it
        svg.setAttribute("viewBox", "0 0 " + world.width + " " + world.height);
        for (const [code, country] of Object.entries(world.countries)) {
          const path = document.createElementNS(ns, "path");
          path.setAttribute("d", country.d);
          path.setAttribute("class", "country");
          path.dataset.key = "country";
          path.dataset.value = code;
          const title = document.createElementNS(ns, "title");
          title.textContent = country.name + " (" + code + ")";
          path.append(title);
          svg.append(path);
          mapPaths.set(code, path);
        }
        panelsDirty = true;
      })
      .catch((err) => ($("map-caption").textContent = "map unavailable: " + err.message));
  }

  function renderMap() {
    for (const path of heated) {
      path.setAttribute("class", "country");
    }
    heated = [];
    const located = counters.country;
    let max = 0;
    for (const n of located.values()) {
      max = Math.max(max, n);
    }
    for (const [code, n] of located) {
      const path = mapPaths.get(code);
      if (path) {
        const heat = Math.max(1, Math.ceil((5 * n) / max)); // five shades, by share of the top
        path.setAttribute("class", "country heat-" + heat);
        path.firstChild.textContent =
          (countryNames.get(code) || code) + " (" + code + "): " + n + " events";
        heated.push(path);
      }
    }
    const top = topOf(located, 3).map(([code, n]) => code + " " + n);
    $("map-caption").textContent = located.size
      ? located.size + " countries; most: " + top.join(", ")
      : "No located source yet (country data comes with websocket.geoip.enabled).";
  }

  // --- theme ---

  function setTheme(theme) {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("netsentinel.theme", theme);
    $("theme").textContent = theme === "dark" ? "Light theme" : "Dark theme";
    drawTimeline();
  }

  // --- wiring ---

  function restorePrefs() {
    try {
      const prefs = JSON.parse(localStorage.getItem(PREFS_KEY) || "{}");
      $("notify").checked = prefs.notify === true;
      // Sound needs a click on this page before it may play: it starts off after a reload.
      if (["120", "600", "3600"].includes(prefs.quiet)) {
        $("quiet-after").value = prefs.quiet;
      }
    } catch (err) {
      localStorage.removeItem(PREFS_KEY);
    }
  }

  function init() {
    setTheme(localStorage.getItem("netsentinel.theme") || "dark");
    restorePrefs();
    restoreView();
    $("theme").addEventListener("click", () =>
      setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"),
    );
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = $("token").value.trim();
      $("token").value = "";
      useToken(text).catch(() => {});
    });
    $("login-cancel").addEventListener("click", hideLogin);
    $("refresh").addEventListener("click", () => showLogin("", true));
    $("signout").addEventListener("click", signOut);
    $("gap-dismiss").addEventListener("click", dismissGap);
    $("critical-badge").addEventListener("click", clearCritical);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") {
        clearCritical();
      }
    });
    const filters = $("filters");
    filters.addEventListener("change", applyFilters);
    filters.addEventListener("submit", (e) => {
      e.preventDefault();
      applyFilters();
    });
    $("search").addEventListener("input", () => {
      search = $("search").value.trim().toLowerCase();
      viewChanged();
    });
    $("pause").addEventListener("click", togglePause);
    $("facets").addEventListener("click", (e) => {
      const chip = e.target.closest(".chip");
      if (chip) {
        facets = facets.filter(([k]) => k !== chip.dataset.key);
        viewChanged();
      }
    });
    $("main").addEventListener("click", (e) => {
      const facet = e.target.closest(".panels .facet, #map .country");
      if (facet) {
        addFacet(facet.dataset.key, facet.dataset.value);
      }
    });
    $("range").addEventListener("change", () => {
      saveView();
      drawTimeline();
    });
    $("quiet-after").addEventListener("change", () => {
      savePrefs();
      renderSensors();
    });
    $("sound").addEventListener("change", onSoundChange);
    $("notify").addEventListener("change", onNotifyChange);
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
    $("detail").addEventListener("close", () => (detailEntry = null));
    setInterval(() => {
      drawTimeline();
      renderPanels();
      if (!$("main").hidden) {
        renderSensors(); // ages move with the clock
      }
    }, 1000);
    loadMap();

    // For a kiosk or an SSO helper that obtains tokens itself (see docs/dashboard.md).
    window.NetSentinelDashboard = Object.freeze({ refreshToken: (text) => useToken(text) });

    const saved = sessionStorage.getItem(TOKEN_KEY) || devToken;
    if (saved) {
      signIn(saved);
    } else {
      showLogin("");
    }
  }

  init();
})();
