// Exchanges: the list with features and message rates in / out, adding one, and an
// exchange's page: rate chart, details, bindings in and out (add / remove), publishing a
// message with properties and headers, delete. Rates are absent (blank) until the exchange
// has had a publish: the API leaves message_stats out until then, as RabbitMQ does.
"use strict";

import { del, enc, get, post, put, query } from "../api.js";
import { Chart, rangeParams, rangeSelect } from "../chart.js";
import { badge, confirmDelete, el, facts, flash, kvTable, link, rate, section,
  simpleTable } from "../dom.js";
import { KeyValueEditor, field, form, input, select, submit, textarea } from "../forms.js";
import { ListView } from "../table.js";
import { actions, go, selectedVhost, session } from "../state.js";

export const exchangeName = (name) => name || "(AMQP default)";
export const exchangeLink = (vhost, name) =>
  link(`#/exchanges/${enc(vhost)}/${enc(name || "amq.default")}`, exchangeName(name));

export function exchangeFeatures(x) {
  const out = [];
  if (x.durable) out.push(badge("D", "durable: true"));
  if (x.auto_delete) out.push(badge("AD", "auto-delete: true"));
  if (x.internal) out.push(badge("I", "internal: true"));
  const args = { ...(x.arguments || {}) };
  if (args["alternate-exchange"] !== undefined) {
    out.push(badge("AE", "alternate-exchange: " + args["alternate-exchange"]));
    delete args["alternate-exchange"];
  }
  if (Object.keys(args).length) out.push(badge("Args", JSON.stringify(args)));
  if (x.policy) out.push(badge(x.policy, "Policy: " + x.policy, "policy"));
  return el("span", { class: "features" }, out);
}

// publish_in: published to this exchange; publish_out: deliveries it routed to queues.
const EXCHANGE_SERIES = [{ key: "publish_in", label: "Publish (In)" },
  { key: "publish_out", label: "Publish (Out)" }];
const msRate = (x, key) => rate((x.message_stats || {})[key + "_details"]);

export const vhostSelect = (name) => select(name || "vhost", session.vhosts,
  selectedVhost() || (session.vhosts.includes("/") ? "/" : session.vhosts[0]));

export async function view(parts) {
  if (parts.length >= 3) return detail(parts[1], parts.slice(2).join("/"));
  const vhost = selectedVhost();
  const list = new ListView({
    id: "exchanges", empty: "... no exchanges ...",
    path: () => vhost ? `/exchanges/${enc(vhost)}` : "/exchanges",
    columns: [
      { label: "Virtual host", sort: "vhost", render: (x) => x.vhost },
      { label: "Name", sort: "name", render: (x) => exchangeLink(x.vhost, x.name) },
      { label: "Type", sort: "type", render: (x) => x.type },
      { label: "Features", render: exchangeFeatures },
      { label: "Message rate in", sort: "message_stats.publish_in_details.rate", num: true,
        render: (x) => msRate(x, "publish_in") },
      { label: "Message rate out", sort: "message_stats.publish_out_details.rate", num: true,
        render: (x) => msRate(x, "publish_out") },
    ] });
  return { title: "Exchanges", refresh: () => list.refresh(),
    element: el("div", { class: "page" }, el("h2", {}, "Exchanges"), list.element,
      section("Add a new exchange", addForm())) };
}

function addForm() {
  const vhost = vhostSelect();
  const name = input("name", { required: true });
  const type = select("type", ["direct", "fanout", "headers", "topic"], "direct");
  const durable = select("durable", [["true", "Durable"], ["false", "Transient"]], "true");
  const autoDelete = select("auto_delete", [["false", "No"], ["true", "Yes"]], "false");
  const internal = select("internal", [["false", "No"], ["true", "Yes"]], "false");
  const args = new KeyValueEditor("arguments", [["alternate-exchange", "Alternate exchange",
    "string"]]);
  return form("add-exchange", async (node) => {
    await put(`/exchanges/${enc(vhost.value)}/${enc(name.value)}`, {
      type: type.value, durable: durable.value === "true",
      auto_delete: autoDelete.value === "true", internal: internal.value === "true",
      arguments: args.value() });
    flash(`Exchange ${name.value} added.`);
    node.reset();
    args.clear();
    actions.refreshNow();
  }, field("Virtual host", vhost), field("Name", name), field("Type", type),
  field("Durability", durable), field("Auto delete", autoDelete), field("Internal", internal),
  field("Arguments", args.element), submit("Add exchange"));
}

export function bindingTable(bindings, vhost, show) {
  return simpleTable([show === "source" ? "From" : "To", "Routing key", "Arguments", ""],
    bindings.map((b) => {
      const other = show === "source" ? b.source : b.destination;
      const isQueue = show !== "source" && b.destination_type === "queue";
      const target = isQueue ? link(`#/queues/${enc(vhost)}/${enc(other)}`, other)
        : exchangeLink(vhost, other);
      const implicit = b.source === "";
      return [el("span", {}, isQueue ? badge("Q", "queue") : badge("X", "exchange"), " ",
        target), b.routing_key, kvTable(b.arguments), implicit ? el("span", { class: "muted" },
        "(Default exchange binding)") : el("button", { type: "button", class: "secondary",
        onclick: async () => {
          const path = `/bindings/${enc(vhost)}/e/${enc(b.source)}/` +
            `${b.destination_type === "queue" ? "q" : "e"}/${enc(b.destination)}/` +
            enc(b.properties_key);
          try { await del(path); flash("Binding removed."); actions.refreshNow(); }
          catch (err) { flash(err.message, "error"); }
        } }, "Unbind")];
    }), "... no bindings ...");
}

