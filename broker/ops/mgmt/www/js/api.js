// The management API client: basic auth from sessionStorage, JSON in and out, and errors
// that carry the API's own reason (RabbitMQ's {"error", "reason"} bodies) so views can show
// what the broker said rather than an HTTP status.
"use strict";

const KEY = "burrowmq-auth";

export const auth = {
  get: () => sessionStorage.getItem(KEY),
  set: (user, password) => sessionStorage.setItem(KEY, btoa(unescape(encodeURIComponent(
    user + ":" + password)))),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const reason = body && typeof body.reason === "string" ? body.reason
      : body && body.reason !== undefined ? JSON.stringify(body.reason) : fallback;
    super(reason || `HTTP ${status}`);
    this.status = status;
    this.kind = body && body.error;
  }
}

export const enc = (name) => encodeURIComponent(name);

export async function api(method, path, body, headers) {
  // Logged out (a refresh still running after "Log out"): answer as the API would, without
  // asking it. "Basic " with nothing after it is a malformed header (a 400, as RabbitMQ),
  // and no header at all a 401 with a Basic challenge, which makes browsers pop up a dialog.
  const stored = auth.get();
  if (!stored) throw new ApiError(401, null, "Not logged in");
  const h = { "Authorization": "Basic " + stored };
  if (body !== undefined) h["Content-Type"] = "application/json";
  Object.assign(h, headers || {});
  let resp;
  try {
    resp = await fetch("/api" + path, {
      method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, null, "Could not reach the server: " + err.message);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
  if (!resp.ok) {
    throw new ApiError(resp.status, data, resp.statusText);
  }
  return data;
}

export const get = (path) => api("GET", path);
export const put = (path, body) => api("PUT", path, body === undefined ? {} : body);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const del = (path, headers) => api("DELETE", path, undefined, headers);

// Query strings for list pages and chart ranges.
export function query(params) {
  const parts = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    parts.push(enc(key) + "=" + enc(String(value)));
  }
  return parts.length ? "?" + parts.join("&") : "";
}
