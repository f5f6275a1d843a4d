// Admin: users (tags, password, permissions, topic permissions), virtual hosts, policies and
// operator policies, limits, and the cluster's nodes. Sub-pages under one tab, as in
// RabbitMQ's UI.
"use strict";

import { del, enc, get, put, query } from "../api.js";
import { Chart, countChart, rangeParams, rangeSelect } from "../chart.js";
import { bytes, confirmDelete, el, facts, flash, link, num, rate, section,
  simpleTable } from "../dom.js";
import { field, form, input, select, submit } from "../forms.js";
import { ListView } from "../table.js";
import { actions, canPolicy, go, isAdmin, selectedVhost, session } from "../state.js";
import { LENGTH_SERIES, MESSAGE_SERIES, lengthDetails, messageDetails } from "./overview.js";
import { policiesPage, policyDetail } from "./policies.js";

const SUBPAGES = [["users", "Users"], ["vhosts", "Virtual Hosts"], ["policies", "Policies"],
  ["limits", "Limits"], ["cluster", "Cluster"]];

function subnav(active) {
  const allowed = isAdmin() ? SUBPAGES : SUBPAGES.filter(([key]) => key === "policies");
  return el("nav", { class: "subnav", "aria-label": "Admin" }, allowed.map(([key, label]) =>
    el("a", { href: "#/" + key, class: key === active ? "active" : "",
              "aria-current": key === active ? "page" : null }, label)));
}

function page(active, title, ...content) {
  return el("div", { class: "page admin" }, subnav(active), el("h2", {}, title), content);
}

export async function view(parts) {
  let [which, ...rest] = parts;
  if (which === "admin") which = isAdmin() ? "users" : "policies";
  if (!isAdmin() && !(which === "policies" && canPolicy())) {
    return { title: "Admin", element: page(which, "Admin", el("p", { class: "error" },
      "Only administrators can see this page.")) };
  }
  if (which === "users") return rest[0] ? userDetail(rest[0]) : usersPage();
  if (which === "vhosts") return rest[0] ? vhostDetail(rest[0]) : vhostsPage();
  if (which === "policies") {
    const built = rest.length >= 2 ? await policyDetail(rest[0], rest.slice(1).join("/"))
      : policiesPage();
    return { ...built, element: page("policies", built.heading, built.element) };
  }
  if (which === "limits") return limitsPage();
  return clusterPage();
}

// ---- users --------------------------------------------------------------------------------
const TAG_LINKS = [["administrator", "Admin"], ["monitoring", "Monitoring"],
  ["policymaker", "Policymaker"], ["management", "Management"],
  ["impersonator", "Impersonator"], ["", "None"]];

function tagsField(value) {
  const tags = input("tags", { value: value || "", size: "40" });
  const links = el("span", { class: "kv-known" }, "Set ", TAG_LINKS.map(([tag, label]) => [
    el("button", { type: "button", class: "link", onclick: () => {
      if (!tag) { tags.value = ""; return; }
      const now = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
      if (!now.includes(tag)) now.push(tag);
      tags.value = now.join(", ");
    } }, label), " "]));
  return [tags, el("div", {}, tags, links)];
}

function usersPage() {
  let access = {};
  const list = new ListView({
    id: "users", empty: "... no users ...", path: () => "/users",
    columns: [
      { label: "Name", sort: "name", render: (u) => link(`#/users/${enc(u.name)}`, u.name) },
      { label: "Tags", render: (u) => (Array.isArray(u.tags) ? u.tags : String(u.tags || "")
        .split(",")).filter(Boolean).join(", ") },
      { label: "Can access virtual hosts", render: (u) => (access[u.name] || [])
        .join(", ") || el("span", { class: "muted" }, "No access") },
      { label: "Has password", render: (u) => u.password_hash ? "●" : "○" },
    ] });
  const name = input("username", { required: true, autocomplete: "off" });
  const password = input("password", { type: "password", autocomplete: "new-password" });
  const confirm = input("password-confirm", { type: "password", autocomplete: "new-password" });
  const [tags, tagsControl] = tagsField("");
  const add = form("add-user", async (node) => {
    if (password.value !== confirm.value) throw new Error("Passwords do not match.");
    const body = { tags: tags.value };
    if (password.value) body.password = password.value; else body.password_hash = "";
    await put(`/users/${enc(name.value)}`, body);
    flash(`User ${name.value} added.`);
    node.reset();
    actions.refreshNow();
  }, field("Username", name), field("Password", password),
  field("Password (confirm)", confirm, "Leave both empty for a user without a password"),
  field("Tags", tagsControl), submit("Add user"));
  const refresh = async () => {
    const perms = await get("/permissions");
    access = {};
    for (const p of perms) (access[p.user] = access[p.user] || []).push(p.vhost);
    await list.refresh();
  };
  return { title: "Users", refresh, element: page("users", "Users", list.element,
    section("Add a user", add)) };
}

