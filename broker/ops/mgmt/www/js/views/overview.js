// Overview: totals, live charts of queued messages and message rates, the node's figures,
// churn, listeners, and definitions export / import.
"use strict";

import { enc, get, post, query } from "../api.js";
import { Chart, countChart, rangeParams, rangeSelect } from "../chart.js";
import { bytes, duration, el, flash, meter, num, rate, section, simpleTable } from "../dom.js";
import { field, form, select, submit } from "../forms.js";
import { actions, isAdmin, session } from "../state.js";

export const MESSAGE_SERIES = [
  ["publish", "Publish"], ["confirm", "Publisher confirm"], ["deliver", "Deliver (manual ack)"],
  ["deliver_no_ack", "Deliver (auto ack)"], ["ack", "Consumer ack"],
  ["redeliver", "Redelivered"], ["get", "Get (manual ack)"], ["get_no_ack", "Get (auto ack)"],
  ["get_empty", "Get (empty)"], ["return_unroutable", "Unroutable (return)"],
  ["drop_unroutable", "Unroutable (drop)"]].map(([key, label]) => ({ key, label }));
export const LENGTH_SERIES = [["messages_ready", "Ready"],
  ["messages_unacknowledged", "Unacked"], ["messages", "Total"]]
  .map(([key, label]) => ({ key, label }));

// The message_stats *_details of an object, keyed by series (missing ones are empty).
export function messageDetails(stats) {
  const out = {};
  for (const s of MESSAGE_SERIES) out[s.key] = (stats || {})[s.key + "_details"];
  return out;
}

export function lengthDetails(obj) {
  const out = {}, now = {};
  for (const s of LENGTH_SERIES) {
    out[s.key] = obj[s.key + "_details"];
    now[s.key] = obj[s.key];
  }
  return [out, now];
}

export function chartsSection(onRange, policy) {
  const lengths = countChart("Queued messages", LENGTH_SERIES);
  const rates = new Chart("Message rates", MESSAGE_SERIES, "rate");
  const element = el("div", { class: "charts" }, rangeSelect(onRange, policy),
    el("div", { class: "chart-row" }, lengths.element, rates.element));
  return { element, lengths, rates };
}

export async function view() {
  const totals = el("div", { class: "totals" });
  const nodes = el("div", { id: "nodes" });
  const churn = el("div", { id: "churn" });
  const listeners = el("div", { id: "listeners" });
  let refresh = null;
  const charts = chartsSection(() => refresh(), "global");
  const element = el("div", { class: "page overview" }, el("h2", {}, "Overview"), totals,
    section("Totals", charts.element),
    section("Nodes", nodes), section("Churn statistics", churn),
    section("Ports and contexts", listeners),
    isAdmin() ? section("Export definitions", exportForm()) : null,
    isAdmin() ? section("Import definitions", importForm()) : null);

  refresh = async () => {
    const o = await get("/overview" + query(rangeParams(["msg_rates", "lengths"])));
    const t = o.object_totals;
    totals.replaceChildren(...[["Connections", t.connections, "#/connections"],
      ["Channels", t.channels, "#/channels"], ["Exchanges", t.exchanges, "#/exchanges"],
      ["Queues", t.queues, "#/queues"], ["Consumers", t.consumers, null]].map(
      ([label, value, href]) => el(href ? "a" : "div", { class: "total", href },
        el("span", { class: "total-value" }, num(value)), el("span", {}, label))));
    charts.lengths.update(...lengthDetails(o.queue_totals));
    charts.rates.update(messageDetails(o.message_stats));
    const c = o.churn_rates;
    churn.replaceChildren(simpleTable(["", "Created", "Closed"], [
      ["Connection operations", rate(c.connection_created_details),
        rate(c.connection_closed_details)],
      ["Channel operations", rate(c.channel_created_details),
        rate(c.channel_closed_details)]]));
    listeners.replaceChildren(simpleTable(["Protocol", "Bound to", "Port"],
      o.listeners.map((l) => [l.protocol, l.ip_address, String(l.port)])));
    const list = await get("/nodes");
    nodes.replaceChildren(simpleTable(["Name", "File descriptors", "Socket descriptors",
      "Memory", "Disk space", "Uptime", "Info"], list.map((n) => [
      n.name,
      meter(n.fd_used, n.fd_total, `${num(n.fd_used)} / ${num(n.fd_total)}`),
      meter(n.sockets_used, n.sockets_total, `${num(n.sockets_used)} / ${num(n.sockets_total)}`),
      meter(n.mem_used, n.mem_limit, `${bytes(n.mem_used)} / ${bytes(n.mem_limit)} high ` +
        "watermark" + (n.mem_alarm ? " (memory alarm)" : ""), n.mem_alarm),
      meter(n.disk_free_limit, n.disk_free, `${bytes(n.disk_free)} free / ${bytes(
        n.disk_free_limit)} low watermark` + (n.disk_free_alarm ? " (disk alarm)" : ""),
      n.disk_free_alarm),
      duration(n.uptime),
      `${n.type} · rates ${n.rates_mode} · ${n.processors} cores`])));
  };
  return { title: "Overview", element, refresh };
}

function vhostChoice() {
  return select("vhost", [["", "All virtual hosts"], ...session.vhosts.map((v) => [v, v])], "");
}

function exportForm() {
  const vhost = vhostChoice();
  return form("export-definitions", async () => {
    const path = vhost.value ? `/definitions/${enc(vhost.value)}` : "/definitions";
    const data = await get(path);
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
    const a = el("a", { href: URL.createObjectURL(blob),
      download: `burrowmq_definitions${vhost.value ? "_" + vhost.value : ""}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    flash("Definitions exported.");
  }, field("Virtual host", vhost), submit("Download broker definitions"));
}

function importForm() {
  const file = el("input", { type: "file", name: "definitions-file", accept: ".json,application/json" });
  const vhost = vhostChoice();
  return form("import-definitions", async () => {
    if (!file.files.length) throw new Error("Choose a definitions file first.");
    let body;
    try { body = JSON.parse(await file.files[0].text()); }
    catch (err) { throw new Error("The file is not valid JSON: " + err.message); }
    await post(vhost.value ? `/definitions/${enc(vhost.value)}` : "/definitions", body);
    flash("Your definitions were imported successfully.");
    await actions.reloadVhosts();
    actions.refreshNow();
  }, field("Definitions file", file), field("Virtual host", vhost),
  submit("Upload broker definitions"));
}
