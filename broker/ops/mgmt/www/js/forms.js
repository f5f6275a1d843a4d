// Form pieces shared by the pages: labelled fields, selects, and the key / value / type
// editor RabbitMQ's UI uses for arguments, headers and policy definitions.
"use strict";

import { el } from "./dom.js";
import { flash } from "./dom.js";

let fieldSeq = 0;

export function field(label, input, help) {
  // The label points at the control itself, or at the first control of a composite one.
  const target = input.matches("input, select, textarea") ? input
    : input.querySelector("input, select, textarea") || input;
  const id = target.id || `f${++fieldSeq}`;
  target.id = id;
  return el("div", { class: "field" }, el("label", { for: id }, label),
    el("div", { class: "control" }, input, help ? el("small", { class: "muted" }, help) : null));
}

export const input = (name, attrs) => el("input", { name, ...(attrs || {}) });
export const textarea = (name, attrs) => el("textarea", { name, ...(attrs || {}) });

export function select(name, options, selected, attrs) {
  return el("select", { name, ...(attrs || {}) }, options.map((o) => {
    const [value, label] = Array.isArray(o) ? o : [o, o];
    return el("option", { value, selected: value === selected }, label);
  }));
}

// A form whose submit handler may be async; errors become a flash with the API's reason.
export function form(id, onsubmit, ...children) {
  const node = el("form", { id, class: "form", onsubmit: async (ev) => {
    ev.preventDefault();
    const button = node.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try { await onsubmit(node); }
    catch (err) { flash(err.message, "error"); }
    finally { if (button) button.disabled = false; }
  } }, children);
  return node;
}

export const submit = (label) => el("div", { class: "actions" },
  el("button", { type: "submit" }, label));

// ---- typed key / value rows ---------------------------------------------------------------
const TYPES = [["string", "String"], ["number", "Number"], ["boolean", "Boolean"],
  ["list", "List"]];

export class KeyValueEditor {
  // known: [[key, label, type]] quick-add links shown under the editor.
  constructor(name, known, defaultType) {
    this.name = name;
    this.defaultType = defaultType || "string";
    this.rows = el("div", { class: "kv-rows" });
    this.element = el("div", { class: "kv-editor", "data-name": name }, this.rows,
      known && known.length ? el("div", { class: "kv-known" }, "Add ", known.map(([key, label,
        type]) => [el("button", { type: "button", class: "link",
        onclick: () => this.set(key, type) }, label), " "])) : null);
    this.addRow();
  }

  addRow(key, type) {
    const k = el("input", { name: `${this.name}-key`, "aria-label": `${this.name} key`,
      value: key || "", oninput: () => this.grow() });
    const v = el("input", { name: `${this.name}-value`, "aria-label": `${this.name} value`,
      oninput: () => this.grow() });
    const t = select(`${this.name}-type`, TYPES, type || this.defaultType,
      { "aria-label": `${this.name} type` });
    const row = el("div", { class: "kv-row" }, k, el("span", {}, "="), v, t);
    this.rows.append(row);
    return row;
  }

  grow() {
    const rows = [...this.rows.children];
    const last = rows[rows.length - 1];
    if (last.querySelector("input").value || last.querySelectorAll("input")[1].value) {
      this.addRow();
    }
  }

  set(key, type) {
    let row = [...this.rows.children].find((r) => r.querySelector("input").value === key);
    if (!row) {
      row = [...this.rows.children].find((r) => !r.querySelector("input").value)
        || this.addRow();
      row.querySelector("input").value = key;
      row.querySelector("select").value = type || this.defaultType;
      this.grow();
    }
    row.querySelectorAll("input")[1].focus();
  }

  clear() {
    this.rows.replaceChildren();
    this.addRow();
  }

  value() {
    const out = {};
    for (const row of this.rows.children) {
      const [k, v] = row.querySelectorAll("input");
      const type = row.querySelector("select").value;
      if (!k.value) continue;
      out[k.value] = convert(k.value, v.value, type);
    }
    return out;
  }
}

function convert(key, text, type) {
  if (type === "number") {
    const n = Number(text);
    if (text.trim() === "" || !Number.isFinite(n)) {
      throw new Error(`The value of '${key}' must be a number.`);
    }
    return n;
  }
  if (type === "boolean") {
    if (!["true", "false"].includes(text.trim().toLowerCase())) {
      throw new Error(`The value of '${key}' must be true or false.`);
    }
    return text.trim().toLowerCase() === "true";
  }
  if (type === "list") return text.split(",").map((s) => s.trim()).filter(Boolean);
  return text;
}
