// The status card: each process's scheduler (live or stale), the window's aggregates, the store's
// health (dropped records, the writer's last error) and the chart of calls and p95 duration.

import { seriesChart } from "./chart.js";
import { datum, fill, h } from "./dom.js";
import { ago, compact, duration, number, percent, t } from "./i18n.js";
import { STATUSES, WINDOWS } from "./state.js";

export class StatusCard {
  /** `actions`: {openCall(callId), setWindow(window), filterStatus(status)}. */
  constructor(root, actions) {
    this.root = root;
    this.actions = actions;
    this.body = null;
    this.error = null;
  }

  show(body) {
    this.body = body;
    this.error = null;
    this.render();
  }

  fail(error) {
    this.error = error;
    this.render();
  }

  render() {
    const body = this.body;
    const header = h(
      "div",
      { class: "card-head" },
      h("h2", {}, t("status.title")),
      h(
        "div",
        { class: "segmented", role: "group", "aria-label": t("status.window") },
        WINDOWS.map((win) =>
          h("button", {
            type: "button",
            class: body && body.window === win ? "is-on" : "",
            "aria-pressed": String(Boolean(body && body.window === win)),
            on: { click: () => this.actions.setWindow(win) },
          }, t(`window.${win}`)),
        ),
      ),
      body ? h("span", { class: "muted small", title: body.now }, t("status.updated", { ago: ago(body.now) })) : null,
    );
    if (!body || this.error) {
      fill(this.root, header, this.error ? this.failure(this.error) : h("div", { class: "loading-block" }, h("span", { class: "spinner" }), t("state.loading")));
      return;
    }
    const agg = body.aggregates;
    fill(
      this.root,
      header,
      this.alerts(body),
      this.losses(body.store?.losses),
      h(
        "div",
        { class: "status-grid" },
        h("div", { class: "kpis" }, this.kpis(agg)),
        h("div", { class: "chart-box" },
          h("div", { class: "chart-legend" },
            h("span", { class: "key key-calls" }, t("chart.calls")),
            h("span", { class: "key key-failed" }, t("chart.failed")),
            h("span", { class: "key key-p95" }, t("chart.p95"))),
          seriesChart(agg.series)),
      ),
      this.schedulers(body.schedulers || []),
    );
  }

  alerts(body) {
    const writers = body.store?.writers || [];
    const dropped = writers.reduce((sum, w) => sum + (w.dropped || 0), 0) ||
      (body.schedulers || []).reduce((sum, s) => sum + (s.store_dropped || 0), 0);
    const errors = [...writers.map((w) => w.last_error), ...(body.schedulers || []).map((s) => s.store_last_error)].filter(Boolean);
    if (!dropped && !errors.length) return null;
    return h(
      "div",
      { class: "alert alert-bad", role: "alert" },
      h("strong", {}, t("status.dropped", { n: dropped })),
      errors.length ? h("span", {}, " ", t("status.lastError"), " ", datum(errors[0], { class: "mono" })) : null,
    );
  }

  /** The store cannot be read: what the server says (a damaged or missing file is named so). */
  failure(error) {
    const kind = error.kind || "failed";
    const title = kind === "unavailable" && ["damaged", "missing"].includes(error.reason) ? `error.${error.reason}` : `error.${kind}`;
    return h("div", { class: "status-error", role: "alert" },
      h("strong", { class: "bad" }, t(title)), " ",
      h("span", { class: "muted" }, t(`${title}.hint`)),
      error.message && kind !== "signed-out" ? h("p", { class: "muted small" }, datum(error.message, { class: "mono" })) : null);
  }

  /** What the writers lost in the retention window (durable: shown after their process exited). */
  losses(losses) {
    if (!losses || (!losses.dropped_records && !losses.files_replaced)) return null;
    const latest = (losses.items || [])[0];
    return h(
      "div",
      { class: "alert alert-bad status-losses", role: "status" },
      losses.dropped_records ? h("strong", {}, t("status.losses", { n: losses.dropped_records, calls: number(losses.dropped_calls) })) : null,
      losses.files_replaced ? h("strong", {}, " ", t("status.filesReplaced", { n: losses.files_replaced })) : null,
      latest ? h("div", { class: "small" },
        t("status.lossLatest", { process: latest.process, ago: ago(latest.ended_at) }), " ",
        datum(latest.reason, { class: "mono" })) : null,
    );
  }

