// burrowmq management UI: a small single-page app over the /api endpoints.
// Credentials live in sessionStorage; #/login/<user>/<password> logs in directly (as in
// RabbitMQ's UI). Every view is rendered with textContent, never innerHTML of data.
"use strict";

const main = document.getElementById("main");
let refreshTimer = null;
let routeSeq = 0;  // a view renders only while its route is still the latest one

function creds() { return sessionStorage.getItem("burrowmq-auth"); }

async function api(method, path, body) {
  const headers = { "Authorization": "Basic " + creds() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch("/api" + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new Error((data && data.reason) || resp.statusText);
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headers, rows) {
  return el("table", {}, el("tr", {}, headers.map((h) => el("th", {}, h))),
    rows.map((cells) => el("tr", {}, cells.map((c) =>
      el("td", typeof c === "number" ? { class: "num" } : {}, c)))));
}

function enc(name) { return encodeURIComponent(name); }

function showError(err) {
  main.replaceChildren(el("p", { class: "error" }, "Error: " + err.message));
}

// ---- views ------------------------------------------------------------------------------
function loginView(message) {
  document.getElementById("nav").hidden = true;
  const user = el("input", { name: "username", value: "" });
  const pass = el("input", { name: "password", type: "password", value: "" });
  const form = el("form", { id: "login", onsubmit: async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("burrowmq-auth", btoa(user.value + ":" + pass.value));
    try {
      await api("GET", "/whoami");
      if (location.hash === "#/" || location.hash === "") route(); else location.hash = "#/";
    }
    catch (err) { sessionStorage.removeItem("burrowmq-auth"); loginView(err.message); }
  } }, el("label", {}, "Username ", user), el("label", {}, "Password ", pass),
    el("button", { type: "submit" }, "Login"));
  main.replaceChildren(el("h2", {}, "Log in"),
    ...(message ? [el("p", { class: "error" }, message)] : []), form);
}

async function overviewView(live) {
  const o = await api("GET", "/overview");
  if (!live()) return;
  const t = o.object_totals, q = o.queue_totals, m = o.message_stats;
  main.replaceChildren(
    el("h2", {}, "Overview"),
    el("p", {}, `Cluster ${o.cluster_name} · RabbitMQ ${o.rabbitmq_version} compatible · node ${o.node}`),
    el("h3", {}, "Totals"),
    table(["Connections", "Channels", "Exchanges", "Queues", "Consumers"],
      [[t.connections, t.channels, t.exchanges, t.queues, t.consumers]]),
    el("h3", {}, "Queued messages"),
    table(["Ready", "Unacked", "Total"],
      [[q.messages_ready, q.messages_unacknowledged, q.messages]]),
    el("h3", {}, "Messages"),
    table(["Published", "Delivered", "Acknowledged", "Publish rate /s"],
      [[m.publish, m.deliver_get, m.ack, m.publish_details.rate]]),
    el("h3", {}, "Listeners"),
    table(["Protocol", "Bound to", "Port"],
      o.listeners.map((l) => [l.protocol, l.ip_address, l.port])));
}

async function queuesView(live) {
  const queues = await api("GET", "/queues");
  if (!live()) return;
  const name = el("input", { name: "queue-name" });
  const add = el("form", { id: "add-queue", onsubmit: async (ev) => {
    ev.preventDefault();
    try { await api("PUT", `/queues/%2F/${enc(name.value)}`, { durable: true }); route(); }
    catch (err) { showError(err); }
  } }, el("label", {}, "Name ", name), el("button", { type: "submit" }, "Add queue"));
  main.replaceChildren(el("h2", {}, "Queues"),
    table(["Virtual host", "Name", "Type", "Features", "State", "Ready", "Unacked", "Total"],
      queues.map((q) => [q.vhost,
        el("a", { href: `#/queues/${enc(q.vhost)}/${enc(q.name)}` }, q.name), q.type,
        q.durable ? "D" : "", q.state, q.messages_ready, q.messages_unacknowledged,
        q.messages])),
    el("h3", {}, "Add a new queue"), add);
}

async function queueView(vhost, name, live) {
  const path = `/queues/${enc(vhost)}/${enc(name)}`;
  const q = await api("GET", path);
  if (!live()) return;
  const status = el("div", { id: "status" });
  const results = el("div", { id: "messages" });
  const payload = el("textarea", { name: "payload" });
  const count = el("input", { name: "count", value: "1", size: "3" });
  const ackmode = el("select", { name: "ackmode" },
    el("option", { value: "ack_requeue_true" }, "Nack message requeue true"),
    el("option", { value: "ack_requeue_false" }, "Automatic ack"),
    el("option", { value: "reject_requeue_true" }, "Reject requeue true"),
    el("option", { value: "reject_requeue_false" }, "Reject requeue false"));
  const say = (text, cls) => status.replaceChildren(el("p", { class: cls || "notice" }, text));
  const publish = el("form", { id: "publish", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", `/exchanges/${enc(vhost)}/amq.default/publish`, {
        properties: {}, routing_key: name, payload: payload.value,
        payload_encoding: "string" });
      say(r.routed ? "Message published." : "Message published, but not routed.");
      await refreshCounts();
    } catch (err) { say(err.message, "error"); }
  } }, el("label", {}, "Payload ", payload), el("button", { type: "submit" }, "Publish message"));
  const get = el("form", { id: "get", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const msgs = await api("POST", path + "/get", {
        count: parseInt(count.value, 10), ackmode: ackmode.value, encoding: "auto" });
      results.replaceChildren(...(msgs.length ? [] : [el("p", {}, "Queue is empty")]),
        ...msgs.map((m, i) => el("div", { class: "message" }, el("b", {}, `Message ${i + 1}`),
          el("div", {}, `Exchange: ${m.exchange || "(AMQP default)"} · Routing key: ${m.routing_key} · Redelivered: ${m.redelivered}`),
          el("pre", { class: "payload" }, m.payload))));
      await refreshCounts();
    } catch (err) { say(err.message, "error"); }
  } }, el("label", {}, "Ack mode ", ackmode), el("label", {}, "Messages ", count),
    el("button", { type: "submit" }, "Get Message(s)"));
  const purge = el("button", { id: "purge", type: "button", onclick: async () => {
    try { await api("DELETE", path + "/contents"); say("Queue purged"); await refreshCounts(); }
    catch (err) { say(err.message, "error"); }
  } }, "Purge Messages");
  const counts = el("div", { id: "counts" });
  async function refreshCounts() {
    const now = await api("GET", path);
    counts.replaceChildren(table(["Ready", "Unacked", "Total", "Consumers"],
      [[now.messages_ready, now.messages_unacknowledged, now.messages, now.consumers]]));
  }
  main.replaceChildren(el("h2", {}, `Queue ${q.name}`),
    el("p", {}, `Virtual host ${q.vhost} · type ${q.type} · ${q.durable ? "durable" : "transient"}`),
    counts, status, el("h3", {}, "Publish message"), publish,
    el("h3", {}, "Get messages"), get, results, el("h3", {}, "Purge"), purge);
  await refreshCounts();
}