export function permissionsTable(perms, show, onClear) {
  return simpleTable([show === "user" ? "User" : "Virtual host", "Configure regexp",
    "Write regexp", "Read regexp", ""], perms.map((p) => [
    show === "user" ? link(`#/users/${enc(p.user)}`, p.user)
      : link(`#/vhosts/${enc(p.vhost)}`, p.vhost), p.configure, p.write, p.read,
    el("button", { type: "button", class: "secondary", onclick: () => onClear(p) }, "Clear")]),
  "... no permissions ...");
}

export function topicTable(perms, show, onClear) {
  return simpleTable([show === "user" ? "User" : "Virtual host", "Exchange", "Write regexp",
    "Read regexp", ""], perms.map((p) => [show === "user" ? p.user : p.vhost, p.exchange,
    p.write, p.read, el("button", { type: "button", class: "secondary",
      onclick: () => onClear(p) }, "Clear")]), "... no topic permissions ...");
}

async function clearPermission(p) {
  await del(`/permissions/${enc(p.vhost)}/${enc(p.user)}`);
  flash("Permission cleared.");
  actions.refreshNow();
}

async function clearTopic(p) {
  await del(`/topic-permissions/${enc(p.vhost)}/${enc(p.user)}` +
    query({ exchange: p.exchange }));
  flash("Topic permission cleared.");
  actions.refreshNow();
}

export function permissionForm(fixed) {
  const vhost = fixed.vhost ? null : select("vhost", session.vhosts, selectedVhost() || "/");
  const user = fixed.user ? null : input("user", { required: true });
  const [c, w, r] = ["configure", "write", "read"].map((n) => input(n, { value: ".*" }));
  return form("set-permission", async () => {
    const v = fixed.vhost || vhost.value, u = fixed.user || user.value;
    await put(`/permissions/${enc(v)}/${enc(u)}`, { configure: c.value, write: w.value,
      read: r.value });
    flash(`Permission set for ${u} in ${v}.`);
    actions.refreshNow();
  }, el("h4", {}, "Set permission"), vhost ? field("Virtual host", vhost) : null,
  user ? field("User", user) : null, field("Configure regexp", c), field("Write regexp", w),
  field("Read regexp", r), submit("Set permission"));
}

export function topicForm(fixed) {
  const vhost = fixed.vhost ? null : select("vhost", session.vhosts, selectedVhost() || "/");
  const user = fixed.user ? null : input("user", { required: true });
  const exchange = input("exchange", { value: "amq.topic" });
  const [w, r] = ["write", "read"].map((n) => input(n, { value: ".*" }));
  return form("set-topic-permission", async () => {
    const v = fixed.vhost || vhost.value, u = fixed.user || user.value;
    await put(`/topic-permissions/${enc(v)}/${enc(u)}`, { exchange: exchange.value,
      write: w.value, read: r.value });
    flash(`Topic permission set for ${u} in ${v}.`);
    actions.refreshNow();
  }, el("h4", {}, "Set topic permission"), vhost ? field("Virtual host", vhost) : null,
  user ? field("User", user) : null, field("Exchange", exchange), field("Write regexp", w),
  field("Read regexp", r), submit("Set topic permission"));
}

