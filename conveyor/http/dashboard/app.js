// The dashboard's shell: sign-in, navigation and a hash router over three pages.

import { api, session } from "./api.js";
import { h, replace } from "./dom.js";
import { mountJob } from "./job.js";
import { mountJobs } from "./jobs.js";
import { mountOverview } from "./overview.js";

const root = document.getElementById("app");
let unmount = () => {};

function route() {
  const hash = location.hash.replace(/^#/, "") || "/jobs";
  const [path, search = ""] = hash.split("?");
  const params = new URLSearchParams(search);
  const job = path.match(/^\/jobs\/([0-9a-fA-F-]{36})$/);
  if (job) return { page: "job", jobId: job[1], params };
  if (path === "/overview") return { page: "overview", params };
  return { page: "jobs", params };
}

function signIn(message) {
  unmount();
  unmount = () => {};
  const input = h("input", { type: "password", id: "token", name: "token", required: true,
    autocomplete: "off", spellcheck: "false", placeholder: "API token",
    "aria-label": "API token" });
  const error = h("p", { class: "form-error", role: "alert" }, message || "");
  const button = h("button", { type: "submit", class: "button primary" }, "Sign in");
  const form = h("form", { class: "signin-card", onsubmit: async (event) => {
    event.preventDefault();
    button.disabled = true;
    replace(error);
    try {
      const who = await api("/workflow-queue/whoami", { token: input.value.trim() });
      session.token = input.value.trim();
      session.scopes = who.scopes;
      start();
    } catch (failure) {
      replace(error, failure.status === 401 ? "That token is not known to this Conveyor."
        : `Could not sign in: ${failure.message}`);
    } finally {
      button.disabled = false;
    }
  } },
  h("div", { class: "brand large" }, logo(), h("span", {}, "Conveyor")),
  h("h1", {}, "Sign in to the dashboard"),
  h("p", { class: "muted" }, "Paste an API token from `conveyor tokens create`: ",
    "a read token to look, a write token to also cancel and retry jobs ",
    "(in development, one of CONVEYOR_API_READ_TOKENS or CONVEYOR_API_WRITE_TOKENS). ",
    "It is kept for this tab only."),
  h("label", { for: "token" }, "API token"), input, error, button);
  replace(root, h("main", { class: "signin" }, form));
  input.focus();
}

function logo() {
  return h("span", { class: "logo", "aria-hidden": "true" },
    h("span", {}), h("span", {}), h("span", {}));
}

function shell(current) {
  const link = (page, href, text) => h("a", { href, class: page === current ? "active" : null,
    "aria-current": page === current ? "page" : null }, text);
  const scope = session.canWrite ? "read & write" : "read only";
  return h("header", { class: "topbar" },
    h("a", { class: "brand", href: "#/jobs" }, logo(), h("span", {}, "Conveyor")),
    h("nav", {}, link("jobs", "#/jobs", "Jobs"), link("overview", "#/overview", "Overview")),
    h("div", { class: "session" },
      h("span", { class: `scope ${session.canWrite ? "write" : "read"}`,
        title: "What this token may do" }, scope),
      h("button", { type: "button", class: "button ghost", id: "sign-out", onclick: () => {
        session.token = null;
        session.scopes = [];
        signIn();
      } }, "Sign out")));
}

function render() {
  unmount();
  const where = route();
  const main = h("main", { class: "page", id: "page" });
  replace(root, shell(where.page === "overview" ? "overview" : "jobs"), main);
  if (where.page === "job") unmount = mountJob(main, where.jobId);
  else if (where.page === "overview") unmount = mountOverview(main);
  else unmount = mountJobs(main, where.params);
}

let started = false;

async function start() {
  if (!session.token) return signIn();
  try {
    session.scopes = (await api("/workflow-queue/whoami")).scopes;
  } catch (failure) {
    if (failure.status === 401) return undefined;  // onSignedOut shows the form
    replace(root, h("main", { class: "signin" }, h("div", { class: "signin-card" },
      h("h1", {}, "Conveyor is not answering"), h("p", { class: "muted" }, failure.message),
      h("button", { class: "button primary", onclick: start }, "Try again"))));
    return undefined;
  }
  if (!started) {
    started = true;
    window.addEventListener("hashchange", () => { if (session.token) render(); });
  }
  render();
  return undefined;
}

session.onSignedOut = () => signIn("The token was refused; sign in again.");
start();
