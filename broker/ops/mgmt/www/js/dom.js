// DOM and formatting helpers. Everything is built with createElement / textContent: data
// from the broker never becomes markup.
"use strict";

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "value" && (tag === "input" || tag === "textarea")) {
      node.setAttribute("value", value);  // also what a form reset goes back to
      node.value = value;
    } else if (key === "value" && "value" in node) {
      node.value = value;
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, value);
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const link = (href, text, attrs) => el("a", { href, ...(attrs || {}) }, text);
export const h2 = (text) => el("h2", {}, text);

// A collapsible section, as RabbitMQ's pages have ("Overview", "Bindings", ...).
export function section(title, ...content) {
  return el("details", { class: "section", open: true },
    el("summary", {}, el("h3", {}, title)), el("div", { class: "section-body" }, content));
}

// A two-column table of facts: [["Type", "direct"], ...].
export function facts(rows) {
  return el("table", { class: "facts" }, el("tbody", {}, rows.filter(Boolean).map(
    ([label, value]) => el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, value)))));
}

export function simpleTable(headers, rows, empty) {
  if (!rows.length) return el("p", { class: "empty" }, empty || "... no items ...");
  return el("div", { class: "table-wrap" }, el("table", { class: "list" },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) =>
      el("td", typeof c === "number" ? { class: "num" } : {}, c)))))));
}

export function badge(text, title, kind) {
  return el("abbr", { class: "badge" + (kind ? " " + kind : ""), title: title || text }, text);
}

export function stateBadge(state) {
  const kind = { running: "ok", idle: "ok", blocked: "bad", blocking: "warn", flow: "warn",
                 closed: "bad", down: "bad", stopped: "bad" }[state] || "";
  return el("span", { class: "state " + kind }, state || "?");
}

// ---- formatting ---------------------------------------------------------------------------
export function num(value) {
  if (value === undefined || value === null || value === "") return "";
  if (typeof value !== "number") return String(value);
  return value.toLocaleString("en-US", { maximumFractionDigits: 2 });
}

export function rate(details) {
  if (!details || typeof details.rate !== "number") return "";
  return details.rate.toLocaleString("en-US", { maximumFractionDigits: 1 }) + "/s";
}

export function bytes(value) {
  if (typeof value !== "number") return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) { value /= 1024; i++; }
  return (i ? value.toFixed(1) : String(value)) + " " + units[i];
}

export function duration(ms) {
  let s = Math.floor((ms || 0) / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function timestamp(value) {
  if (value === undefined || value === null || value === "") return "";
  const date = typeof value === "number" ? new Date(value) : new Date(String(value)
    .replace(" ", "T") + "Z");
  if (isNaN(date.getTime())) return String(value);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function value(v) {
  if (v === undefined || v === null) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// A key/value table (arguments, headers, client properties).
export function kvTable(obj) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return el("span", { class: "muted" }, "none");
  return el("table", { class: "kv" }, el("tbody", {}, entries.map(([k, v]) =>
    el("tr", {}, el("th", { scope: "row" }, k),
      el("td", {}, v && typeof v === "object" && !Array.isArray(v) ? kvTable(v) : value(v))))));
}

// A bar with used / limit, as the overview's node table shows memory and disk.
export function meter(used, limit, text, alarm) {
  const ratio = limit ? Math.max(0, Math.min(1, used / limit)) : 0;
  return el("div", { class: "meter" + (alarm ? " alarm" : ""), title: text },
    el("div", { class: "meter-fill", style: `width:${(ratio * 100).toFixed(1)}%` }),
    el("span", {}, text));
}

// ---- messages to the person ---------------------------------------------------------------
let flashTimer = null;

export function flash(text, kind) {
  const box = document.getElementById("flash");
  clearTimeout(flashTimer);
  box.replaceChildren(el("p", { class: kind === "error" ? "error" : "notice" }, text,
    el("button", { type: "button", class: "close", "aria-label": "Dismiss",
                   onclick: () => box.replaceChildren() }, "×")));
  if (kind !== "error") flashTimer = setTimeout(() => box.replaceChildren(), 8000);
}

export function confirmDelete(what) {
  return window.confirm(`Are you sure? This ${what} cannot be recovered after deletion.`);
}
