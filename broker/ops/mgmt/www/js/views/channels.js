// Channels: the list (mode, state, prefetch, unacked, message rates) and a channel's page
// (details, message rates chart, consumers).
"use strict";

import { enc, get, query } from "../api.js";
import { Chart, rangeParams, rangeSelect } from "../chart.js";
import { el, facts, link, num, rate, section, simpleTable, stateBadge } from "../dom.js";
import { ListView } from "../table.js";
import { selectedVhost } from "../state.js";
import { connLink, modeBadges, prefetch } from "./connections.js";
import { MESSAGE_SERIES, messageDetails } from "./overview.js";

export async function view(parts) {
  if (parts.length > 1 && parts[1]) return detail(parts.slice(1).join("/"));
  const vhost = selectedVhost();
  const list = new ListView({
    id: "channels", empty: "... no channels ...",
    path: () => vhost ? `/vhosts/${enc(vhost)}/channels` : "/channels",
    columns: [
      { label: "Channel", sort: "name", render: (c) => link(`#/channels/${enc(c.name)}`, c.name) },
      { label: "Virtual host", sort: "vhost", render: (c) => c.vhost },
      { label: "User name", sort: "user", render: (c) => c.user },
      { label: "Mode", render: modeBadges },
      { label: "State", sort: "state", render: (c) => stateBadge(c.state) },
      { label: "Unconfirmed", sort: "messages_unconfirmed", num: true,
        render: (c) => num(c.messages_unconfirmed) },
      { label: "Prefetch", sort: "prefetch_count", num: true, render: prefetch },
      { label: "Unacked", sort: "messages_unacknowledged", num: true,
        render: (c) => num(c.messages_unacknowledged) },
      { label: "Publish", sort: "message_stats.publish_details.rate", num: true,
        render: (c) => rate(c.message_stats.publish_details) },
      { label: "Confirm", sort: "message_stats.confirm_details.rate", num: true,
        render: (c) => rate(c.message_stats.confirm_details) },
      { label: "Deliver / get", sort: "message_stats.deliver_get_details.rate", num: true,
        render: (c) => rate(c.message_stats.deliver_get_details) },
      { label: "Ack", sort: "message_stats.ack_details.rate", num: true,
        render: (c) => rate(c.message_stats.ack_details) },
    ] });
  return { title: "Channels", refresh: () => list.refresh(),
    element: el("div", { class: "page" }, el("h2", {}, "Channels"), list.element) };
}

async function detail(name) {
  const path = `/channels/${enc(name)}`;
  await get(path);
  const info = el("div", {});
  const consumers = el("div", {});
  let refresh = null;
  const chart = new Chart("Message rates", MESSAGE_SERIES, "rate");
  const element = el("div", { class: "page" }, el("h2", {}, "Channel ", el("b", {}, name)),
    section("Overview", info),
    section("Message rates", rangeSelect(() => refresh()), chart.element),
    section("Consumers", consumers));
  refresh = async () => {
    const ch = await get(path + query(rangeParams(["msg_rates"])));
    info.replaceChildren(facts([
      ["Connection", connLink(ch.connection_details.name)], ["Virtual host", ch.vhost],
      ["Username", ch.user], ["Mode", modeBadges(ch)], ["State", stateBadge(ch.state)],
      ["Prefetch count", num(ch.prefetch_count)],
      ["Global prefetch count", num(ch.global_prefetch_count)],
      ["Messages unacknowledged", num(ch.messages_unacknowledged)],
      ["Messages unconfirmed", num(ch.messages_unconfirmed)],
      ["Messages uncommitted", num(ch.messages_uncommitted)],
    ]));
    chart.update(messageDetails(ch.message_stats));
    consumers.replaceChildren(simpleTable(["Consumer tag", "Queue", "Ack required", "Exclusive",
      "Prefetch count", "Arguments"], (ch.consumer_details || []).map((c) => [
      c.consumer_tag, link(`#/queues/${enc(c.queue.vhost)}/${enc(c.queue.name)}`, c.queue.name),
      c.ack_required ? "●" : "○", c.exclusive ? "●" : "○", num(c.prefetch_count),
      JSON.stringify(c.arguments)]), "... no consumers ..."));
  };
  return { title: `Channel ${name}`, element, refresh };
}
