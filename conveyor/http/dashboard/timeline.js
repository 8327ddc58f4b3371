// A job's stage attempts drawn to scale: one lane per stage, so parallel branches sit side by
// side; waits for outside events, retry backoffs and queueing are drawn as labelled gaps.

import { formatClock, formatDuration, h, parseTime, replace } from "./dom.js";

const OUTCOME_TEXT = {
  completed: "completed", failed: "failed", retry_scheduled: "failed, retry scheduled",
  paused: "paused for an outside event", recovered: "stuck, dispatched again",
  deferred: "rate limited, the same attempt deferred",
  running: "running", cancelled: "cancelled", abandoned: "abandoned by a manual retry",
};

// Turn the history into lanes of items, each with a start and an end in epoch milliseconds.
export function buildTimeline(history, job, now = Date.now()) {
  const events = history.events;
  const enqueued = events.find((e) => e.type === "Enqueued");
  const plan = (enqueued && enqueued.data.plan) || [];
  const t0 = parseTime(enqueued ? enqueued.at : job.created_at).getTime();
  const finished = parseTime(job.finished_at);
  const open = !finished;
  const lastEvent = Math.max(...events.map((e) => parseTime(e.at).getTime()));
  const end = Math.max(finished ? finished.getTime() : now, lastEvent, t0 + 1);

  const order = plan.map((s) => s.stage);
  for (const a of history.stage_attempts) if (!order.includes(a.stage)) order.push(a.stage);
  const lanes = new Map(order.map((stage) => [stage, []]));
  const after = Object.fromEntries(plan.map((s) => [s.stage, s.after || []]));

  for (const a of history.stage_attempts) {
    const start = parseTime(a.started_at).getTime();
    const stop = a.finished_at ? parseTime(a.finished_at).getTime() : (open ? end : start);
    lanes.get(a.stage).push({ kind: "attempt", stage: a.stage, attempt: a.attempt,
      outcome: a.outcome, start, end: stop, error: a.error,
      classification: a.classification });
  }

  events.forEach((e, i) => {
    const stage = e.data && e.data.stage;
    if (!stage || !lanes.has(stage)) return;
    const at = parseTime(e.at).getTime();
    const later = events.slice(i + 1);
    if (e.type === "Paused") {
      const over = later.find((x) => (["Resumed", "WaitTimedOut"].includes(x.type) &&
        x.data.stage === stage) || ["Cancelled", "Retried", "Failed"].includes(x.type));
      const outcome = !over ? "waiting" : over.type === "Resumed" ? "resumed"
        : over.type === "WaitTimedOut" ? "timed out" : over.type.toLowerCase();
      lanes.get(stage).push({ kind: "wait", stage, start: at,
        end: over ? parseTime(over.at).getTime() : end, outcome,
        eventType: e.data.event_type || (e.data.request && e.data.request.type) || "an event",
        key: e.data.key, deadline: e.data.deadline,
        eventId: over && over.data ? over.data.event_id : null });
    } else if (e.type === "StageFailed" && e.data.retry_at) {
      const next = later.find((x) => x.type === "Started" && x.data.stage === stage);
      const until = next ? parseTime(next.at).getTime()
        : Math.min(Math.max(parseTime(e.data.retry_at).getTime(), at), end);
      lanes.get(stage).push({ kind: "backoff", stage, start: at, end: until,
        retryAt: e.data.retry_at });
    }
  });

  // Time from being ready to starting: for the first stages, the time from the enqueue.
  const firstStart = Math.min(...history.stage_attempts.map((a) => parseTime(a.started_at)
    .getTime()));
  if (order.length && Number.isFinite(firstStart) && firstStart > t0) {
    const first = order.find((s) => (after[s] || []).length === 0) || order[0];
    lanes.get(first).push({ kind: "queue", stage: first, start: t0, end: firstStart });
  }
  return { t0, end, lanes, open };
}

function niceStep(span, target) {
  const raw = span / target;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || 10 * power;
  return unit;
}

function axisLabel(ms, step) {
  if (step < 1000) return `${(ms / 1000).toFixed(step < 100 ? 2 : 1)} s`;
  if (step < 60000) return `${Math.round(ms / 1000)} s`;
  return formatDuration(ms);
}

