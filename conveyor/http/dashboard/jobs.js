// Jobs: the API's filters, cursor pages, and a live refresh that updates rows in place.

import { api, query } from "./api.js";
import {
  STATUSES, TERMINAL, every, formatAgo, formatClock, formatDuration, formatTime, h, jobTitle, parseTime,
  replace, shortSha, statusBadge, statusText,
} from "./dom.js";

const PLATFORMS = [["github", "GitHub"], ["gitlab", "GitLab"], ["bitbucket", "Bitbucket"],
  ["azure-repos", "Azure Repos"]];
const RANGES = [["", "Any time"], ["1h", "Last hour"], ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"], ["30d", "Last 30 days"], ["custom", "Custom range"]];
const RANGE_MS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const FIELDS = ["status", "workflow", "organization", "platform", "repository", "pull_request",
  "range", "from", "to"];
const PAGE_SIZE = 50;
const REFRESH_MS = 3000;

export function mountJobs(container, params) {
  const filters = Object.fromEntries(FIELDS.map((f) => [f, params.get(f) || ""]));
  let cursors = [null];  // the cursor of each page visited; the last is the page shown
  let nextCursor = null;
  let loading = 0;
  let stopped = false;

  const tbody = h("tbody", {});
  const summary = h("span", { class: "muted", id: "jobs-summary" });
  const updated = h("span", { class: "live-indicator", id: "live-indicator" });
  const newer = h("button", { type: "button", class: "button", id: "page-newer",
    onclick: () => { cursors.pop(); load(); } }, "← Newer");
  const older = h("button", { type: "button", class: "button", id: "page-older",
    onclick: () => { cursors.push(nextCursor); load(); } }, "Older →");
  const problem = h("div", { class: "problem", role: "alert", hidden: true });

  const control = (name, element) => {
    element.id = `filter-${name}`;
    element.name = name;
    element.value = filters[name];
    const changed = () => {
      filters[name] = element.value.trim();
      if (name === "range") showCustom();
      remember();
      cursors = [null];
      load();
    };
    element.addEventListener("change", changed);
    if (element.tagName === "INPUT" && element.type === "search") {
      let timer = null;
      element.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(changed, 350); });
    }
    return element;
  };
  const option = ([value, text]) => h("option", { value }, text);
  const field = (label, name, element) => h("label", { class: "field" },
    h("span", {}, label), control(name, element));

  const from = field("From", "from", h("input", { type: "datetime-local" }));
  const to = field("To", "to", h("input", { type: "datetime-local" }));
  const showCustom = () => {
    from.hidden = filters.range !== "custom";
    to.hidden = filters.range !== "custom";
  };
  showCustom();

  const form = h("form", { class: "filters", id: "filters", onsubmit: (e) => e.preventDefault() },
    field("Status", "status", h("select", {}, option(["", "Any status"]),
      STATUSES.map((s) => option([s, statusText(s)])))),
    field("Workflow", "workflow", h("input", { type: "search", placeholder: "e.g. code_review" })),
    field("Organization", "organization", h("input", { type: "search", placeholder: "e.g. acme",
      spellcheck: "false" })),
    field("Platform", "platform", h("select", {}, option(["", "Any platform"]),
      PLATFORMS.map(option))),
    field("Repository", "repository", h("input", { type: "search", placeholder: "e.g. acme/api",
      spellcheck: "false" })),
    field("Pull request", "pull_request", h("input", { type: "search", placeholder: "e.g. 42",
      inputmode: "numeric" })),
    field("Created", "range", h("select", {}, RANGES.map(option))),
    from, to,
    h("button", { type: "button", class: "button ghost", id: "filters-clear", onclick: () => {
      for (const f of FIELDS) filters[f] = "";
      for (const el of form.querySelectorAll("input, select")) el.value = "";
      showCustom();
      remember();
      cursors = [null];
      load();
    } }, "Clear"));

  replace(container,
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Jobs"), summary),
      updated),
    form,
    problem,
    h("div", { class: "card table-card" },
      h("table", { class: "jobs", id: "jobs-table" },
        h("thead", {}, h("tr", {},
          h("th", { class: "col-status" }, "Status"), h("th", {}, "Pull request"),
          h("th", {}, "Organization"), h("th", {}, "Workflow"), h("th", {}, "Platform"),
          h("th", {}, "Now"),
          h("th", {}, "Head"), h("th", {}, "Created"), h("th", { class: "num" }, "Duration"))),
        tbody)),
    h("div", { class: "pager" }, newer, older));

  // The filters live in the address, so a reload or a shared link shows the same list;
  // replaceState changes it without a hashchange, which would rebuild the page.
  function remember() {
    const kept = Object.fromEntries(FIELDS.filter((f) => filters[f]).map((f) => [f, filters[f]]));
    history.replaceState(null, "", `#/jobs${query(kept)}`);
  }

  function apiQuery() {
    const q = { status: filters.status, workflow: filters.workflow,
      organization: filters.organization, platform: filters.platform,
      repository: filters.repository, pull_request: filters.pull_request, limit: PAGE_SIZE,
      cursor: cursors[cursors.length - 1] };
    if (RANGE_MS[filters.range]) {
      q.created_after = new Date(Date.now() - RANGE_MS[filters.range]).toISOString();
    } else if (filters.range === "custom") {
      if (filters.from) q.created_after = new Date(filters.from).toISOString();
      if (filters.to) q.created_before = new Date(filters.to).toISOString();
    }
    return q;
  }

  async function load() {
    const mine = ++loading;
    try {
      const page = await api(`/workflow-queue/jobs${query(apiQuery())}`);
      if (stopped || mine !== loading) return;  // a newer request has been sent since
      problem.hidden = true;
      nextCursor = page.next_cursor;
      show(page.jobs);
    } catch (error) {
      if (stopped || mine !== loading) return;
      problem.hidden = false;
      replace(problem, error.message);
    }
  }

  function show(jobs) {
    // Rows are updated in place by job id, so the scroll position and focus stay put.
    const existing = new Map([...tbody.querySelectorAll("tr[data-job-id]")]
      .map((tr) => [tr.dataset.jobId, tr]));
    let previous = null;
    for (const job of jobs) {
      let tr = existing.get(job.job_id);
      existing.delete(job.job_id);
      if (!tr) tr = h("tr", { dataset: { jobId: job.job_id }, class: "row-link",
        onclick: (event) => {
          if (event.target.closest("a") || window.getSelection().toString()) return;
          location.hash = `#/jobs/${tr.dataset.jobId}`;
        } });
      if (tr.dataset.version !== String(job.version)) fill(tr, job);
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (wanted !== tr) tbody.insertBefore(tr, wanted);
      previous = tr;
    }
    for (const tr of existing.values()) tr.remove();
    const gone = tbody.querySelector("tr.empty");
    if (jobs.length === 0 && !gone) {
      tbody.append(h("tr", { class: "empty" }, h("td", { colspan: 9 },
        "No jobs match these filters.")));
    } else if (jobs.length && gone) gone.remove();
    const first = (cursors.length - 1) * PAGE_SIZE;
    replace(summary, jobs.length ? `Showing ${first + 1}–${first + jobs.length}` +
      (nextCursor ? "" : ` of ${first + jobs.length}`) : "");
    newer.disabled = cursors.length <= 1;
    older.disabled = !nextCursor;
    ticks();
  }

  function fill(tr, job) {
    tr.dataset.version = String(job.version);
    tr.dataset.status = job.status;
    const link = h("a", { href: `#/jobs/${job.job_id}`, class: "job-link" }, jobTitle(job));
    replace(tr,
      h("td", { class: "col-status" }, statusBadge(job.status)),
      h("td", { class: "col-title" }, link, h("div", { class: "sub mono" },
        job.job_id.slice(0, 8))),
      h("td", { class: "col-organization", title: job.team ? `team ${job.team}` : "" },
        job.organization || "—"),
      h("td", {}, job.workflow),
      h("td", {}, job.platform || "—"),
      h("td", { class: "col-now" }, now(job)),
      h("td", { class: "mono", title: job.head_commit || "" }, shortSha(job.head_commit)),
      h("td", { class: "col-created", title: formatTime(job.created_at),
        dataset: { at: job.created_at } }, formatAgo(job.created_at)),
      h("td", { class: "num col-duration", dataset: {
        from: job.created_at, until: job.finished_at || "" } }, duration(job)));
  }

  function ticks() {
    updated.replaceChildren(h("span", { class: "pulse", "aria-hidden": "true" }),
      `Live · updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`);
    for (const td of tbody.querySelectorAll("td.col-created")) {
      td.textContent = formatAgo(td.dataset.at);
    }
    for (const tr of tbody.querySelectorAll("tr[data-job-id]")) {
      const td = tr.querySelector("td.col-duration");
      if (td && !td.dataset.until && !TERMINAL.has(tr.dataset.status)) {
        td.textContent = formatDuration(Date.now() - parseTime(td.dataset.from));
      }
    }
  }

  load();
  const stop = every(REFRESH_MS, load);
  return () => { stopped = true; stop(); };
}

