// Policies and operator policies: lists per vhost, add / update with a definition editor
// (quick-add keys as in RabbitMQ's UI), and a policy's page with delete.
"use strict";

import { del, enc, get, put } from "../api.js";
import { confirmDelete, el, facts, flash, kvTable, link, section, simpleTable } from "../dom.js";
import { KeyValueEditor, field, form, input, select, submit } from "../forms.js";
import { actions, go, isAdmin, selectedVhost, session } from "../state.js";

const APPLY_TO = [["all", "Exchanges and queues"], ["exchanges", "Exchanges"],
  ["queues", "Queues [All types]"], ["classic_queues", "Queues [Classic]"],
  ["quorum_queues", "Queues [Quorum]"], ["streams", "Streams"]];
const POLICY_KEYS = [["max-length", "Max length", "number"],
  ["max-length-bytes", "Max length bytes", "number"], ["overflow", "Overflow behaviour",
    "string"], ["expires", "Auto expire", "number"], ["message-ttl", "Message TTL", "number"],
  ["dead-letter-exchange", "Dead letter exchange", "string"],
  ["dead-letter-routing-key", "Dead letter routing key", "string"],
  ["delivery-limit", "Delivery limit", "number"], ["queue-mode", "Lazy mode", "string"],
  ["single-active-consumer", "Single active consumer", "boolean"],
  ["alternate-exchange", "Alternate exchange", "string"]];
const OPERATOR_KEYS = [["max-length", "Max length", "number"],
  ["max-length-bytes", "Max length bytes", "number"], ["expires", "Auto expire", "number"],
  ["message-ttl", "Message TTL", "number"], ["delivery-limit", "Delivery limit", "number"]];

const listPath = (kind) => {
  const vhost = selectedVhost();
  return `/${kind}${vhost ? "/" + enc(vhost) : ""}`;
};

function table(items, kind) {
  return simpleTable(["Virtual host", "Name", "Pattern", "Apply to", "Definition", "Priority"],
    items.map((p) => [p.vhost, link(`#/policies/${enc(p.vhost)}/${enc(p.name)}` +
      (kind === "operator-policies" ? "?operator" : ""), p.name), p.pattern, p["apply-to"],
    kvTable(p.definition), String(p.priority)]), "... no policies ...");
}

function policyForm(id, kind, keys, applyTo) {
  const vhost = select("vhost", session.vhosts, selectedVhost() || "/");
  const name = input("name", { required: true });
  const pattern = input("pattern", { required: true, placeholder: "^amq\\." });
  const apply = select("apply-to", applyTo, applyTo[0][0]);
  const priority = input("priority", { type: "number", value: "0" });
  const definition = new KeyValueEditor("definition", keys);
  return form(id, async (node) => {
    await put(`/${kind}/${enc(vhost.value)}/${enc(name.value)}`, { pattern: pattern.value,
      "apply-to": apply.value, priority: Number(priority.value || 0),
      definition: definition.value() });
    flash(`Policy ${name.value} set.`);
    node.reset();
    definition.clear();
    actions.refreshNow();
  }, field("Virtual host", vhost), field("Name", name), field("Pattern", pattern),
  field("Apply to", apply), field("Priority", priority),
  field("Definition", definition.element), submit("Add / update policy"));
}

export function policiesPage() {
  const user = el("div", {});
  const operator = el("div", {});
  const element = el("div", {}, section("User policies", user,
    el("h4", {}, "Add / update a policy"),
    policyForm("add-policy", "policies", POLICY_KEYS, APPLY_TO)),
  section("Operator policies", operator, isAdmin() ? [el("h4", {},
    "Add / update an operator policy"), policyForm("add-operator-policy", "operator-policies",
    OPERATOR_KEYS, APPLY_TO.filter(([k]) => k !== "all" && k !== "exchanges"))] : null));
  const refresh = async () => {
    user.replaceChildren(table(await get(listPath("policies")), "policies"));
    operator.replaceChildren(table(await get(listPath("operator-policies")),
      "operator-policies"));
  };
  return { title: "Policies", heading: "Policies", element, refresh };
}

export async function policyDetail(vhost, rawName) {
  const operatorKind = rawName.endsWith("?operator");
  const name = operatorKind ? rawName.slice(0, -"?operator".length) : rawName;
  const kind = operatorKind ? "operator-policies" : "policies";
  const path = `/${kind}/${enc(vhost)}/${enc(name)}`;
  await get(path);
  const info = el("div", {});
  const remove = form("delete-policy", async () => {
    if (!confirmDelete("policy")) return;
    await del(path);
    flash(`Policy ${name} deleted.`);
    go("#/policies");
  }, submit("Delete this policy"));
  const refresh = async () => {
    const p = await get(path);
    info.replaceChildren(facts([["Virtual host", p.vhost], ["Pattern", p.pattern],
      ["Apply to", p["apply-to"]], ["Definition", kvTable(p.definition)],
      ["Priority", String(p.priority)]]));
  };
  return { title: `Policy ${name}`, heading: `${operatorKind ? "Operator policy" : "Policy"} ` +
    name, element: el("div", {}, section("Overview", info), section("Delete this policy",
    remove)), refresh };
}
