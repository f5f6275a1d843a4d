// Queues and Streams: the list with feature badges and rates, adding one with arguments, and
// a queue's page: charts, details, consumers, bindings, publish, get messages (with their
// properties and headers), move messages, purge, delete.
"use strict";

import { del, enc, get, post, put, query } from "../api.js";
import { Chart, countChart, rangeParams, rangeSelect } from "../chart.js";
import { badge, bytes, confirmDelete, el, facts, flash, kvTable, link, num, rate, section,
  simpleTable, stateBadge } from "../dom.js";
import { KeyValueEditor, field, form, input, select, submit } from "../forms.js";
import { ListView } from "../table.js";
import { actions, go, selectedVhost } from "../state.js";
import { bindingTable, publishForm, vhostSelect } from "./exchanges.js";
import { LENGTH_SERIES, lengthDetails, messageDetails } from "./overview.js";

// Short names for arguments, as RabbitMQ's UI shows them.
const ARG_BADGES = [["x-message-ttl", "TTL"], ["x-expires", "Exp"], ["x-max-length", "Lim"],
  ["x-max-length-bytes", "Lim B"], ["x-delivery-limit", "DlL"], ["x-overflow", "Ovfl"],
  ["x-dead-letter-exchange", "DLX"], ["x-dead-letter-routing-key", "DLK"],
  ["x-max-priority", "Pri"], ["x-single-active-consumer", "SAC"]];
const HIDDEN_ARGS = new Set(["x-queue-type", "x-queue-mode"]);
const QUEUE_SERIES = [["publish", "Publish"], ["deliver", "Deliver (manual ack)"],
  ["deliver_no_ack", "Deliver (auto ack)"], ["ack", "Consumer ack"],
  ["redeliver", "Redelivered"], ["get", "Get (manual ack)"], ["get_no_ack", "Get (auto ack)"]]
  .map(([key, label]) => ({ key, label }));

export function queueFeatures(q) {
  const out = [];
  if (q.durable) out.push(badge("D", "durable: true"));
  if (q.auto_delete) out.push(badge("AD", "auto-delete: true"));
  if (q.exclusive) {
    const owner = q.owner_pid_details && q.owner_pid_details.name;
    out.push(owner ? link(`#/connections/${enc(owner)}`, badge("Excl",
      "Exclusive queue: click for the owning connection")) : badge("Excl", "exclusive"));
  }
  const args = q.arguments || {};
  for (const [key, short] of ARG_BADGES) {
    if (args[key] !== undefined) out.push(badge(short, `${key}: ${JSON.stringify(args[key])}`));
  }
  if (args["x-queue-mode"] === "lazy") out.push(badge("lazy", "x-queue-mode: lazy"));
  if (q.type === "quorum" || q.type === "stream") out.push(badge(q.type, "type: " + q.type, "type"));
  const known = new Set([...ARG_BADGES.map(([k]) => k), ...HIDDEN_ARGS]);
  const rest = Object.keys(args).filter((k) => !known.has(k));
  if (rest.length) out.push(badge("Args", rest.map((k) => `${k}: ${JSON.stringify(args[k])}`)
    .join(", ")));
  if (q.policy) out.push(badge(q.policy, "Policy: " + q.policy, "policy"));
  if (q.operator_policy) out.push(badge(q.operator_policy, "Operator policy: " +
    q.operator_policy, "policy operator"));
  return el("span", { class: "features" }, out);
}

export const queueLink = (vhost, name) => link(`#/queues/${enc(vhost)}/${enc(name)}`, name);

export async function view(parts) {
  if (parts.length >= 3) return detail(parts[1], parts.slice(2).join("/"));
  const vhost = selectedVhost();
  const ms = (q, key) => rate((q.message_stats || {})[key + "_details"]);
  const list = new ListView({
    id: "queues", empty: "... no queues ...",
    path: () => vhost ? `/queues/${enc(vhost)}` : "/queues",
    columns: [
      { label: "Virtual host", sort: "vhost", render: (q) => q.vhost },
      { label: "Name", sort: "name", render: (q) => queueLink(q.vhost, q.name) },
      { label: "Type", sort: "type", render: (q) => q.type },
      { label: "Features", render: queueFeatures },
      { label: "State", sort: "state", render: (q) => stateBadge(q.state) },
      { label: "Ready", sort: "messages_ready", num: true, render: (q) => num(q.messages_ready) },
      { label: "Unacked", sort: "messages_unacknowledged", num: true,
        render: (q) => num(q.messages_unacknowledged) },
      { label: "Total", sort: "messages", num: true, render: (q) => num(q.messages) },
      { label: "Incoming", sort: "message_stats.publish_details.rate", num: true,
        render: (q) => ms(q, "publish") },
      { label: "Deliver / get", sort: "message_stats.deliver_get_details.rate", num: true,
        render: (q) => ms(q, "deliver_get") },
      { label: "Ack", sort: "message_stats.ack_details.rate", num: true,
        render: (q) => ms(q, "ack") },
    ] });
  return { title: "Queues", refresh: () => list.refresh(),
    element: el("div", { class: "page" }, el("h2", {}, "Queues and Streams"), list.element,
      section("Add a new queue", addForm())) };
}