async function exchangesView(live) {
  const xs = await api("GET", "/exchanges");
  if (!live()) return;
  main.replaceChildren(el("h2", {}, "Exchanges"),
    table(["Virtual host", "Name", "Type", "Features"],
      xs.map((x) => [x.vhost, x.name || "(AMQP default)", x.type,
        [x.durable ? "D" : "", x.auto_delete ? "AD" : "", x.internal ? "I" : ""].join(" ").trim()])));
}

async function connectionsView(live) {
  const cs = await api("GET", "/connections");
  if (!live()) return;
  main.replaceChildren(el("h2", {}, "Connections"),
    cs.length ? table(["Name", "User name", "Virtual host", "State", "Channels", "Protocol"],
      cs.map((c) => [c.name, c.user, c.vhost, c.state, c.channels, c.protocol]))
      : el("p", {}, "... no connections ..."));
}

// ---- routing ----------------------------------------------------------------------------
async function route() {
  const seq = ++routeSeq;
  const live = () => seq === routeSeq;
  clearInterval(refreshTimer);
  const hash = location.hash || "#/";
  const parts = hash.slice(2).split("/").map(decodeURIComponent);
  if (parts[0] === "login" && parts.length >= 3) {
    sessionStorage.setItem("burrowmq-auth", btoa(parts[1] + ":" + parts.slice(2).join("/")));
    location.replace("#/");
    return;
  }
  if (!creds()) { loginView(); return; }
  let who;
  try { who = await api("GET", "/whoami"); }
  catch (err) { sessionStorage.removeItem("burrowmq-auth"); loginView(err.message); return; }
  if (!live()) return;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = who.name;
  const tab = parts[0] || "overview";
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.tab === tab);
  }
  const views = { overview: overviewView, queues: queuesView, exchanges: exchangesView,
                  connections: connectionsView };
  try {
    if (tab === "queues" && parts.length >= 3) {
      await queueView(parts[1], parts[2], live);
      return;
    }
    const view = views[tab] || overviewView;
    await view(live);
    if (tab !== "queues" && live()) {
      refreshTimer = setInterval(() => view(live).catch(showError), 5000);
    }
  } catch (err) { showError(err); }
}

document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem("burrowmq-auth");
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);
route();
