// A list page's table: filter (substring or regex), sort by a column, page through, all done
// by the API (name / use_regex / sort / sort_reverse / page / page_size), as RabbitMQ's UI
// does. Each list remembers its settings in localStorage under its id.
"use strict";

import { get, query } from "./api.js";
import { el } from "./dom.js";

const PAGE_SIZES = [20, 50, 100, 500];

export class ListView {
  // opts: id, path() -> API path, columns [{label, sort, render(item), num}], empty text,
  // params() -> extra query parameters (chart ranges), onData(items) after each load.
  constructor(opts) {
    this.opts = opts;
    const saved = JSON.parse(localStorage.getItem("list:" + opts.id) || "{}");
    this.state = { page: 1, pageSize: 100, filter: "", regex: false, sort: opts.sort || "",
                   reverse: false, ...saved };
    this.filter = el("input", { type: "search", name: "filter", value: this.state.filter,
      "aria-label": "Filter by name", placeholder: "Filter by name",
      oninput: () => this.changed({ filter: this.filter.value, page: 1 }, 250) });
    this.regex = el("input", { type: "checkbox", name: "regex", checked: this.state.regex,
      onchange: () => this.changed({ regex: this.regex.checked, page: 1 }) });
    this.pageSize = el("select", { name: "page-size", "aria-label": "Page size",
      onchange: () => this.changed({ pageSize: Number(this.pageSize.value), page: 1 }) },
      PAGE_SIZES.map((n) => el("option", { value: String(n), selected: n === this.state.pageSize },
        String(n))));
    this.pager = el("span", { class: "pager" });
    this.summary = el("span", { class: "muted summary" });
    this.body = el("div", { class: "table-wrap" });
    this.element = el("div", { class: "list-view", id: opts.id },
      el("div", { class: "list-controls" },
        el("label", { class: "filter" }, "Filter ", this.filter),
        el("label", { class: "check" }, this.regex, " Regex"),
        this.summary, this.pager,
        el("label", {}, "Page size ", this.pageSize)),
      this.body);
    this.timer = null;
    this.items = [];
  }

  changed(patch, delay) {
    Object.assign(this.state, patch);
    localStorage.setItem("list:" + this.opts.id, JSON.stringify(this.state));
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh().catch((err) => this.fail(err)), delay || 0);
  }

  fail(err) {
    this.body.replaceChildren(el("p", { class: "error" }, err.message));
  }

  async refresh() {
    const s = this.state;
    const params = { page: s.page, page_size: s.pageSize, name: s.filter,
      use_regex: s.regex && s.filter ? "true" : "", sort: s.sort,
      sort_reverse: s.sort && s.reverse ? "true" : "", ...(this.opts.params ? this.opts.params() : {}) };
    const data = await get(this.opts.path() + query(params));
    if (data.page_count && s.page > data.page_count) {
      this.changed({ page: data.page_count });
      return;
    }
    this.items = data.items;
    this.render(data);
    if (this.opts.onData) this.opts.onData(data.items);
  }

  render(data) {
    const cols = this.opts.columns;
    const s = this.state;
    const head = el("tr", {}, cols.map((c) => {
      if (!c.sort) return el("th", { scope: "col" }, c.label);
      const active = s.sort === c.sort;
      return el("th", { scope: "col", "aria-sort": active ? (s.reverse ? "descending"
        : "ascending") : "none" }, el("button", { type: "button", class: "sort",
        onclick: () => this.changed({ sort: c.sort, reverse: active ? !s.reverse : false }) },
        c.label, active ? (s.reverse ? " ▼" : " ▲") : ""));
    }));
    const rows = data.items.map((item) => el("tr", {}, cols.map((c) =>
      el("td", c.num ? { class: "num" } : {}, c.render(item)))));
    this.body.replaceChildren(data.items.length
      ? el("table", { class: "list" }, el("thead", {}, head), el("tbody", {}, rows))
      : el("p", { class: "empty" }, this.opts.empty || "... no items ..."));
    this.summary.textContent = data.filtered_count === data.total_count
      ? `${data.total_count} item${data.total_count === 1 ? "" : "s"}`
      : `${data.filtered_count} of ${data.total_count} items match`;
    const pages = Math.max(1, data.page_count || 1);
    this.pager.replaceChildren(...(pages > 1 ? [
      el("button", { type: "button", class: "secondary", disabled: s.page <= 1,
        "aria-label": "Previous page", onclick: () => this.changed({ page: s.page - 1 }) }, "‹"),
      ` Page ${s.page} of ${pages} `,
      el("button", { type: "button", class: "secondary", disabled: s.page >= pages,
        "aria-label": "Next page", onclick: () => this.changed({ page: s.page + 1 }) }, "›"),
    ] : []));
  }
}
