// Overview: throughput per hour (uPlot), stage duration percentiles, counts, waits, lag,
// each organisation's stages running against its limit, held and deferred, the schedules
// with their next and last fire times and their last run's status, and, for an admin token,
// each workflow version's jobs in flight and workers (what `conveyor workflows` prints).

import { api, query, session } from "./api.js";
import { STATUSES, every, formatDuration, formatTime, h, replace, statusBadge } from "./dom.js";

const REFRESH_MS = 10000;
const WINDOWS = [[24, "24 hours"], [72, "3 days"], [168, "7 days"]];

export function mountOverview(container) {
  let stopped = false;
  let hours = 24;
  let chart = null;

  const tiles = h("div", { class: "tiles", id: "status-counts" });
  const chartHost = h("div", { class: "chart", id: "throughput-chart" });
  const totals = h("div", { class: "chart-totals" });
  const percentiles = h("tbody", {});
  const waiting = h("div", { id: "waiting-summary" });
  const lag = h("tbody", {});
  const tenants = h("tbody", {});
  const schedules = h("tbody", {});
  const versions = h("tbody", {});
  const problem = h("div", { class: "problem", role: "alert", hidden: true });
  const picker = h("div", { class: "segmented", role: "group", "aria-label": "Window" },
    WINDOWS.map(([n, text]) => h("button", { type: "button", class: n === hours ? "on" : null,
      dataset: { hours: String(n) }, onclick: (event) => {
        hours = n;
        for (const b of picker.children) b.classList.toggle("on", b === event.currentTarget);
        load();
      } }, text)));

  replace(container,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Overview"),
      h("span", { class: "muted" }, "Everything here comes from the projections; lag says how far behind they are.")),
    picker),
    problem,
    tiles,
    h("div", { class: "cards wide-left" },
      h("section", { class: "card" }, h("div", { class: "card-head" },
        h("h2", {}, "Jobs finished per hour"), totals), chartHost),
      h("section", { class: "card" }, h("h2", {}, "Waiting for outside events"), waiting)),
    h("div", { class: "cards wide-left" },
      h("section", { class: "card" }, h("div", { class: "card-head" },
        h("h2", {}, "Duration percentiles"), h("div", { class: "legend" },
          h("span", { class: "legend-item" }, h("span", { class: "swatch p50" }), "p50"),
          h("span", { class: "legend-item" }, h("span", { class: "swatch p95" }), "p95"),
          h("span", { class: "legend-item" }, h("span", { class: "swatch p99" }), "p99"))),
        h("table", { class: "percentiles", id: "stage-percentiles" },
          h("thead", {}, h("tr", {}, h("th", {}, "Measure"), h("th", { class: "num" }, "Count"),
            h("th", { class: "num" }, "p50"), h("th", { class: "num" }, "p95"),
            h("th", { class: "num" }, "p99"), h("th", { class: "bar-col" }, ""))),
          percentiles)),
      h("section", { class: "card" }, h("h2", {}, "Projection lag"),
        h("table", { class: "lag", id: "projection-lag" },
          h("thead", {}, h("tr", {}, h("th", {}, "Projection"),
            h("th", { class: "num" }, "Events behind"), h("th", { class: "num" }, "Seconds"))),
          lag))),
    h("section", { class: "card" }, h("h2", {}, "Organisations"),
      h("table", { class: "lag", id: "organizations" },
        h("thead", {}, h("tr", {}, h("th", {}, "Organisation"),
          h("th", { class: "num" }, "Running / limit"), h("th", { class: "num" }, "Held"),
          h("th", { class: "num" }, "Deferred by rate limits"))),
        tenants)),
    h("section", { class: "card" }, h("h2", {}, "Schedules"),
      h("table", { class: "lag", id: "schedules" },
        h("thead", {}, h("tr", {}, h("th", {}, "Schedule"), h("th", {}, "Cron"),
          h("th", {}, "Workflow"), h("th", {}, "Next fire"), h("th", {}, "Last fired"),
          h("th", {}, "Last run"))),
        schedules)),
    h("section", { class: "card" }, h("h2", {}, "Workflow versions"),
      h("table", { class: "lag", id: "workflow-versions" },
        h("thead", {}, h("tr", {}, h("th", {}, "Workflow"), h("th", {}, "Version"),
          h("th", { class: "num" }, "In flight"), h("th", { class: "num" }, "Workers"),
          h("th", {}, "State"))),
        versions)));

  const resize = () => { if (chart) chart.setSize({ width: chartHost.clientWidth, height: 240 }); };
  window.addEventListener("resize", resize);

  async function load() {
    try {
      const [metrics, waits, organizations, scheduled, workflows] = await Promise.all([
        api(`/workflow-queue/metrics${query({ hours })}`),
        api(`/workflow-queue/jobs${query({ status: "WAITING_FOR_EVENT", limit: 200 })}`),
        api("/workflow-queue/organizations"),
        api("/workflow-queue/schedules"),
        // An admin route: a lesser token is not even asked for it (a 403 is no news).
        session.canAdmin ? api("/workflow-queue/workflows") : null,
      ]);
      if (stopped) return;
      problem.hidden = true;
      renderTiles(metrics);
      renderChart(metrics);
      renderPercentiles(metrics.durations_ms);
      renderWaiting(waits);
      renderLag(metrics.projection_lag);
      renderOrganizations(organizations.organizations);
      renderSchedules(scheduled.schedules);
      renderVersions(workflows && workflows.workflows);
    } catch (error) {
      if (stopped) return;
      problem.hidden = false;
      replace(problem, error.message);
    }
  }

  function renderTiles(metrics) {
    const rate = metrics.success_rate === null ? "—" : `${(metrics.success_rate * 100).toFixed(1)}%`;
    replace(tiles,
      STATUSES.map((status) => h("a", { class: "tile", href: `#/jobs?status=${status}`,
        dataset: { status } }, statusBadge(status),
      h("span", { class: "tile-number" }, String(metrics.jobs_by_status[status] || 0)))),
      h("div", { class: "tile accent" }, h("span", { class: "tile-caption" },
        `Success · ${hours} h`), h("span", { class: "tile-number" }, rate)));
  }

  function renderChart(metrics) {
    const start = Date.parse(metrics.since) / 1000;
    const xs = [];
    const done = [];
    const failed = [];
    const byHour = new Map(metrics.per_hour.map((p) => [Date.parse(p.hour) / 1000, p]));
    for (let i = 0; i < metrics.window_hours; i += 1) {
      const t = start + i * 3600;
      const point = byHour.get(t);
      xs.push(t);
      // A null draws no bar; a zero would draw a flat stroke along the axis.
      done.push(point && point.completed ? point.completed : null);
      failed.push(point && point.failed ? point.failed : null);
    }
    const sum = (a) => a.reduce((x, y) => x + (y || 0), 0);
    replace(totals, h("span", { class: "legend-item" }, h("span", { class: "swatch good" }),
      `${sum(done)} completed`), h("span", { class: "legend-item" },
      h("span", { class: "swatch bad" }), `${sum(failed)} failed`));
    const data = [xs, done, failed];
    if (chart && chart.data[0].length === xs.length) {
      chart.setData(data);
      return;
    }
    if (chart) chart.destroy();
    // Completed and failed side by side within each hour.
    const left = window.uPlot.paths.bars({ size: [0.42, 14], align: -1 });
    const right = window.uPlot.paths.bars({ size: [0.42, 14], align: 1 });
    chart = new window.uPlot({
      width: Math.max(chartHost.clientWidth, 300), height: 240,
      legend: { show: false }, cursor: { points: { show: false } },
      scales: { x: { time: true, range: (u, lo, hi) => [lo - 2400, hi + 2400] }, y: { range: (u, lo, hi) => [0, Math.max(4, Math.ceil(hi * 1.15))] } },
      axes: [
        { stroke: "#6b7280", grid: { stroke: "#f1f5f9" }, ticks: { stroke: "#e5e7eb" } },
        { stroke: "#6b7280", grid: { stroke: "#f1f5f9" }, ticks: { show: false }, size: 40 },
      ],
      series: [{}, { label: "Completed", stroke: "#059669", fill: "rgba(16,185,129,0.75)",
        paths: left, points: { show: false } },
      { label: "Failed", stroke: "#dc2626", fill: "rgba(239,68,68,0.8)", paths: right,
        points: { show: false } }],
    }, data, chartHost);
  }

  function renderPercentiles(durations) {
    const rows = [];
    const all = [];
    if (durations.total) all.push(["Whole job", durations.total, true]);
    if (durations.queue_wait) all.push(["Queue wait", durations.queue_wait, true]);
    for (const [stage, d] of Object.entries(durations.stages || {})) all.push([stage, d, false]);
    const longest = Math.max(1, ...all.map(([, d]) => d.p99 || 0));
    for (const [name, d, summary] of all) {
      const w = (v) => `${((v || 0) / longest) * 100}%`;
      rows.push(h("tr", { class: summary ? "summary-row" : null, dataset: { measure: name } },
        h("td", { class: summary ? null : "mono" }, name),
        h("td", { class: "num" }, String(d.count)),
        h("td", { class: "num" }, formatDuration(d.p50)),
        h("td", { class: "num" }, formatDuration(d.p95)),
        h("td", { class: "num" }, formatDuration(d.p99)),
        h("td", { class: "bar-col" }, h("div", { class: "pbar" },
          h("span", { class: "p99", style: { width: w(d.p99) } }),
          h("span", { class: "p95", style: { width: w(d.p95) } }),
          h("span", { class: "p50", style: { width: w(d.p50) } })))));
    }
    if (!rows.length) rows.push(h("tr", { class: "empty" }, h("td", { colspan: 6 },
      "No stage has finished in this window.")));
    replace(percentiles, rows);
  }

  function renderWaiting(page) {
    const counts = new Map();
    for (const job of page.jobs) {
      for (const wait of job.waiting_for || []) {
        if (wait.kind === "rate_limit") continue;  // not waiting for an outside event
        counts.set(wait.event_type, (counts.get(wait.event_type) || 0) + 1);
      }
    }
    const total = `${page.jobs.length}${page.next_cursor ? "+" : ""}`;
    replace(waiting,
      h("div", { class: "big-number" }, h("a", { href: "#/jobs?status=WAITING_FOR_EVENT" }, total),
        h("span", { class: "muted" }, page.jobs.length === 1 ? " job waiting" : " jobs waiting")),
      counts.size ? h("ul", { class: "wait-list" }, [...counts.entries()]
        .sort((a, b) => b[1] - a[1]).map(([type, n]) => h("li", {},
          h("span", { class: "mono" }, type), h("span", { class: "count" }, String(n)))))
        : h("p", { class: "muted" }, "Nothing is waiting for an outside event."));
  }

  function renderLag(lags) {
    replace(lag, (lags || []).map((l) => {
      const level = l.events_behind > 1000 ? "bad" : l.events_behind > 50 ? "warn" : "good";
      return h("tr", { dataset: { projection: l.projection } },
        h("td", {}, h("span", { class: `lag-dot ${level}`, "aria-hidden": "true" }), l.projection),
        h("td", { class: "num" }, String(l.events_behind)),
        h("td", { class: "num" }, l.seconds_behind === null ? "—"
          : `${Number(l.seconds_behind).toFixed(1)} s`));
    }));
  }

  function renderOrganizations(rows) {
    const shown = rows.map((o) => h("tr", { dataset: { organization: o.organization || "" } },
      h("td", {}, o.organization || h("span", { class: "muted" }, "none")),
      h("td", { class: "num" }, `${o.running} / ${o.max_running === null ? "∞" : o.max_running}`),
      h("td", { class: "num" }, String(o.held)),
      h("td", { class: "num" }, String(o.deferred))));
    if (!shown.length) shown.push(h("tr", { class: "empty" }, h("td", { colspan: 4 },
      "No organisation has stages running or held.")));
    replace(tenants, shown);
  }

  function renderSchedules(rows) {
    const shown = rows.map((s) => h("tr", { dataset: { schedule: s.name } },
      h("td", {}, s.name),
      h("td", { class: "mono" }, s.timezone === "UTC" ? s.cron : `${s.cron} (${s.timezone})`),
      h("td", {}, s.workflow),
      h("td", {}, s.paused ? h("span", { class: "muted" }, "paused")
        : s.next_fire_at ? formatTime(s.next_fire_at) : "—"),
      h("td", {}, s.last_fired_at ? formatTime(s.last_fired_at) : "—"),
      h("td", {}, !s.last_job_id ? "—" : h("a", { href: `#/jobs/${s.last_job_id}` },
        s.last_status ? statusBadge(s.last_status) : "not projected yet"))));
    if (!shown.length) shown.push(h("tr", { class: "empty" }, h("td", { colspan: 6 },
      "No schedules.")));
    replace(schedules, shown);
  }

  function renderVersions(rows) {
    if (!rows) {
      replace(versions, h("tr", { class: "empty" }, h("td", { colspan: 5 },
        "Workflow versions are shown to an admin token.")));
      return;
    }
    // Drained: its workers may stop; waiting: no running worker has it.
    const levels = { current: "good", draining: "warn", waiting: "bad", drained: "good" };
    replace(versions, rows.map((v) => h("tr", { dataset: { workflow: v.workflow,
      version: v.version === null ? "" : v.version, state: v.state } },
    h("td", {}, v.workflow),
    h("td", { class: "mono" }, v.version === null ? "(none)" : `v${v.version}`),
    h("td", { class: "num" }, String(v.in_flight)),
    h("td", { class: "num" }, String(v.workers)),
    h("td", {}, h("span", { class: `lag-dot ${levels[v.state]}`, "aria-hidden": "true" }),
      v.state))));
  }

  load();
  const stop = every(REFRESH_MS, load);
  return () => {
    stopped = true;
    stop();
    window.removeEventListener("resize", resize);
    if (chart) chart.destroy();
  };
}