async function detail(vhost, name) {
  const path = `/exchanges/${enc(vhost)}/${enc(name)}`;
  const x = await get(path);
  const info = el("div", {});
  const out = el("div", {});
  const into = el("div", {});
  const shownName = exchangeName(x.name);
  const rates = new Chart("Message rates", EXCHANGE_SERIES, "rate");
  let refresh = null;
  const element = el("div", { class: "page" },
    el("h2", {}, "Exchange ", el("b", {}, shownName)),
    section("Overview", rangeSelect(() => refresh()), el("div", { class: "chart-row" },
      rates.element), info),
    section("Bindings", el("h4", {}, "This exchange routes to"), out,
      el("h4", {}, "Bindings into this exchange"), into,
      x.name ? bindForm(vhost, x.name) : el("p", { class: "muted" },
        "The default exchange is implicitly bound to every queue, with a routing key equal " +
        "to the queue name. It is not possible to explicitly bind to, or unbind from the " +
        "default exchange.")),
    section("Publish message", publishForm(vhost, x.name)),
    x.name && !x.name.startsWith("amq.")
      ? section("Delete this exchange", deleteForm(path, vhost)) : null);
  refresh = async () => {
    const now = await get(path + query(rangeParams(["msg_rates"])));
    const stats = now.message_stats || {};
    rates.update(Object.fromEntries(EXCHANGE_SERIES.map((s) => [s.key,
      stats[s.key + "_details"]])));
    info.replaceChildren(facts([["Virtual host", now.vhost], ["Type", now.type],
      ["Features", exchangeFeatures(now)], ["Policy", now.policy || ""],
      ["Arguments", kvTable(now.arguments)]]));
    out.replaceChildren(bindingTable(await get(path + "/bindings/source"), vhost, "dest"));
    into.replaceChildren(bindingTable(await get(path + "/bindings/destination"), vhost,
      "source"));
  };
  return { title: `Exchange ${shownName}`, element, refresh };
}

export function bindForm(vhost, source) {
  const kind = select("destination_type", [["q", "To queue"], ["e", "To exchange"]], "q");
  const dest = input("destination", { required: true });
  const key = input("routing_key");
  const args = new KeyValueEditor("binding-arguments");
  return form("bind", async (node) => {
    await post(`/bindings/${enc(vhost)}/e/${enc(source)}/${kind.value}/${enc(dest.value)}`, {
      routing_key: key.value, arguments: args.value() });
    flash("Binding added.");
    node.reset();
    args.clear();
    actions.refreshNow();
  }, el("h4", {}, "Add binding from this exchange"), field("To", kind),
  field("Destination", dest), field("Routing key", key),
  field("Arguments", args.element), submit("Bind"));
}

const PROPERTY_KEYS = ["content_type", "content_encoding", "priority", "correlation_id",
  "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id",
  "cluster_id"];

// Publishing: used on exchange pages and (through the default exchange) on queue pages.
export function publishForm(vhost, exchange, fixedKey) {
  const key = input("routing_key", { value: fixedKey || "" });
  const mode = select("delivery_mode", [["1", "1 - Non-persistent"], ["2", "2 - Persistent"]],
    "1");
  const headers = new KeyValueEditor("headers");
  const props = new KeyValueEditor("properties", PROPERTY_KEYS.map((k) => [k, k,
    ["priority", "timestamp"].includes(k) ? "number" : "string"]));
  const payload = textarea("payload", { rows: "5" });
  const encoding = select("payload_encoding", [["string", "String (default)"],
    ["base64", "Base64"]], "string");
  return form("publish", async () => {
    const properties = { delivery_mode: Number(mode.value), ...props.value() };
    const h = headers.value();
    if (Object.keys(h).length) properties.headers = h;
    const target = exchange || "amq.default";
    const r = await post(`/exchanges/${enc(vhost)}/${enc(target)}/publish`, {
      routing_key: key.value, properties, payload: payload.value,
      payload_encoding: encoding.value });
    flash(r.routed ? "Message published." : "Message published, but not routed.",
      r.routed ? "notice" : "error");
    actions.refreshNow();
  }, fixedKey !== undefined ? el("p", { class: "muted" },
    "Message will be published to the default exchange with routing key ",
    el("b", {}, fixedKey), ", routing it to this queue.") : field("Routing key", key),
  field("Delivery mode", mode), field("Headers", headers.element),
  field("Properties", props.element), field("Payload", payload),
  field("Payload encoding", encoding), submit("Publish message"));
}

function deleteForm(path, vhost) {
  return form("delete-exchange", async () => {
    if (!confirmDelete("exchange")) return;
    await del(path);
    flash("Exchange deleted.");
    go("#/exchanges");
  }, el("p", {}, `The exchange belongs to virtual host ${vhost}.`), submit("Delete"));
}