function now(job) {
  const limits = (job.waiting_for || []).filter((w) => w.kind === "rate_limit");
  if (job.status === "WAITING_FOR_EVENT" && job.waiting_for && job.waiting_for.length) {
    return job.waiting_for.filter((w) => w.kind !== "rate_limit")
      .map((w) => `waiting for ${w.event_type}`).join(", ");
  }
  if (limits.length && !TERMINAL.has(job.status)) {
    return limits.map((w) => `rate limit ${w.resource} until ${formatClock(w.until)}`).join(", ");
  }
  if (job.status === "FAILED" && job.error) {
    return h("span", { class: "error-text", title: String(job.error.error || "") },
      job.error.stage ? `${job.error.stage}: ` : "", truncate(job.error.error, 60));
  }
  if (job.status === "RETRYING" && job.next_attempt_at) {
    return `attempt ${job.attempt} at ${formatClock(job.next_attempt_at)}`;
  }
  if (TERMINAL.has(job.status)) return h("span", { class: "muted" }, "—");
  return (job.current_stages || []).join(", ") || "queued";
}

function duration(job) {
  const start = parseTime(job.created_at);
  const end = parseTime(job.finished_at) || (TERMINAL.has(job.status) ? null : new Date());
  return start && end ? formatDuration(end - start) : "—";
}

function truncate(text, n) {
  const s = String(text ?? "");
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}
