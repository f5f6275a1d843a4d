// Small SVG line charts over the API's samples (no library). A rate chart plots the change
// per second between consecutive samples of a running count; a count chart plots the samples
// themselves. The legend shows each series' current value (the API's `rate`, or the count).
"use strict";

import { el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const H = 190, LEFT = 48, RIGHT = 10, TOP = 10, BOTTOM = 22;
export const RANGES = [["60|5", "Last minute", 600], ["600|5", "Last ten minutes", 600],
  ["3600|60", "Last hour", 3600], ["28800|600", "Last eight hours", 28800],
  ["86400|1800", "Last day", 86400]];
export const COLORS = ["#e8590c", "#1971c2", "#2f9e44", "#9c36b5", "#f08c00", "#0c8599",
  "#c2255c", "#5c940d", "#495057", "#6741d9", "#087f5b"];

let retention = { global: [600, 3600, 28800, 86400], basic: [600, 3600] };
export function setRetention(policies) { if (policies) retention = policies; }

export function currentRange() {
  return localStorage.getItem("chart-range") || "60|5";
}

// The query parameters a page adds so the API returns samples for the chosen range.
export function rangeParams(kinds) {
  const [age, incr] = currentRange().split("|");
  const out = {};
  for (const kind of kinds || ["msg_rates", "lengths"]) {
    out[kind + "_age"] = age;
    out[kind + "_incr"] = incr;
  }
  return out;
}

export function rangeSelect(onChange, policy) {
  const allowed = retention[policy || "basic"] || retention.basic;
  const max = Math.max(...allowed);
  return el("label", { class: "range" }, "Chart range ",
    el("select", { name: "chart-range", onchange: (ev) => {
      localStorage.setItem("chart-range", ev.target.value);
      onChange();
    } }, RANGES.filter(([, , need]) => need <= max).map(([value, label]) =>
      el("option", { value, selected: value === currentRange() }, label))));
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function niceMax(value) {
  if (value <= 1) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

const short = (v) => v >= 1e6 ? (v / 1e6).toFixed(1) + "M" : v >= 1e4 ? (v / 1e3).toFixed(0) + "k"
  : String(Math.round(v * 100) / 100);

function clock(ms) {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0"))
    .join(":");
}

// series: [{key, label}] ; kind: "rate" | "count".
export class Chart {
  constructor(title, series, kind) {
    this.series = series.map((s, i) => ({ color: COLORS[i % COLORS.length], ...s }));
    this.kind = kind;
    this.svg = svg("svg", { role: "img", class: "chart-svg" });
    this.legend = el("ul", { class: "legend" });
    this.element = el("figure", { class: "chart", "data-kind": kind },
      el("figcaption", {}, title), this.svg, this.legend);
  }

  // details: {key: *_details object}. Each line ends with a live point one increment after
  // the newest sample: the API's current rate (rate charts) or the current count.
  update(details) {
    const incr = Number(currentRange().split("|")[1]) * 1000;
    const lines = this.series.map((s) => {
      const d = details[s.key];
      const points = this.points(d);
      const live = this.kind === "rate" ? d && d.rate : s.current;
      const newest = d && d.samples && d.samples.length ? d.samples[0].timestamp : null;
      if (newest !== null && typeof live === "number") points.push([newest + incr, live]);
      return { ...s, points };
    });
    const all = lines.flatMap((l) => l.points);
    const svgNode = this.svg;
    svgNode.replaceChildren();
    // Drawn at the element's own pixel width so text and lines are never stretched.
    const W = Math.max(240, Math.round(svgNode.getBoundingClientRect().width) || 640);
    svgNode.setAttribute("viewBox", `0 0 ${W} ${H}`);
    // The x axis spans the chosen range, ending at the newest sample.
    const times = all.map((p) => p[0]);
    const t1 = times.length ? Math.max(...times) : Date.now();
    const t0 = t1 - Number(currentRange().split("|")[0]) * 1000;
    const span = Math.max(1, t1 - t0);
    const peak = Math.max(0, ...all.map((p) => p[1]));
    const top = this.kind === "count" ? Math.max(4, niceMax(peak)) : niceMax(peak);
    const x = (t) => LEFT + (W - LEFT - RIGHT) * (t - t0) / span;
    const y = (v) => TOP + (H - TOP - BOTTOM) * (1 - v / top);
    for (let k = 0; k <= 4; k++) {
      const v = top * k / 4;
      svgNode.append(svg("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid" }));
      const label = svg("text", { x: LEFT - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" });
      label.textContent = short(v);
      svgNode.append(label);
    }
    for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
      const label = svg("text", { x: x(t), y: H - 6, class: "axis", "text-anchor": anchor });
      label.textContent = clock(t);
      svgNode.append(label);
    }
    for (const line of lines) {
      if (line.points.length < 2) continue;
      svgNode.append(svg("polyline", { points: line.points.map(([t, v]) =>
        `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "), stroke: line.color,
        class: "series", "data-series": line.key }));
    }
    this.legend.replaceChildren(...lines.map((line) => {
      const d = details[line.key] || {};
      const now = this.kind === "rate" ? d.rate : line.current;
      const text = now === undefined ? "" : this.kind === "rate"
        ? `${(now || 0).toLocaleString("en-US", { maximumFractionDigits: 1 })}/s`
        : (now || 0).toLocaleString("en-US");
      return el("li", { "data-series": line.key },
        el("span", { class: "swatch", style: `background:${line.color}` }),
        el("span", { class: "label" }, line.label), " ", el("b", { class: "value" }, text));
    }));
    const summary = lines.map((l) => l.label + " " + (this.legend.querySelector(
      `[data-series="${l.key}"] .value`).textContent)).join(", ");
    svgNode.setAttribute("aria-label", summary);
  }

  points(details) {
    const samples = (details && details.samples) || [];
    const ordered = [...samples].reverse();  // oldest first
    if (this.kind !== "rate") return ordered.map((s) => [s.timestamp, s.sample]);
    const out = [];
    for (let i = 1; i < ordered.length; i++) {
      const dt = (ordered[i].timestamp - ordered[i - 1].timestamp) / 1000;
      if (dt > 0) out.push([ordered[i].timestamp,
        Math.max(0, (ordered[i].sample - ordered[i - 1].sample) / dt)]);
    }
    return out;
  }
}

// Count charts show the current values passed in alongside the details.
export function countChart(title, series) {
  const chart = new Chart(title, series, "count");
  const update = chart.update.bind(chart);
  chart.update = (details, current) => {
    chart.series.forEach((s) => { s.current = current ? current[s.key] : undefined; });
    update(details);
  };
  return chart;
}
