// Shared by the pages: the API with the session and CSRF token, errors as sentences,
// DOM built with text only (never innerHTML with data), numbers for people.
"use strict";

export const FINAL = new Set(["completed", "failed", "rejected", "cancelled"]);

export const STATUS_TEXT = {
  uploading: "Uploading",
  pending: "Waiting for the scan",
  scanning: "Scanning",
  queued: "Queued",
  processing: "Ingesting",
  completed: "Completed",
  failed: "Failed",
  rejected: "Rejected",
  cancelled: "Cancelled",
};

export function csrf() {
  return (document.cookie.match(/(?:^|; )csrftoken=([^;]*)/) || [])[1] || "";
}

function loginUrl() {
  return "/login/?next=" + encodeURIComponent(location.pathname + location.search);
}

/** The sentence for an error answer (status, parsed JSON body or null, Retry-After). */
export function sentence(status, body, retryAfter) {
  const error = (body && body.error) || {};
  if (status === 401 || (status === 403 && error.code === "not_authenticated")) {
    return "Your session has ended. Log in again to go on.";
  }
  if (status === 429) {
    const wait = Number(retryAfter);
    const when = wait ? "in " + wait + (wait === 1 ? " second." : " seconds.") : "in a minute.";
    if (error.code === "too_many_active_datasets" && error.message) return error.message;
    return "Too many requests for now. Try again " + when;
  }
  if (error.message) {
    const fields = error.fields
      ? Object.entries(error.fields).map(([name, why]) => name + ": " + [].concat(why).join(" "))
      : [];
    return [error.message].concat(fields).join(" ");
  }
  if (status === 404) return "Not found: it does not exist, or it is not yours.";
  if (status >= 500) return "The server had a problem (HTTP " + status + "). Try again in a moment.";
  return "The request failed (HTTP " + status + ").";
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
    this.sessionEnded = status === 401 || (status === 403 && body && body.error && body.error.code === "not_authenticated");
  }
}

/** JSON from the API, or an ApiError whose message is a sentence for a person. */
export async function api(method, url) {
  let response;
  try {
    response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), Accept: "application/json" },
    });
  } catch (_) {
    throw new ApiError(0, "The server cannot be reached. Check the connection; this page retries.", null);
  }
  if (response.status === 204) return null;
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON: described by its status */ }
  if (!response.ok) {
    throw new ApiError(response.status, sentence(response.status, body, response.headers.get("Retry-After")), body);
  }
  return body;
}

/** Shows an API error in a message element, with a login link when the session ended. */
export function showError(element, error) {
  element.hidden = false;
  element.replaceChildren(error.message || String(error));
  if (error.sessionEnded) {
    element.append(" ", el("a", { href: loginUrl() }, "Log in"));
  }
}

/** An element with attributes and text or element children (text is never parsed as HTML). */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
}

export function seconds(s) {
  s = Math.max(0, Math.ceil(s));
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + (s % 60) + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}

export function count(n) {
  return n === null || n === undefined ? "" : Number(n).toLocaleString("en-US");
}

/** "42.1 % · 431,000 rows/s · ETA 2 s" for a progress object. */
export function describeProgress(p) {
  let text = p.percent.toFixed(1) + " %";
  if (p.rows_processed) text += " · " + count(p.rows_processed) + " rows";
  if (p.rows_per_second) text += " · " + count(Math.round(p.rows_per_second)) + " rows/s";
  if (p.eta_seconds) text += " · ETA " + seconds(p.eta_seconds);
  return text;
}

export function delimiterName(d) {
  return { ",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe" }[d] || (d ? "'" + d + "'" : "");
}

export function formatText(d) {
  return [delimiterName(d.delimiter), d.encoding].filter(Boolean).join(" · ");
}

export function statusBadge(status) {
  return el("span", { class: "badge status-" + status }, STATUS_TEXT[status] || status);
}

/** "Row 3, column 2, line 4" for an error that has them. */
export function errorPlace(error) {
  const parts = [];
  if (error.row) parts.push("row " + count(error.row));
  if (error.column) parts.push("column " + error.column);
  if (error.line) parts.push("line " + count(error.line));
  const text = parts.join(", ");
  return text ? text[0].toUpperCase() + text.slice(1) : "";
}

export function localTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}
