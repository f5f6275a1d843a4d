// What every page may ask of the shell: the logged-in user, the selected vhost, and a few
// actions the shell (app.js) fills in. Kept apart from app.js so pages do not import it.
"use strict";

export const session = { user: null, tags: [], vhosts: [] };

export const selectedVhost = () => localStorage.getItem("vhost") || "";
export const isAdmin = () => session.tags.includes("administrator");
export const canPolicy = () => isAdmin() || session.tags.includes("policymaker");

export function go(hash) {
  if (location.hash === hash) actions.route(); else location.hash = hash;
}

export const actions = {
  route: () => {},
  refreshNow: () => {},
  reloadVhosts: async () => {},
};
