// Connections: the list (state, TLS, protocol, channels, data rates) and a connection's page
// (details, client properties, data rates chart, its channels, close with a reason).
"use strict";

import { del, enc, get, query } from "../api.js";
import { Chart, rangeParams, rangeSelect } from "../chart.js";
import { bytes, confirmDelete, el, facts, flash, kvTable, link, num, rate, section,
  simpleTable, stateBadge, timestamp } from "../dom.js";
import { field, form, input, submit } from "../forms.js";
import { ListView } from "../table.js";
import { go, selectedVhost } from "../state.js";

export const connLink = (name) => link(`#/connections/${enc(name)}`, name);

export async function view(parts) {
  if (parts.length > 1 && parts[1]) return detail(parts[1]);
  const vhost = selectedVhost();
  const list = new ListView({
    id: "connections", empty: "... no connections ...",
    path: () => vhost ? `/vhosts/${enc(vhost)}/connections` : "/connections",
    columns: [
      { label: "Virtual host", sort: "vhost", render: (c) => c.vhost },
      { label: "Name", sort: "name", render: (c) => el("span", {}, connLink(c.name),
        c.user_provided_name ? el("small", { class: "muted" }, " " + c.user_provided_name) : "") },
      { label: "User name", sort: "user", render: (c) => c.user },
      { label: "State", sort: "state", render: (c) => stateBadge(c.state) },
      { label: "TLS", render: (c) => c.ssl ? "●" : "○" },
      { label: "Protocol", sort: "protocol", render: (c) => c.protocol },
      { label: "Channels", sort: "channels", num: true, render: (c) => num(c.channels) },
      { label: "From client", sort: "recv_oct_details.rate", num: true,
        render: (c) => bytes(c.recv_oct_details.rate) + "/s" },
      { label: "To client", sort: "send_oct_details.rate", num: true,
        render: (c) => bytes(c.send_oct_details.rate) + "/s" },
    ] });
  return { title: "Connections", refresh: () => list.refresh(),
    element: el("div", { class: "page" }, el("h2", {}, "Connections"), list.element) };
}

async function detail(name) {
  const path = `/connections/${enc(name)}`;
  await get(path);  // a 404 here shows the not-found page
  const info = el("div", {});
  const props = el("div", {});
  const chans = el("div", {});
  let refresh = null;
  const chart = new Chart("Data rates", [{ key: "recv_oct", label: "From client" },
    { key: "send_oct", label: "To client" }], "rate");
  const reason = input("reason", { value: "Closed via management plugin", size: "40" });
  const close = form("close-connection", async () => {
    if (!confirmDelete("connection")) return;
    await del(path, { "X-Reason": reason.value });
    flash("Connection closed.");
    go("#/connections");
  }, field("Reason", reason), submit("Force Close"));
  const element = el("div", { class: "page" }, el("h2", {}, "Connection ", el("b", {}, name)),
    section("Overview", info), section("Data rates", rangeSelect(() => refresh()), chart.element),
    section("Channels", chans), section("Client properties", props),
    section("Close this connection", close));
  refresh = async () => {
    const c = await get(path + query(rangeParams(["data_rates", "msg_rates"])));
    info.replaceChildren(facts([
      ["Virtual host", c.vhost], ["Username", c.user], ["State", stateBadge(c.state)],
      ["Protocol", c.protocol], ["Authentication", c.auth_mechanism],
      ["Connected at", timestamp(c.connected_at)], ["Client", `${c.peer_host}:${c.peer_port}`],
      ["Heartbeat", c.timeout ? `${c.timeout}s` : "none"], ["Frame max", num(c.frame_max)],
      ["Channel limit", num(c.channel_max)], ["TLS", c.ssl ? c.ssl_protocol : "no"],
      ["Received", `${bytes(c.recv_oct)} (${num(c.recv_cnt)} reads)`],
      ["Sent", `${bytes(c.send_oct)} (${num(c.send_cnt)} writes)`],
      ["Published", `${num(c.message_stats.publish)} (${rate(c.message_stats.publish_details)})`],
    ]));
    chart.update({ recv_oct: c.recv_oct_details, send_oct: c.send_oct_details });
    props.replaceChildren(kvTable(c.client_properties));
    const list = await get(path + "/channels");
    chans.replaceChildren(channelRows(list));
  };
  return { title: `Connection ${name}`, element, refresh };
}

export function channelRows(list) {
  return simpleTable(["Channel", "User name", "Mode", "State", "Unconfirmed", "Prefetch",
    "Unacked", "Publish", "Deliver / get", "Ack"], list.map((ch) => [
    link(`#/channels/${enc(ch.name)}`, ch.name), ch.user, modeBadges(ch), stateBadge(ch.state),
    num(ch.messages_unconfirmed), prefetch(ch), num(ch.messages_unacknowledged),
    rate(ch.message_stats.publish_details), rate(ch.message_stats.deliver_get_details),
    rate(ch.message_stats.ack_details)]), "... no channels ...");
}

export function modeBadges(ch) {
  return el("span", {}, ch.confirm ? el("abbr", { class: "badge", title: "Confirm" }, "C") : "",
    ch.transactional ? el("abbr", { class: "badge", title: "Transactional" }, "T") : "");
}

export function prefetch(ch) {
  const parts = [];
  if (ch.prefetch_count) parts.push(num(ch.prefetch_count));
  if (ch.global_prefetch_count) parts.push(num(ch.global_prefetch_count) + " (global)");
  return parts.join(" ");
}
