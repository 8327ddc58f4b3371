// Building the page without innerHTML: every value from the API becomes a text node or an
// attribute set through the DOM, so repository names, commit messages and errors stay text.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style") Object.assign(el.style, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// A link only to the web: a URL from a delivery could say `javascript:`.
export function safeUrl(value) {
  try {
    const url = new URL(String(value));
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

export const STATUSES = ["PENDING", "PROCESSING", "WAITING_FOR_EVENT", "RETRYING", "COMPLETED",
  "FAILED", "CANCELLED"];
export const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
const STATUS_TEXT = {
  PENDING: "Pending", PROCESSING: "Processing", WAITING_FOR_EVENT: "Waiting",
  RETRYING: "Retrying", COMPLETED: "Completed", FAILED: "Failed", CANCELLED: "Cancelled",
};

export function statusText(status) {
  return STATUS_TEXT[status] || String(status);
}

// Colour and text together: the colour helps scanning, the word is what it means.
export function statusBadge(status) {
  const known = status in STATUS_TEXT ? status.toLowerCase() : "unknown";
  return h("span", { class: `badge status-${known}`, dataset: { status: String(status) },
    title: String(status) }, h("span", { class: "dot", "aria-hidden": "true" }),
  statusText(status));
}

export function parseTime(value) {
  return value ? new Date(value) : null;
}

export function formatTime(value) {
  const at = parseTime(value);
  if (!at) return "—";
  return at.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function formatClock(value) {
  const at = parseTime(value);
  if (!at) return "—";
  const ms = String(at.getMilliseconds()).padStart(3, "0");
  return `${at.toLocaleTimeString(undefined, { hour12: false })}.${ms}`;
}

export function formatAgo(value, now = Date.now()) {
  const at = parseTime(value);
  if (!at) return "—";
  const seconds = Math.round((now - at.getTime()) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1) return "<1 ms";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60000);
  if (minutes < 60) return `${minutes}m ${Math.round((ms % 60000) / 1000)}s`;
  return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

export function shortSha(sha) {
  return sha ? String(sha).slice(0, 8) : "—";
}

export function jobTitle(job) {
  const repo = job.repository || "(no repository)";
  return job.pull_request ? `${repo} #${job.pull_request}` : repo;
}

// Polls while the page is visible; returns a function that stops it.
export function every(ms, fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await fn(); } catch (error) { console.warn("refresh failed", error); }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => { stopped = true; clearTimeout(timer); };
}