  kpis(agg) {
    const counts = agg.counts || {};
    const pair = (metric) => {
      const m = agg[metric] || {};
      return h("span", { class: "pair" },
        h("span", { class: "num" }, duration(m.p50)), h("span", { class: "muted" }, " / "), h("span", { class: "num" }, duration(m.p95)));
    };
    const tile = (label, value, extra) => h("div", { class: "kpi" }, h("div", { class: "kpi-label" }, label), h("div", { class: "kpi-value" }, value), extra || null);
    const tokens = agg.tokens || {};
    return [
      tile(t("status.calls"), h("span", { class: "num" }, number(agg.total)),
        h("div", { class: "status-counts" }, STATUSES.map((status) =>
          h("button", {
            type: "button",
            class: ["count-chip", `st-${status}`, counts[status] ? "" : "is-zero"],
            title: t("status.filterBy", { status: t(`status.${status}`) }),
            on: { click: () => this.actions.filterStatus(status) },
          }, h("span", { class: "dot" }), t(`status.${status}`), " ", h("span", { class: "num" }, compact(counts[status] || 0)))))),
      tile(t("status.errorRate"), h("span", { class: ["num", agg.error_rate > 0.05 ? "bad" : ""] }, percent(agg.error_rate)),
        h("div", { class: "muted small" }, t("status.retries", { n: agg.retries || 0 }))),
      tile(t("status.waitP"), pair("wait_ms"), h("div", { class: "muted small" }, t("status.p50p95"))),
      tile(t("status.firstTokenP"), pair("first_token_ms"), h("div", { class: "muted small" }, t("status.p50p95"))),
      tile(t("status.durationP"), pair("duration_ms"), h("div", { class: "muted small" }, t("status.p50p95"))),
      tile(t("status.tokens"), h("span", { class: "num" }, compact(tokens.input), h("span", { class: "muted" }, " → "), compact(tokens.output)),
        h("div", { class: "muted small" }, t("status.tokensDetail", { cached: compact(tokens.cached), reasoning: compact(tokens.reasoning) }))),
    ];
  }

  schedulers(rows) {
    if (!rows.length) return h("p", { class: "muted small schedulers-none" }, t("status.noScheduler"));
    const head = ["status.process", "status.scheduler", "status.state", "status.queue", "status.inFlight", "status.throttle",
      "status.lastDispatch", "status.oldestWait", "status.waiting"];
    return h(
      "table",
      { class: "table schedulers" },
      h("thead", {}, h("tr", {}, head.map((key) => h("th", {}, t(key))))),
      h("tbody", {}, rows.map((row) => h(
        "tr",
        { class: row.live ? "" : "is-stale" },
        h("td", {}, datum(row.process, { class: "mono" })),
        h("td", {}, datum(row.scheduler)),
        h("td", {}, h("span", { class: ["badge", row.live ? "badge-live" : "badge-stale"], title: row.heartbeat_at },
          row.live ? t("status.live") : t("status.stale", { ago: ago(row.heartbeat_at) }))),
        h("td", { class: "num" }, number(row.queue_depth), h("span", { class: "muted" }, ` / ${number(row.max_queue)}`)),
        h("td", { class: "num" }, number(row.in_flight), h("span", { class: "muted" }, ` / ${number(row.max_concurrency)}`)),
        h("td", { class: "num" }, row.min_interval_ms ? duration(row.min_interval_ms) : t("status.noThrottle")),
        h("td", { class: "num", title: row.last_dispatch_at || "" }, row.last_dispatch_at ? ago(row.last_dispatch_at) : "–"),
        h("td", { class: ["num", row.oldest_wait_ms > 10_000 ? "warn" : ""] }, duration(row.oldest_wait_ms)),
        h("td", { class: "waiting" }, (row.waiting || []).length
          ? (row.waiting || []).slice(0, 6).map((w) => h("button", {
            type: "button",
            class: "chip",
            title: w.call_id,
            on: { click: () => this.actions.openCall(w.call_id) },
          }, datum(w.source || w.call_id.slice(0, 8)), " ", h("span", { class: "muted num" }, w.since ? duration(Date.now() - Date.parse(w.since)) : "")))
          : h("span", { class: "muted" }, "–")),
      ))),
    );
  }
}
