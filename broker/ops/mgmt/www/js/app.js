// burrowmq management UI: the shell. Login, the header (refresh interval, vhost selector,
// user), hash routing to the pages in views/, and the refresh loop. No build step: plain ES
// modules served as static files. #/login/<user>/<password> logs in directly, as in
// RabbitMQ's UI; deep links such as #/queues/%2F/name open a page directly.
"use strict";

import { api, auth, get } from "./api.js";
import { setRetention } from "./chart.js";
import { el, flash } from "./dom.js";
import * as admin from "./views/admin.js";
import * as channels from "./views/channels.js";
import * as connections from "./views/connections.js";
import * as exchanges from "./views/exchanges.js";
import * as overview from "./views/overview.js";
import * as queues from "./views/queues.js";
import { actions, canPolicy, selectedVhost, session } from "./state.js";

const main = document.getElementById("main");
const PAGES = { "": overview, overview, connections, channels, exchanges, queues,
  users: admin, vhosts: admin, policies: admin, limits: admin, cluster: admin, admin };
const TAB_OF = { "": "overview", users: "admin", vhosts: "admin", policies: "admin",
  limits: "admin", cluster: "admin" };

let seq = 0;
let timer = null;
let current = null;

async function reloadVhosts() {
  const list = await get("/vhosts?columns=name");
  session.vhosts = list.map((v) => v.name).sort();
  const select = document.getElementById("vhost");
  const chosen = selectedVhost();
  if (chosen && !session.vhosts.includes(chosen)) localStorage.removeItem("vhost");
  select.replaceChildren(el("option", { value: "" }, "All"),
    ...session.vhosts.map((v) => el("option", { value: v, selected: v === chosen }, v)));
}

function loginView(message, detail) {
  document.getElementById("nav").hidden = true;
  document.getElementById("session").hidden = true;
  const user = el("input", { name: "username", id: "username", autocomplete: "username",
                             required: true });
  const pass = el("input", { name: "password", id: "password", type: "password",
                             autocomplete: "current-password" });
  const form = el("form", { id: "login", class: "form login", onsubmit: async (ev) => {
    ev.preventDefault();
    auth.set(user.value, pass.value);
    route();
  } },
  el("div", { class: "field" }, el("label", { for: "username" }, "Username"), user),
  el("div", { class: "field" }, el("label", { for: "password" }, "Password"), pass),
  el("div", { class: "actions" }, el("button", { type: "submit" }, "Login")));
  main.replaceChildren(el("section", { class: "login-box" },
    el("h2", {}, "Log in"),
    message ? el("div", { id: "login-status", class: "error", role: "alert" },
      el("p", {}, message), detail ? el("p", {}, detail) : null) : null,
    form));
  user.focus();
}

// What RabbitMQ's UI says for a refused login: "Login failed", plus the broker's reason when
// it says more than that (not a management user, guest from a remote host).
function loginFailure(err) {
  const reason = err.message;
  const generic = !reason || /^not_?authori[sz]ed$/i.test(reason) || /^HTTP 401/.test(reason);
  return ["Login failed", generic ? null : reason];
}

async function route() {
  const mine = ++seq;
  const live = () => mine === seq;
  clearInterval(timer);
  if (current && current.leave) current.leave();
  current = null;
  const hash = location.hash || "#/";
  const parts = hash.slice(2).split("/").map((p) => {
    try { return decodeURIComponent(p); } catch (err) { return p; }
  });
  if (parts[0] === "login" && parts.length >= 3) {
    auth.set(parts[1], parts.slice(2).join("/"));
    location.replace("#/");
    return;
  }
  if (!auth.get()) { loginView(); return; }
  let who;
  try { who = await api("GET", "/whoami"); }
  catch (err) {
    if (!live()) return;
    auth.clear();
    if (err.status === 401) loginView(...loginFailure(err));
    else loginView(err.message);
    return;
  }
  if (!live()) return;
  session.user = who.name;
  session.tags = who.tags || [];
  if (!session.vhosts.length) {
    try {
      await reloadVhosts();
      const o = await get("/overview?columns=sample_retention_policies,rabbitmq_version");
      setRetention(o.sample_retention_policies);
      document.getElementById("version").textContent = `RabbitMQ ${o.rabbitmq_version} compatible`;
    } catch (err) { flash(err.message, "error"); }
  }
  document.getElementById("nav").hidden = false;
  document.getElementById("session").hidden = false;
  document.getElementById("who").textContent = who.name;
  document.getElementById("admin-tab").hidden = !canPolicy();
  const page = PAGES[parts[0]];
  const tab = TAB_OF[parts[0]] ?? parts[0];
  for (const a of document.querySelectorAll("#nav a")) {
    const on = a.dataset.tab === tab;
    a.classList.toggle("active", on);
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (!page) {
    main.replaceChildren(el("h2", {}, "Not found"),
      el("p", {}, "There is no page at this address. "), el("a", { href: "#/" }, "Overview"));
    return;
  }
  let view;
  try {
    view = await page.view(parts, live);
    if (!live() || !view) return;
    current = view;
    main.replaceChildren(view.element);
    document.title = `burrowmq: ${view.title}`;
    await refresh(view, live);
  } catch (err) {
    if (!live()) return;
    main.replaceChildren(el("h2", {}, err.status === 404 ? "Not found" : "Error"),
      el("p", { class: "error", role: "alert" }, err.status === 404
        ? "The object you asked for does not exist (any more)." : err.message),
      el("p", {}, el("a", { href: "#/" + (parts[0] || "") }, "Back to the list")));
    return;
  }
  schedule(view, live);
}

async function refresh(view, live) {
  if (!view.refresh) return;
  await view.refresh();
  if (live()) {
    document.getElementById("refreshed").textContent =
      "Refreshed " + new Date().toLocaleTimeString("en-GB");
  }
}

function schedule(view, live) {
  clearInterval(timer);
  const every = Number(localStorage.getItem("refresh") ?? "5000");
  if (!every || !view.refresh) return;
  timer = setInterval(() => {
    if (document.hidden) return;
    refresh(view, live).catch((err) => {
      if (err.status === 401) { route(); return; }
      flash("Refresh failed: " + err.message, "error");
    });
  }, every);
}

// Pages call this after a change (add, delete, publish) to show fresh data at once.
actions.refreshNow = () => {
  if (current) refresh(current, () => true).catch((err) => flash(err.message, "error"));
};
actions.route = () => route();
actions.reloadVhosts = reloadVhosts;
const refreshSelect = document.getElementById("refresh");
refreshSelect.value = localStorage.getItem("refresh") ?? "5000";
refreshSelect.addEventListener("change", () => {
  localStorage.setItem("refresh", refreshSelect.value);
  if (current) schedule(current, () => true);
});
document.getElementById("vhost").addEventListener("change", (ev) => {
  if (ev.target.value) localStorage.setItem("vhost", ev.target.value);
  else localStorage.removeItem("vhost");
  route();
});
document.getElementById("logout").addEventListener("click", () => {
  auth.clear();
  session.vhosts = [];
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", () => {
  route().then(() => main.focus({ preventScroll: true }));
});
route();
