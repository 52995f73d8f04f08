/*
 * NetSentinel WebSocket browser client (protocol v1), plain JavaScript, no build step.
 *
 *   const client = new NetSentinelClient({
 *     url: "wss://soc.example/ws", token: jwt,
 *     channels: null,            // null: every channel the token allows (from `welcome`)
 *     filter: {min_severity: "high"},
 *     onState(state, detail) {}, // connecting | connected | reconnecting | auth-failed | stopped
 *     onGap(message) {},         // history could not cover an outage: events were missed
 *     onEvent(message) {},       // {"type":"event","channel","epoch","offset","event"}
 *     onWelcome(message) {},     // may return a Promise: subscribing waits until it settles
 *   });
 *   client.start();
 *
 * It authenticates with the subprotocol method (browsers cannot set an Authorization header,
 * and a token in the URL would end up in logs), splits coalesced frames on "\n", remembers
 * each channel's last epoch/offset and, after any disconnect other than an authentication
 * failure, reconnects with jittered exponential back-off and resumes with `since`.
 * See docs/browser-client.md.
 */
(function (root) {
  "use strict";

  const SUBPROTOCOL = "netsentinel.v1";
  // Close codes after which reconnecting cannot help: the token itself is the problem.
  const AUTH_CLOSE_CODES = new Set([4001, 4004]);

  class NetSentinelClient {
    constructor(options) {
      this.url = options.url;
      this.token = options.token;
      this.channels = options.channels || null;
      this.filter = options.filter || {};
      this.minDelay = options.minDelay ?? 500;
      this.maxDelay = options.maxDelay ?? 15000;
      this.connectTimeout = options.connectTimeout ?? 10000;
      // The server pings at the WebSocket level, but browsers answer those silently and tell
      // the page nothing; an application ping is the only way to notice a dead peer (e.g. a
      // NAT or proxy that dropped the connection without a close).
      this.pingInterval = options.pingInterval ?? 25000;
      this.onState = options.onState || (() => {});
      this.onGap = options.onGap || (() => {});
      this.onEvent = options.onEvent || (() => {});
      this.onWelcome = options.onWelcome || (() => {});
      this.onError = options.onError || (() => {});

      this.state = "idle";
      this.welcome = null;
      this.positions = {}; // channel -> {epoch, offset}: where to resume from
      this.subscribed = []; // channels the server confirmed on this connection
      this._ws = null;
      this._attempt = 0;
      this._nextId = 1;
      this._pending = new Map(); // request id -> {resolve, reject}
      this._retryTimer = null;
      this._connectTimer = null;
      this._pingTimer = null;
      this._lastSeen = 0;
      this._stopped = true;
    }

    /** Connect (and keep reconnecting until stop() or an authentication failure). */
    start() {
      this._stopped = false;
      this._attempt = 0;
      this._connect();
      return this;
    }

    /** Close for good; the client can be started again later. */
    stop() {
      this._stopped = true;
      this._teardown(1000, "client stopped");
      this._setState("stopped");
    }

    /** Replace the token used for the next connection (e.g. after "auth-failed"). */
    setToken(token) {
      this.token = token;
    }

    /**
     * Hand a fresh token (same `sub`) to the live connection before the old one expires, so
     * nothing is torn down; resolves with `auth_ok`. Not connected: it is kept for the next
     * connection. A refused token closes the connection with 4001 ("auth-failed").
     */
    refreshToken(token) {
      this.token = token;
      if (this.state !== "connected") {
        return Promise.resolve(null);
      }
      return this.request({ type: "auth", token });
    }

    /**
     * Change channels and filter. While connected: unsubscribe what was dropped and subscribe
     * again with the new filter (the server replaces a channel's filter atomically, so the
     * live stream switches over without a hole). Resolves with the `subscribed` reply.
     */
    setSubscription(channels, filter) {
      this.channels = channels;
      this.filter = filter || {};
      if (this.state !== "connected") {
        return Promise.resolve(null);
      }
      const wanted = this._wantedChannels();
      const dropped = this.subscribed.filter((c) => !wanted.includes(c));
      for (const channel of dropped) {
        delete this.positions[channel];
      }
      if (dropped.length) {
        this.request({ type: "unsubscribe", channels: dropped }).catch(this.onError);
        this.subscribed = this.subscribed.filter((c) => wanted.includes(c));
      }
      // No `since` here: the connection is live, so nothing was missed; resuming from the last
      // event seen would replay events the old filter had hidden.
      return this._subscribe(wanted, false);
    }

    /** Acknowledge an alert (needs the `alerts:ack` scope); resolves on `ack_ok`. */
    ack(alertId, note) {
      const message = { type: "ack", alert_id: String(alertId) };
      if (note) {
        message.note = note;
      }
      return this.request(message);
    }

    /** Send a request with a fresh id; resolves with the reply of that id, rejects on `error`. */
    request(message) {
      if (!this._ws || this._ws.readyState !== WebSocket.OPEN || this.state !== "connected") {
        return Promise.reject(new Error("not connected"));
      }
      const id = this._nextId++;
      return new Promise((resolve, reject) => {
        this._pending.set(id, { resolve, reject });
        this._ws.send(JSON.stringify({ ...message, id }));
      });
    }

    // --- connection lifecycle ---

    _connect() {
      if (this.state !== "reconnecting") {
        this._setState("connecting");
      }
      let ws;
      try {
        ws = new WebSocket(this.url, [SUBPROTOCOL, "bearer." + this.token]);
      } catch (err) {
        // A token with characters a subprotocol cannot carry, or a bad URL: retrying won't fix it.
        this._stopped = true;
        this._setState("auth-failed", { code: 0, reason: String(err.message || err) });
        return;
      }
      this._ws = ws;
      this._connectTimer = setTimeout(() => this._drop("connect timeout"), this.connectTimeout);
      ws.onmessage = (e) => this._onFrame(e.data);
      ws.onclose = (e) => this._onClose(e.code, e.reason);
      // onerror is always followed by onclose, which does the work.
    }

    _onClose(code, reason) {
      this._teardown();
      if (this._stopped) {
        return;
      }
      if (AUTH_CLOSE_CODES.has(code)) {
        this._stopped = true;
        this._setState("auth-failed", { code, reason });
        return;
      }
      this._scheduleReconnect({ code, reason });
    }

    /** Give up on a socket that stopped answering, without waiting for a close handshake. */
    _drop(reason) {
      this._teardown(4000, reason);
      if (!this._stopped) {
        this._scheduleReconnect({ code: 4000, reason });
      }
    }

    _teardown(code, reason) {
      clearTimeout(this._connectTimer);
      clearTimeout(this._retryTimer);
      clearInterval(this._pingTimer);
      const ws = this._ws;
      this._ws = null;
      if (ws) {
        ws.onmessage = ws.onclose = null;
        if (code !== undefined && ws.readyState <= WebSocket.OPEN) {
          ws.close(code, reason);
        }
      }
      for (const { reject } of this._pending.values()) {
        reject(new Error("connection closed"));
      }
      this._pending.clear();
      this.subscribed = [];
    }

    _scheduleReconnect(detail) {
      // Equal jitter: half the exponential delay is fixed, half random, so a server restart
      // does not see every dashboard come back in the same millisecond.
      const base = Math.min(this.maxDelay, this.minDelay * 2 ** this._attempt);
      const delay = base / 2 + Math.random() * (base / 2);
      this._attempt += 1;
      this._setState("reconnecting", { ...detail, retryIn: delay });
      this._retryTimer = setTimeout(() => this._connect(), delay);
    }

    _setState(state, detail) {
      this.state = state;
      this.onState(state, detail || {});
    }

    // --- messages ---

    _onFrame(data) {
      this._lastSeen = Date.now();
      // One frame may carry several messages (the server coalesces); one JSON object a line.
      for (const line of String(data).split("\n")) {
        if (line) {
          this._onMessage(JSON.parse(line));
        }
      }
    }

    _onMessage(msg) {
      switch (msg.type) {
        case "event":
          this.positions[msg.channel] = { epoch: msg.epoch, offset: msg.offset };
          this.onEvent(msg);
          break;
        case "welcome":
          this._onWelcome(msg);
          break;
        case "subscribed":
          // Where each channel stands now: the resume point even before its first event.
          Object.assign(this.positions, msg.positions);
          this.subscribed = [...new Set([...this.subscribed, ...msg.channels])];
          this._settle(msg);
          break;
        case "gap":
          this.onGap(msg);
          break;
        case "error":
          if (!this._settle(msg)) {
            this.onError(msg);
          }
          break;
        default:
          this._settle(msg);
      }
    }

    _onWelcome(msg) {
      clearTimeout(this._connectTimer);
      this.welcome = msg;
      this._attempt = 0;
      this._setState("connected", { welcome: msg });
      const ws = this._ws;
      this._pingTimer = setInterval(() => this._heartbeat(), this.pingInterval);
      // onWelcome may load history first (and set `positions`): subscribe once it is done, on
      // this same connection, so `since` continues exactly where the history ended.
      Promise.resolve()
        .then(() => this.onWelcome(msg))
        .catch(this.onError)
        .then(() => {
          if (this._ws === ws && this.state === "connected") {
            this._subscribe(this._wantedChannels(), true).catch(this.onError);
          }
        });
    }

    _heartbeat() {
      if (Date.now() - this._lastSeen > 2 * this.pingInterval) {
        this._drop("heartbeat timeout");
      } else if (Date.now() - this._lastSeen > this.pingInterval / 2) {
        this.request({ type: "ping" }).catch(() => {});
      }
    }

    /** Resolve or reject the request a reply answers; false when it answers none. */
    _settle(msg) {
      const pending = msg.id == null ? undefined : this._pending.get(msg.id);
      if (!pending) {
        return false;
      }
      this._pending.delete(msg.id);
      if (msg.type === "error") {
        const err = new Error(msg.message);
        err.code = msg.code;
        pending.reject(err);
      } else {
        pending.resolve(msg);
      }
      return true;
    }

    /** The channels to subscribe: the requested ones the token allows (all when none given). */
    _wantedChannels() {
      const allowed = this.welcome ? this.welcome.channels : [];
      return this.channels ? this.channels.filter((c) => allowed.includes(c)) : allowed.slice();
    }

    _subscribe(channels, resume) {
      if (!channels.length) {
        return Promise.resolve(null);
      }
      const message = { type: "subscribe", channels, filter: this.filter };
      if (resume) {
        const since = {};
        for (const channel of channels) {
          if (this.positions[channel]) {
            since[channel] = this.positions[channel];
          }
        }
        if (Object.keys(since).length) {
          message.since = since;
        }
      }
      return this.request(message);
    }
  }

  root.NetSentinelClient = NetSentinelClient;
})(typeof window !== "undefined" ? window : globalThis);
