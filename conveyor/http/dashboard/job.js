// One job: its trigger, status, timeline, raw event history, and (for a write token) commands.

import { api, session } from "./api.js";
import {
  TERMINAL, every, formatClock, formatDuration, formatTime, h, jobTitle, parseTime, replace,
  safeUrl, shortSha, statusBadge,
} from "./dom.js";
import { buildTimeline, describe, renderTimeline } from "./timeline.js";

const REFRESH_MS = 1500;

export function mountJob(container, jobId) {
  let stopped = false;
  let shownVersion = null;
  let job = null;
  let history = null;
  let selected = null;

  const title = h("h1", { id: "job-title" }, "Job");
  const badge = h("span", { id: "job-status" });
  const actions = h("div", { class: "actions", id: "job-actions" });
  const problem = h("div", { class: "problem", role: "alert", hidden: true });
  const callout = h("div", { id: "job-callout" });
  const trigger = h("dl", { class: "facts", id: "job-trigger" });
  const state = h("dl", { class: "facts", id: "job-state" });
  const timeline = h("div", { class: "tl-host" });
  const detail = h("div", { class: "tl-detail", id: "timeline-detail", hidden: true });
  const events = h("tbody", {});
  const dialog = h("dialog", { class: "confirm", id: "confirm-dialog" });

  replace(container,
    h("nav", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), h("span", {}, "/"),
      h("span", { class: "mono" }, jobId.slice(0, 8))),
    h("div", { class: "page-head" },
      h("div", { class: "title-row" }, title, badge),
      actions),
    problem,
    callout,
    h("div", { class: "cards two" },
      h("section", { class: "card" }, h("h2", {}, "Trigger"), trigger),
      h("section", { class: "card" }, h("h2", {}, "State"), state)),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Timeline"), legend()),
      timeline, detail),
    h("section", { class: "card" }, h("h2", {}, "Event history"),
      h("table", { class: "events", id: "event-history" },
        h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", {}, "Event"),
          h("th", {}, "Time"), h("th", { class: "num" }, "Offset"), h("th", {}, "Data"))),
        events)),
    dialog);

  async function load() {
    try {
      const fresh = await api(`/workflow-queue/jobs/${jobId}`);
      if (stopped) return;
      problem.hidden = true;
      if (fresh.version !== shownVersion) {
        history = await api(`/workflow-queue/jobs/${jobId}/history`);
        if (stopped) return;
        job = fresh;
        shownVersion = fresh.version;
        render();
      } else if (!TERMINAL.has(fresh.status)) {
        drawTimeline();  // a running attempt or an open wait grows with the clock
      }
    } catch (error) {
      if (stopped) return;
      problem.hidden = false;
      replace(problem, error.status === 404 ? "No such job, or the read side has not seen it yet."
        : error.message);
    }
  }

  function render() {
    document.title = `${jobTitle(job)} · Conveyor`;
    replace(title, jobTitle(job));
    replace(badge, statusBadge(job.status));
    renderActions();
    renderCallout();
    renderTrigger();
    renderState();
    drawTimeline();
    renderEvents();
  }

  function renderActions() {
    if (!session.canWrite) return replace(actions);
    const buttons = [];
    if (!TERMINAL.has(job.status)) {
      buttons.push(h("button", { type: "button", class: "button danger", id: "cancel-job",
        onclick: () => confirm({
          title: "Cancel this job?",
          text: "Conveyor stops the job where it is. Stages that already finished are not undone.",
          reason: true, action: "Cancel job", command: "cancel" }) }, "Cancel job"));
    }
    if (job.status === "FAILED") {
      buttons.push(h("button", { type: "button", class: "button primary", id: "retry-job",
        onclick: () => confirm({
          title: "Retry this job?",
          text: "The failed stages run again; the stages that completed are kept.",
          action: "Retry job", command: "retry" }) }, "Retry job"));
    }
    return replace(actions, buttons);
  }

  function confirm({ title: heading, text, reason, action, command }) {
    const input = reason ? h("input", { type: "text", id: "confirm-reason", maxlength: "500",
      value: "cancelled from the dashboard", "aria-label": "Reason" }) : null;
    const error = h("p", { class: "form-error", role: "alert" });
    const go = h("button", { type: "submit", class: `button ${command === "cancel" ? "danger"
      : "primary"}`, id: "confirm-go" }, action);
    replace(dialog, h("form", { method: "dialog", onsubmit: async (event) => {
      event.preventDefault();
      go.disabled = true;
      try {
        const body = input ? { reason: input.value.trim() || "cancelled from the dashboard" }
          : undefined;
        await api(`/workflow-queue/jobs/${jobId}/${command}`, { method: "POST", body });
        dialog.close();
        load();
      } catch (failure) {
        replace(error, failure.message);
      } finally {
        go.disabled = false;
      }
    } },
    h("h2", {}, heading), h("p", { class: "muted" }, text),
    input ? h("label", { class: "field wide" }, h("span", {}, "Reason"), input) : null,
    error,
    h("div", { class: "dialog-actions" },
      h("button", { type: "button", class: "button ghost", id: "confirm-back",
        onclick: () => dialog.close() }, "Go back"), go)));
    dialog.showModal();
    (input || go).focus();
  }

  function renderCallout() {
    const children = [];
    if (job.error) {
      const cancelled = job.status === "CANCELLED";
      children.push(h("div", { class: `callout ${cancelled ? "neutral" : "bad"}` },
        h("strong", {}, cancelled ? "Cancelled" : `Failed in ${job.error.stage || "a stage"}`),
        job.error.classification ? h("span", { class: "pill" }, job.error.classification) : null,
        job.error.by ? h("span", { class: "muted" }, ` by ${job.error.by}`) : null,
        h("pre", { class: "error-block" }, String(job.error.error ?? ""))));
    }
    for (const wait of job.waiting_for || []) {
      if (wait.kind === "rate_limit") {
        children.push(h("div", { class: "callout wait" },
          h("strong", {}, `Waiting for the rate limit of ${wait.resource}`),
          h("span", { class: "muted" }, ` · stage ${wait.stage} · until ${formatTime(wait.until)}`)));
        continue;
      }
      children.push(h("div", { class: "callout wait" },
        h("strong", {}, `Waiting for ${wait.event_type}`),
        h("span", { class: "mono" }, ` key ${wait.key}`),
        h("span", { class: "muted" }, ` · stage ${wait.stage} · deadline ${formatTime(wait.deadline)}`)));
    }
    replace(callout, children);
  }

  function renderTrigger() {
    const t = job.trigger || {};
    const url = safeUrl(t.url);
    const pr = job.pull_request ? `#${job.pull_request}` : "—";
    replace(trigger,
      fact("Platform", job.platform || t.platform),
      fact("Organization", h("span", { id: "job-organization" }, job.organization || "—")),
      fact("Team", job.team),
      fact("Repository", h("span", { class: "repo", id: "job-repository" }, job.repository || "—")),
      fact("Pull request", url ? h("a", { href: url, target: "_blank",
        rel: "noopener noreferrer", id: "job-pr-link" }, pr, " ↗") : pr),
      fact("Head commit", h("span", { class: "mono", title: job.head_commit || "" },
        shortSha(job.head_commit))),
      fact("Sender", t.sender),
      fact("Action", t.action),
      fact("Base branch", t.base_branch),
      fact("Received", formatTime(t.received_at || job.created_at)),
      fact("Delivery", t.delivery_id ? h("span", { class: "mono" }, t.delivery_id) : null));
  }

  function renderState() {
    const start = parseTime(job.created_at);
    const end = parseTime(job.finished_at);
    replace(state,
      fact("Status", statusBadge(job.status)),
      fact("Workflow", job.workflow),
      fact("Now", TERMINAL.has(job.status) ? null
        : (job.current_stages || []).join(", ") || "queued"),
      fact("Created", formatTime(job.created_at)),
      fact("Finished", end ? formatTime(job.finished_at) : null),
      fact("Total time", end ? formatDuration(end - start) : `${formatDuration(Date.now() - start)} so far`),
      fact("Retries", String(job.retries ?? 0)),
      fact("Recoveries", String(job.recoveries ?? 0)),
      fact("Job id", h("span", { class: "mono" }, job.job_id)),
      fact("Correlation", job.correlation_id ? h("span", { class: "mono" }, job.correlation_id)
        : null));
  }

  function drawTimeline() {
    if (!history || !job) return;
    const model = buildTimeline(history, job);
    renderTimeline(timeline, model, { onSelect: (item) => {
      selected = item;
      detail.hidden = false;
      replace(detail, describe(item, model.t0));
    } });
    if (selected) detail.hidden = false;
  }

  function renderEvents() {
    const t0 = history.events.length ? parseTime(history.events[0].at).getTime() : 0;
    replace(events, history.events.map((e) => h("tr", { dataset: { type: e.type } },
      h("td", { class: "num muted" }, String(e.version)),
      h("td", {}, h("span", { class: `event-type ev-${e.type.toLowerCase()}` }, e.type),
        e.data && e.data.stage ? h("span", { class: "muted" }, ` ${e.data.stage}`) : null),
      h("td", { class: "mono" }, formatClock(e.at)),
      h("td", { class: "num mono muted" }, `+${formatDuration(parseTime(e.at).getTime() - t0)}`),
      h("td", { class: "data" }, h("details", {}, h("summary", {}, summarise(e)),
        h("pre", {}, JSON.stringify(e.data, null, 2)))))));
  }

  load();
  const stop = every(REFRESH_MS, load);
  return () => { stopped = true; stop(); document.title = "Conveyor"; };
}

function fact(name, value) {
  if (value === null || value === undefined || value === "") return null;
  return [h("dt", {}, name), h("dd", {}, value)];
}

function legend() {
  const item = (cls, text) => h("span", { class: "legend-item" },
    h("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), text);
  return h("div", { class: "legend" }, item("outcome-completed", "completed"),
    item("outcome-running", "running"), item("outcome-retry_scheduled", "failed, retried"),
    item("outcome-failed", "failed"), item("outcome-recovered", "recovered"),
    item("tl-wait", "waiting for an event"));
}

function summarise(event) {
  const d = event.data || {};
  const bits = [];
  if (d.attempt) bits.push(`attempt ${d.attempt}`);
  if (d.event_type) bits.push(`${d.event_type} ${d.key || ""}`.trim());
  if (event.type === "Resumed" && d.event_id) bits.push(`by ${d.event_id}`);
  if (d.classification) bits.push(d.classification);
  if (d.error) bits.push(String(d.error).slice(0, 120));
  if (d.reason) bits.push(String(d.reason).slice(0, 120));
  if (event.type === "Enqueued" && d.workflow) bits.push(d.workflow);
  return bits.join(" · ") || "data";
}
