// The bench's Node.js peer on the `ws` library (python -m bench starts it; see
// docs/performance.md). The same protocol subset and TCP JSON-lines ingest as the Python peers
// (bench/peers/common.py): Bearer HS256 token checked at the upgrade (exp and sub required),
// `welcome`, `subscribe`/`subscribed`, `event` messages under the project's default routing.
// Fan-out as the library's documentation recommends: each event serialized once with
// JSON.stringify and `send` to every subscriber of its channels; no compression.
"use strict";

const crypto = require("crypto");
const net = require("net");
const { WebSocketServer } = require("ws");

function option(name) {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0 || at + 1 >= process.argv.length) throw new Error(`--${name} is required`);
  return process.argv[at + 1];
}

const host = process.argv.includes("--host") ? option("host") : "127.0.0.1";
const port = Number(option("port"));
const ingestPort = Number(option("ingest-port"));
const secret = option("secret");

const RULES = [
  ["threat.", "threats"], ["alert.", "alerts"], ["status.", "status"], ["system.", "status"],
  ["metrics.", "metrics"], ["network.", "network"], ["packet.", "packets"], ["ml.", "ml"],
  ["honeypot.", "events"],
];
const CHANNELS = ["threats", "alerts", "status", "metrics", "events", "network", "packets", "ml"];
const SEVERE = new Set(["high", "critical"]);
const epoch = crypto.randomBytes(4).toString("hex");
const offsets = new Map();
const subscribers = new Map(CHANNELS.map((c) => [c, new Set()]));

function route(event) {
  // The default rules are `prefix.*` globs, so a prefix test is the same match.
  const type = String(event.event_type ?? "");
  const channels = [];
  for (const [prefix, channel] of RULES) {
    if (!channels.includes(channel) && type.startsWith(prefix)) channels.push(channel);
  }
  if (SEVERE.has(event.severity) && !channels.includes("threats")) channels.push("threats");
  return channels;
}

function b64url(buffer) {
  return buffer.toString("base64").replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

function verify(header) {
  if (!header || !header.startsWith("Bearer ")) return null;
  const parts = header.slice(7).split(".");
  if (parts.length !== 3) return null;
  const expected = b64url(crypto.createHmac("sha256", secret).update(`${parts[0]}.${parts[1]}`).digest());
  const given = Buffer.from(parts[2]);
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, Buffer.from(expected))) return null;
  let head, claims;
  try {
    head = JSON.parse(Buffer.from(parts[0], "base64url"));
    claims = JSON.parse(Buffer.from(parts[1], "base64url"));
  } catch {
    return null;
  }
  if (head.alg !== "HS256" || typeof claims.sub !== "string" || typeof claims.exp !== "number") return null;
  return claims.exp > Date.now() / 1000 ? claims : null;
}

function publish(event) {
  for (const channel of route(event)) {
    const members = subscribers.get(channel);
    if (!members.size) continue;
    const offset = (offsets.get(channel) ?? 0) + 1;
    offsets.set(channel, offset);
    const data = JSON.stringify({ type: "event", channel, epoch, offset, event });
    for (const ws of members) ws.send(data);
  }
}

const wss = new WebSocketServer({ host, port, perMessageDeflate: false, backlog: 1024 });
wss.on("connection", (ws, request) => {
  const claims = verify(request.headers.authorization);
  if (claims === null) {
    ws.close(4001, "invalid token");
    return;
  }
  const mine = new Set();
  ws.send(JSON.stringify({
    type: "welcome", protocol: 1, connection_id: crypto.randomUUID(), node_id: "bench-peer",
    server_time: Date.now() / 1000, channels: CHANNELS, expires_at: claims.exp,
  }));
  ws.on("message", (message) => {
    let request;
    try {
      request = JSON.parse(message);
    } catch {
      ws.send(JSON.stringify({ type: "error", id: null, code: "bad_request", message: "not JSON" }));
      return;
    }
    if (request.type === "subscribe") {
      const wanted = (request.channels ?? []).filter((c) => subscribers.has(c));
      for (const c of wanted) { mine.add(c); subscribers.get(c).add(ws); }
      ws.send(JSON.stringify({ type: "subscribed", id: request.id, channels: wanted, positions: {}, recovered: {} }));
    } else if (request.type === "ping") {
      ws.send(JSON.stringify({ type: "pong", id: request.id, server_time: Date.now() / 1000 }));
    } else {
      ws.send(JSON.stringify({ type: "error", id: request.id, code: "unknown_type", message: String(request.type) }));
    }
  });
  ws.on("close", () => { for (const c of mine) subscribers.get(c).delete(ws); });
});

net.createServer((socket) => {
  let pending = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk) => {
    pending += chunk;
    let newline;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (!line.trim()) continue;
      let event;
      try {
        event = JSON.parse(line);
      } catch {
        continue; // a malformed line is dropped, as the Python peers do
      }
      if (event && typeof event === "object" && !Array.isArray(event)) publish(event);
    }
  });
  socket.on("error", () => {});
}).listen(ingestPort, host);