async function userDetail(name) {
  const path = `/users/${enc(name)}`;
  const u = await get(path);
  const info = el("div", {});
  const perms = el("div", {});
  const topics = el("div", {});
  const password = input("password", { type: "password", autocomplete: "new-password" });
  const [tags, tagsControl] = tagsField((u.tags || []).join(", "));
  const update = form("update-user", async () => {
    const body = { tags: tags.value };
    if (password.value) body.password = password.value;
    await put(path, body);
    flash(`User ${name} updated.`);
    password.value = "";
    actions.refreshNow();
  }, field("Password", password, "Leave empty to keep the current password"),
  field("Tags", tagsControl), submit("Update user"));
  const remove = form("delete-user", async () => {
    if (!confirmDelete("user")) return;
    await del(path);
    flash(`User ${name} deleted.`);
    go("#/users");
  }, submit("Delete this user"));
  const element = page("users", `User ${name}`, section("Overview", info),
    section("Permissions", perms, permissionForm({ user: name })),
    section("Topic permissions", topics, topicForm({ user: name })),
    section("Update this user", update), section("Delete this user", remove));
  const refresh = async () => {
    const now = await get(path);
    info.replaceChildren(facts([["Tags", (now.tags || []).join(", ") || "(none)"],
      ["Has password", now.password_hash ? "yes" : "no"],
      ["Hashing algorithm", now.hashing_algorithm]]));
    perms.replaceChildren(permissionsTable(await get(path + "/permissions"), "vhost",
      (p) => clearPermission(p).catch((err) => flash(err.message, "error"))));
    topics.replaceChildren(topicTable(await get(path + "/topic-permissions"), "vhost",
      (p) => clearTopic(p).catch((err) => flash(err.message, "error"))));
  };
  return { title: `User ${name}`, element, refresh };
}

// ---- virtual hosts ------------------------------------------------------------------------
function vhostsPage() {
  const list = new ListView({
    id: "vhosts", empty: "... no virtual hosts ...", path: () => "/vhosts",
    columns: [
      { label: "Name", sort: "name", render: (v) => link(`#/vhosts/${enc(v.name)}`, v.name) },
      { label: "Description", render: (v) => v.description || "" },
      { label: "Tags", render: (v) => (v.tags || []).join(", ") },
      { label: "Default queue type", render: (v) => v.default_queue_type || "classic" },
      { label: "Ready", sort: "messages_ready", num: true, render: (v) => num(v.messages_ready) },
      { label: "Unacked", sort: "messages_unacknowledged", num: true,
        render: (v) => num(v.messages_unacknowledged) },
      { label: "Total", sort: "messages", num: true, render: (v) => num(v.messages) },
      { label: "From client", num: true, render: (v) => bytes(v.recv_oct_details.rate) + "/s" },
      { label: "To client", num: true, render: (v) => bytes(v.send_oct_details.rate) + "/s" },
      { label: "Publish", num: true, render: (v) => rate(v.message_stats.publish_details) },
      { label: "Deliver / get", num: true,
        render: (v) => rate(v.message_stats.deliver_get_details) },
    ] });
  const name = input("name", { required: true });
  const description = input("description", { size: "40" });
  const tags = input("tags");
  const type = select("default_queue_type", ["classic", "quorum", "stream"], "classic");
  const add = form("add-vhost", async (node) => {
    await put(`/vhosts/${enc(name.value)}`, { description: description.value,
      tags: tags.value, default_queue_type: type.value });
    flash(`Virtual host ${name.value} added.`);
    node.reset();
    await actions.reloadVhosts();
    actions.refreshNow();
  }, field("Name", name), field("Description", description), field("Tags", tags),
  field("Default queue type", type), submit("Add virtual host"));
  return { title: "Virtual Hosts", refresh: () => list.refresh(),
    element: page("vhosts", "Virtual Hosts", list.element, section("Add a new virtual host",
      add)) };
}