const QUEUE_ARGS = [["x-expires", "Auto expire", "number"],
  ["x-message-ttl", "Message TTL", "number"], ["x-overflow", "Overflow behaviour", "string"],
  ["x-single-active-consumer", "Single active consumer", "boolean"],
  ["x-dead-letter-exchange", "Dead letter exchange", "string"],
  ["x-dead-letter-routing-key", "Dead letter routing key", "string"],
  ["x-max-length", "Max length", "number"], ["x-max-length-bytes", "Max length bytes", "number"],
  ["x-max-priority", "Maximum priority", "number"], ["x-delivery-limit", "Delivery limit",
    "number"], ["x-queue-mode", "Lazy mode", "string"]];

function addForm() {
  const vhost = vhostSelect();
  const type = select("queue-type", [["classic", "Classic"], ["quorum", "Quorum"],
    ["stream", "Stream"]], "classic");
  const name = input("name", { required: true });
  const durable = select("durable", [["true", "Durable"], ["false", "Transient"]], "true");
  const autoDelete = select("auto_delete", [["false", "No"], ["true", "Yes"]], "false");
  const args = new KeyValueEditor("arguments", QUEUE_ARGS);
  return form("add-queue", async (node) => {
    const arguments_ = args.value();
    if (type.value !== "classic") arguments_["x-queue-type"] = type.value;
    await put(`/queues/${enc(vhost.value)}/${enc(name.value)}`, {
      durable: durable.value === "true", auto_delete: autoDelete.value === "true",
      arguments: arguments_ });
    flash(`Queue ${name.value} added.`);
    node.reset();
    args.clear();
    actions.refreshNow();
  }, field("Virtual host", vhost), field("Type", type), field("Name", name),
  field("Durability", durable), field("Auto delete", autoDelete),
  field("Arguments", args.element), submit("Add queue"));
}

async function detail(vhost, name) {
  const path = `/queues/${enc(vhost)}/${enc(name)}`;
  await get(path);
  const info = el("div", {});
  const consumers = el("div", {});
  const bindings = el("div", {});
  let refresh = null;
  const lengths = countChart("Queued messages", LENGTH_SERIES);
  const rates = new Chart("Message rates", QUEUE_SERIES, "rate");
  const element = el("div", { class: "page" }, el("h2", {}, "Queue ", el("b", {}, name)),
    section("Overview", rangeSelect(() => refresh()), el("div", { class: "chart-row" },
      lengths.element, rates.element), info),
    section("Consumers", consumers),
    section("Bindings", bindings, bindToQueue(vhost, name)),
    section("Publish message", publishForm(vhost, "", name)),
    section("Get messages", getForm(path)),
    section("Move messages", moveForm(vhost, name)),
    section("Delete", deleteForm(path)),
    section("Purge", purgeForm(path)));
  refresh = async () => {
    const q = await get(path + query(rangeParams(["msg_rates", "lengths"])));
    lengths.update(...lengthDetails(q));
    const md = messageDetails(q.message_stats);
    rates.update(md);
    info.replaceChildren(facts([
      ["Virtual host", q.vhost], ["Type", q.type], ["Features", queueFeatures(q)],
      ["Policy", q.policy || ""], ["Operator policy", q.operator_policy || ""],
      ["Effective policy definition", kvTable(q.effective_policy_definition)],
      ["State", stateBadge(q.state)], ["Consumers", num(q.consumers)],
      ["Consumer capacity", `${Math.round((q.consumer_capacity || 0) * 100)}%`],
      ["Messages", el("span", { id: "queue-counts" }, `Total ${num(q.messages)} · Ready ${num(
        q.messages_ready)} · Unacked ${num(q.messages_unacknowledged)}`)],
      ["Message body bytes", bytes(q.message_bytes)],
      ["Arguments", kvTable(q.arguments)],
    ]));
    consumers.replaceChildren(simpleTable(["Channel", "Consumer tag", "Ack required",
      "Exclusive", "Prefetch count", "Active", "Arguments"], (q.consumer_details || []).map(
      (c) => [link(`#/channels/${enc(c.channel_details.name)}`, c.channel_details.name),
        c.consumer_tag, c.ack_required ? "●" : "○", c.exclusive ? "●" : "○",
        num(c.prefetch_count), c.active ? "●" : "○", JSON.stringify(c.arguments)]),
    "... no consumers ..."));
    bindings.replaceChildren(bindingTable(await get(path + "/bindings"), vhost, "source"));
  };
  return { title: `Queue ${name}`, element, refresh };
}