export function renderTimeline(target, model, { onSelect } = {}) {
  const span = model.end - model.t0;
  const pct = (t) => `${((t - model.t0) / span) * 100}%`;
  const width = (a, b) => `${(Math.max(b - a, 0) / span) * 100}%`;
  const step = niceStep(span, 8);
  const ticks = [];
  for (let t = 0; t <= span + 1e-6; t += step) ticks.push(t);

  const grid = () => h("div", { class: "tl-grid", "aria-hidden": "true" },
    ticks.map((t) => h("span", { style: { left: pct(model.t0 + t) } })));

  const tooltip = h("div", { class: "tl-tooltip", role: "tooltip", hidden: true });
  const show = (event, item) => {
    replace(tooltip, describe(item, model.t0));
    tooltip.hidden = false;
    const box = target.getBoundingClientRect();
    const x = Math.min(event.clientX - box.left + 12, box.width - 320);
    tooltip.style.left = `${Math.max(x, 0)}px`;
    tooltip.style.top = `${event.clientY - box.top + 14}px`;
  };
  const hide = () => { tooltip.hidden = true; };

  const lanes = [...model.lanes.entries()].map(([stage, items]) => {
    const attempts = items.filter((i) => i.kind === "attempt");
    const retried = attempts.some((a) => a.attempt > 1);
    const track = h("div", { class: "tl-track" }, grid(),
      items.filter((i) => i.kind !== "attempt").map((item) => gap(item)),
      attempts.map((item) => bar(item)));
    return h("div", { class: "tl-lane", dataset: { stage } },
      h("div", { class: "tl-label", title: stage }, h("span", { class: "mono" }, stage),
        retried ? h("span", { class: "tl-tag" }, `${Math.max(...attempts.map((a) => a.attempt))}×`)
          : null),
      track);
  });

  function gap(item) {
    const label = item.kind === "wait"
      ? `${item.outcome === "waiting" ? "waiting for" : "waited for"} ${item.eventType}` +
        (item.key ? ` ${item.key}` : "")
      : item.kind === "backoff" ? "retry backoff" : "queued";
    const el = h("div", {
      class: `tl-gap tl-${item.kind}${item.outcome === "waiting" ? " open" : ""}`,
      style: { left: pct(item.start), width: width(item.start, item.end) },
      dataset: { stage: item.stage, kind: item.kind }, tabindex: "0",
      onmouseenter: (e) => show(e, item), onmousemove: (e) => show(e, item),
      onmouseleave: hide, onfocus: () => onSelect && onSelect(item),
      onclick: () => onSelect && onSelect(item),
    }, h("span", { class: "tl-gap-label" }, `${label} · ${formatDuration(item.end - item.start)}`));
    el.setAttribute("aria-label", label);
    return el;
  }

  function bar(item) {
    const marks = [];
    if (item.attempt > 1) marks.push(h("span", { class: "tl-mark" }, `#${item.attempt}`));
    if (item.outcome === "recovered") marks.push(h("span", { class: "tl-mark" }, "⟲ recovered"));
    if (item.outcome === "retry_scheduled") marks.push(h("span", { class: "tl-mark" }, "↻"));
    if (item.outcome === "failed") marks.push(h("span", { class: "tl-mark" }, "✕"));
    const el = h("div", {
      class: `tl-bar outcome-${item.outcome}`, role: "button", tabindex: "0",
      style: { left: pct(item.start), width: width(item.start, item.end) },
      dataset: { stage: item.stage, attempt: String(item.attempt), outcome: item.outcome },
      onmouseenter: (e) => show(e, item), onmousemove: (e) => show(e, item),
      onmouseleave: hide, onclick: () => onSelect && onSelect(item),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") onSelect && onSelect(item); },
    }, marks, h("span", { class: "tl-bar-text" }, formatDuration(item.end - item.start)));
    el.setAttribute("aria-label",
      `${item.stage} attempt ${item.attempt}: ${OUTCOME_TEXT[item.outcome] || item.outcome}`);
    return el;
  }

  const axis = h("div", { class: "tl-lane tl-axis", "aria-hidden": "true" },
    h("div", { class: "tl-label" }, model.open ? "live" : ""),
    h("div", { class: "tl-track" }, ticks.map((t) => h("span", {
      class: "tl-tick", style: { left: pct(model.t0 + t) } }, axisLabel(t, step)))));

  replace(target, h("div", { class: "tl", id: "timeline" }, axis, lanes, tooltip));
}

export function describe(item, t0) {
  const rows = [];
  const add = (name, value) => value !== null && value !== undefined && value !== "" &&
    rows.push(h("div", { class: "kv" }, h("span", {}, name), h("span", {}, String(value))));
  const offset = (t) => `+${formatDuration(t - t0)} (${formatClock(new Date(t).toISOString())})`;
  let title;
  if (item.kind === "attempt") {
    title = `${item.stage} · attempt ${item.attempt}`;
    add("Outcome", OUTCOME_TEXT[item.outcome] || item.outcome);
    add("Started", offset(item.start));
    add("Took", formatDuration(item.end - item.start));
    add("Classification", item.classification);
  } else if (item.kind === "wait") {
    title = `${item.stage} · waiting for an outside event`;
    add("Event type", item.eventType);
    add("Key", item.key);
    add("Since", offset(item.start));
    add("Waited", formatDuration(item.end - item.start));
    add("Deadline", item.deadline ? formatClock(item.deadline) : null);
    add("Outcome", item.outcome);
    add("Answered by", item.eventId);
  } else if (item.kind === "backoff") {
    title = `${item.stage} · retry backoff`;
    add("From", offset(item.start));
    add("Retry due", item.retryAt ? formatClock(item.retryAt) : null);
    add("Waited", formatDuration(item.end - item.start));
  } else {
    title = "Queued before the first stage";
    add("Waited", formatDuration(item.end - item.start));
  }
  return [h("div", { class: "tl-tip-title" }, title), rows,
    item.error ? h("pre", { class: "tl-error" }, String(item.error)) : null];
}