async function vhostDetail(name) {
  const path = `/vhosts/${enc(name)}`;
  await get(path);
  const info = el("div", {});
  const perms = el("div", {});
  const topics = el("div", {});
  let refresh = null;
  const lengths = countChart("Queued messages", LENGTH_SERIES);
  const rates = new Chart("Message rates", MESSAGE_SERIES, "rate");
  const remove = form("delete-vhost", async () => {
    if (!confirmDelete("virtual host")) return;
    await del(path);
    flash(`Virtual host ${name} deleted.`);
    await actions.reloadVhosts();
    go("#/vhosts");
  }, submit("Delete this virtual host"));
  const element = page("vhosts", `Virtual Host ${name}`,
    section("Overview", rangeSelect(() => refresh(), "global"), el("div", { class: "chart-row" },
      lengths.element, rates.element), info),
    section("Permissions", perms, permissionForm({ vhost: name })),
    section("Topic permissions", topics, topicForm({ vhost: name })),
    section("Delete this virtual host", remove));
  refresh = async () => {
    const v = await get(path + query(rangeParams(["msg_rates", "lengths"])));
    lengths.update(...lengthDetails(v));
    rates.update(messageDetails(v.message_stats));
    info.replaceChildren(facts([["Description", v.description || ""],
      ["Tags", (v.tags || []).join(", ")], ["Default queue type", v.default_queue_type],
      ["Tracing", v.tracing ? "yes" : "no"]]));
    perms.replaceChildren(permissionsTable(await get(path + "/permissions"), "user",
      (p) => clearPermission(p).catch((err) => flash(err.message, "error"))));
    topics.replaceChildren(topicTable(await get(path + "/topic-permissions"), "user",
      (p) => clearTopic(p).catch((err) => flash(err.message, "error"))));
  };
  return { title: `Virtual Host ${name}`, element, refresh };
}

// ---- limits -------------------------------------------------------------------------------
function limitsPage() {
  const vhostTable = el("div", {});
  const userTable = el("div", {});
  const clearButton = (path) => el("button", { type: "button", class: "secondary",
    onclick: async () => {
      try { await del(path); flash("Limit cleared."); actions.refreshNow(); }
      catch (err) { flash(err.message, "error"); }
    } }, "Clear");
  const limitForm = (id, kind, names) => {
    const who = kind === "vhost" ? select("vhost", session.vhosts, selectedVhost() || "/")
      : input("user", { required: true });
    const which = select("limit", names, names[0]);
    const value = input("value", { type: "number", min: "-1", required: true });
    return form(id, async (node) => {
      await put(`/${kind}-limits/${enc(who.value)}/${which.value}`,
        { value: Number(value.value) });
      flash("Limit set.");
      node.reset();
      actions.refreshNow();
    }, field(kind === "vhost" ? "Virtual host" : "User", who), field("Limit", which),
    field("Value", value, "-1 means no limit"), submit("Set / update limit"));
  };
  const refresh = async () => {
    const vl = await get("/vhost-limits");
    vhostTable.replaceChildren(simpleTable(["Virtual host", "Limit", "Value", ""],
      vl.flatMap((v) => Object.entries(v.value).map(([k, n]) => [v.vhost, k, num(n),
        clearButton(`/vhost-limits/${enc(v.vhost)}/${k}`)])), "... no vhost limits ..."));
    const ul = await get("/user-limits");
    userTable.replaceChildren(simpleTable(["User", "Limit", "Value", ""],
      ul.flatMap((u) => Object.entries(u.value).map(([k, n]) => [u.user, k, num(n),
        clearButton(`/user-limits/${enc(u.user)}/${k}`)])), "... no user limits ..."));
  };
  return { title: "Limits", refresh, element: page("limits", "Limits",
    section("Virtual host limits", vhostTable, limitForm("set-vhost-limit", "vhost",
      ["max-connections", "max-queues"])),
    section("User limits", userTable, limitForm("set-user-limit", "user",
      ["max-connections", "max-channels"]))) };
}

// ---- cluster ------------------------------------------------------------------------------
function clusterPage() {
  const nameBox = el("div", {});
  const nodes = el("div", {});
  const newName = input("cluster-name", { size: "40" });
  const rename = form("cluster-name-form", async () => {
    await put("/cluster-name", { name: newName.value });
    flash("Cluster name changed.");
    actions.refreshNow();
  }, field("New name", newName), submit("Change name"));
  const refresh = async () => {
    const c = await get("/cluster-name");
    nameBox.replaceChildren(facts([["Cluster name", c.name]]));
    if (!newName.value) newName.value = c.name;
    const list = await get("/nodes");
    nodes.replaceChildren(simpleTable(["Name", "Type", "Running", "Uptime", "Memory",
      "Processors", "Enabled plugins"], list.map((n) => [n.name, n.type,
      n.running ? "●" : "○", `${Math.floor(n.uptime / 1000)}s`, bytes(n.mem_used),
      num(n.processors), (n.enabled_plugins || []).join(", ")])));
  };
  return { title: "Cluster", refresh, element: page("cluster", "Cluster",
    section("Cluster name", nameBox, rename), section("Nodes", nodes)) };
}