function bindToQueue(vhost, queue) {
  const source = input("source", { required: true });
  const key = input("routing_key");
  const args = new KeyValueEditor("binding-arguments");
  return form("bind", async (node) => {
    await post(`/bindings/${enc(vhost)}/e/${enc(source.value)}/q/${enc(queue)}`, {
      routing_key: key.value, arguments: args.value() });
    flash("Binding added.");
    node.reset();
    args.clear();
    actions.refreshNow();
  }, el("h4", {}, "Add binding to this queue"), field("From exchange", source),
  field("Routing key", key), field("Arguments", args.element), submit("Bind"));
}

function getForm(path) {
  const mode = select("ackmode", [["ack_requeue_true", "Nack message requeue true"],
    ["ack_requeue_false", "Automatic ack"], ["reject_requeue_true", "Reject requeue true"],
    ["reject_requeue_false", "Reject requeue false"]], "ack_requeue_true");
  const encoding = select("encoding", [["auto", "Automatic string/base64"],
    ["base64", "base64"]], "auto");
  const count = input("count", { value: "1", type: "number", min: "1", size: "4" });
  const results = el("div", { id: "messages", "aria-live": "polite" });
  const node = form("get", async () => {
    const msgs = await post(path + "/get", { count: Number(count.value), ackmode: mode.value,
      encoding: encoding.value, truncate: 50000 });
    results.replaceChildren(...(msgs.length ? msgs.map(messageView)
      : [el("p", { class: "empty" }, "Queue is empty")]));
    actions.refreshNow();
  }, el("p", { class: "warning" }, "Warning: getting messages from a queue is a destructive " +
    "action."), field("Ack mode", mode), field("Encoding", encoding),
  field("Messages", count), submit("Get Message(s)"));
  return el("div", {}, node, results);
}

function messageView(m, i) {
  const props = { ...m.properties };
  const headers = props.headers;
  delete props.headers;
  return el("div", { class: "message" }, el("h4", {}, `Message ${i + 1}`),
    el("p", { class: "muted" }, `The server reported ${num(m.message_count)} messages ` +
      "remaining."),
    facts([["Exchange", m.exchange || "(AMQP default)"], ["Routing Key", m.routing_key],
      ["Redelivered", m.redelivered ? "●" : "○"], ["Properties", kvTable(props)],
      ["Headers", kvTable(headers)],
      ["Payload", el("div", {}, el("small", { class: "muted" },
        `${num(m.payload_bytes)} bytes, encoding: ${m.payload_encoding}`),
      el("pre", { class: "payload" }, m.payload))]]));
}

function moveForm(vhost, queue) {
  const dest = input("destination", { required: true });
  return form("move", async (node) => {
    await put(`/parameters/shovel/${enc(vhost)}/${enc("Move from " + queue)}`, { value: {
      "src-uri": "amqp:///" + enc(vhost), "src-queue": queue, "src-protocol": "amqp091",
      "src-prefetch-count": 1000, "src-delete-after": "queue-length",
      "dest-protocol": "amqp091", "dest-uri": "amqp:///" + enc(vhost), "dest-add-forward-headers":
        false, "ack-mode": "on-confirm", "dest-queue": dest.value } });
    flash(`Messages moved to ${dest.value}.`);
    node.reset();
    actions.refreshNow();
  }, el("p", { class: "muted" }, "Moves every message now in this queue to another queue " +
    "of the same virtual host."), field("Destination queue", dest), submit("Move messages"));
}

function deleteForm(path) {
  const unused = el("input", { type: "checkbox", name: "if-unused" });
  const empty = el("input", { type: "checkbox", name: "if-empty" });
  return form("delete-queue", async () => {
    if (!confirmDelete("queue")) return;
    await del(path + query({ "if-unused": unused.checked ? "true" : "",
      "if-empty": empty.checked ? "true" : "" }));
    flash("Queue deleted.");
    go("#/queues");
  }, el("label", { class: "check" }, unused, " Only if unused"),
  el("label", { class: "check" }, empty, " Only if empty"), submit("Delete Queue"));
}

function purgeForm(path) {
  return form("purge", async () => {
    await del(path + "/contents");
    flash("Queue purged");
    actions.refreshNow();
  }, submit("Purge Messages"));
}
