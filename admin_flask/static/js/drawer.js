// The detail drawer of one call: status and error, the latency split, tokens, the event timeline
// (queued → dispatched → each retry with its attempt, cause and backoff → first token → end), the
// conversation, the request parameters, ids and labels, the raw JSON with a copy button, and
// "View parent task". While the call is in flight, live updates refresh it in place.

import { Latest } from "./api.js";
import { conversation, json, longText } from "./conversation.js";
import { copyText, datum, fill, h, link, safeUrl } from "./dom.js";
import { duration, number, preciseTime, t } from "./i18n.js";
import { latencyBar, segments } from "./latency.js";
import { statusPill } from "./calls.js";
import { errorState } from "./states.js";

const REFRESH_MS = 250;

export class Drawer {
  /** `actions`: {close(), viewTask(taskId), pagePrefix}. */
  constructor(root, api, actions) {
    this.root = root;
    this.api = api;
    this.actions = actions;
    this.callId = "";
    this.detail = null;
    this.latest = new Latest();
    this.timer = null;
    root.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        this.actions.close();
      }
    });
  }

  get isOpen() {
    return Boolean(this.callId);
  }

  async open(callId) {
    if (callId === this.callId && this.detail) return;
    this.callId = callId;
    this.detail = null;
    this.root.hidden = false;
    document.body.classList.add("has-drawer");
    fill(this.root, this.frame(h("div", { class: "loading-block" }, h("span", { class: "spinner" }), t("state.loading"))));
    await this.load(true);
  }

  close() {
    this.callId = "";
    this.detail = null;
    this.latest.controller?.abort();
    clearTimeout(this.timer);
    this.timer = null;
    this.root.hidden = true;
    document.body.classList.remove("has-drawer");
    fill(this.root);
  }

  async load(focus = false) {
    const callId = this.callId;
    let detail;
    try {
      detail = await this.latest.run((signal) => this.api.call(callId, { signal }));
    } catch (error) {
      if (callId !== this.callId) return;
      fill(this.root, this.frame(errorState(error, () => this.load())));
      return;
    }
    if (detail === Latest.STALE || callId !== this.callId) return;
    this.loadedAt = Date.now();
    const scroll = this.root.querySelector(".drawer-body")?.scrollTop || 0;
    this.detail = detail;
    this.render();
    const body = this.root.querySelector(".drawer-body");
    if (body) body.scrollTop = scroll;
    if (focus) this.root.querySelector(".drawer-close")?.focus({ preventScroll: true });
  }

  /** The live feed saw this call change: refresh the detail now, then at most every REFRESH_MS. */
  changed(callId) {
    if (callId !== this.callId || this.timer) return;
    const wait = Math.max(0, (this.loadedAt || 0) + REFRESH_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.load();
    }, wait);
  }

  rerender() {
    if (this.detail) this.render();
    else if (this.callId) this.load();
  }

  frame(content, head = null) {
    return h("div", { class: "drawer-panel", role: "dialog", "aria-modal": "false", "aria-label": t("drawer.label") },
      h("div", { class: "drawer-head" },
        head || h("span", { class: "muted" }, datum(this.callId, { class: "mono" })),
        h("button", { type: "button", class: "drawer-close", title: t("drawer.close"), "aria-label": t("drawer.close"),
          on: { click: () => this.actions.close() } }, "×")),
      h("div", { class: "drawer-body" }, content));
  }

  render() {
    const d = this.detail;
    const head = h("div", { class: "drawer-title" },
      statusPill(d.status),
      datum(d.model, { class: "mono strong" }),
      h("span", { class: "muted small" }, [d.operation, d.api_type, d.stream ? t("drawer.streamed") : null].filter(Boolean).map((v, i) => [i ? " · " : "", datum(v)])),
      this.taskButton(d));
    fill(this.root, this.frame([
      d.error_type || d.error_message ? this.error(d) : null,
      this.timing(d),
      section(t("drawer.timeline"), this.timeline(d), "timeline"),
      section(t("drawer.conversation"), conversation(d), "conversation"),
      section(t("drawer.params"), d.request_params ? longText(json(d.request_params), "json") : h("p", { class: "muted" }, "–"), "params"),
      section(t("drawer.details"), this.details(d), "details"),
      this.raw(d),
    ], head));
  }

  taskButton(d) {
    const taskId = d.task?.task_id || d.parent_task_id;
    if (!taskId) return null;
    const url = d.task?.url;
    const internal = this.isInternalTaskLink(url);
    const a = link(url, {
      class: "btn btn-task",
      title: t("drawer.viewTaskTitle"),
      on: {
        click: (event) => {
          if ((internal || !a.href) && !event.ctrlKey && !event.metaKey && !event.shiftKey && event.button === 0) {
            event.preventDefault();
            this.actions.viewTask(taskId);
          }
        },
      },
    }, "↗ ", t("drawer.viewTask"));
    if (!a.href) a.setAttribute("role", "button");
    if (!a.href) a.tabIndex = 0;
    return a;
  }

  /** Whether `url` is this admin's own task view (then the page switches tabs instead of leaving). */
  isInternalTaskLink(url) {
    const resolved = safeUrl(url);
    if (!resolved) return false;
    const target = new URL(resolved);
    const prefix = this.actions.pagePrefix.replace(/\/$/, "");
    return target.origin === window.location.origin && (target.pathname === prefix || target.pathname === `${prefix}/`)
      && target.searchParams.get("tab") === "tasks";
  }

  error(d) {
    return h("div", { class: "alert alert-bad drawer-error", role: "alert" },
      h("div", { class: "alert-title" }, datum(d.error_type || t("drawer.error"), { class: "mono strong" })),
      d.error_message ? longText(d.error_message) : null);
  }

  timing(d) {
    const s = segments(d);
    const total = s.wait + s.first + s.generation;
    const streamed = d.first_token_ms !== null && d.first_token_ms !== undefined;
    const stat = (cls, label, value) => h("div", { class: ["stat", cls] }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value num" }, value));
    return h("div", { class: "drawer-timing" },
      latencyBar(d, total, { large: true }),
      h("div", { class: "stats" },
        stat("key-wait", t("latency.wait"), duration(d.wait_ms)),
        stat("key-first", streamed ? t("latency.first") : t("latency.response"), duration(streamed ? d.first_token_ms : d.duration_ms)),
        streamed ? stat("key-gen", t("latency.generation"), duration(s.running ? null : s.generation)) : null,
        stat("", t("col.duration"), duration(d.duration_ms)),
        stat("", t("drawer.total"), duration(d.duration_ms === null ? null : total)),
        stat(d.retry_count ? "is-warn" : "", t("col.retries"), number(d.retry_count)),
        stat("", t("tokens.input"), number(d.input_tokens)),
        stat("", t("tokens.output"), number(d.output_tokens)),
        stat("", t("tokens.cached"), number(d.cached_tokens)),
        stat("", t("tokens.reasoning"), number(d.reasoning_tokens))));
  }

  timeline(d) {
    const events = Array.isArray(d.events) ? d.events : [];
    if (!events.length) return h("p", { class: "muted" }, t("drawer.noEvents"));
    const origin = Date.parse(events[0].at);
    return h("ol", { class: "events" }, events.map((event) => {
      const data = event.data && typeof event.data === "object" ? event.data : {};
      const known = ["queued", "dispatched", "retry", "first_token", "succeeded", "failed", "cancelled"].includes(event.kind);
      return h("li", { class: ["event", `ev-${known ? event.kind : "other"}`] },
        h("span", { class: "event-dot" }),
        h("span", { class: "event-offset num" }, `+${duration(Date.parse(event.at) - origin)}`),
        h("span", { class: "event-kind" }, known ? t(`event.${event.kind}`) : datum(event.kind)),
        h("span", { class: "event-data" }, this.eventDetails(event.kind, data)),
        h("span", { class: "event-at num muted", title: event.at }, preciseTime(event.at)));
    }));
  }

  eventDetails(kind, data) {
    const bits = [];
    const add = (key, value) => bits.push(h("span", { class: "kv" }, h("span", { class: "muted" }, t(key), " "), value));
    if (kind === "retry") {
      if (data.attempt !== undefined) add("event.attempt", h("span", { class: "num" }, number(data.attempt)));
      if (data.status_code !== undefined) add("event.cause", datum(`HTTP ${data.status_code}`, { class: "mono" }));
      else if (data.error) add("event.cause", datum(data.error, { class: "mono" }));
      if (data.backoff_ms !== undefined) add("event.backoff", h("span", { class: "num" }, duration(data.backoff_ms)));
    }
    if (kind === "dispatched" && data.wait_ms !== undefined) add("latency.wait", h("span", { class: "num" }, duration(data.wait_ms)));
    if (kind === "first_token" && data.first_token_ms !== undefined) add("latency.first", h("span", { class: "num" }, duration(data.first_token_ms)));
    if (data.duration_ms !== undefined && ["succeeded", "failed", "cancelled"].includes(kind)) add("col.duration", h("span", { class: "num" }, duration(data.duration_ms)));
    if (data.error_type) add("drawer.error", datum(data.error_type, { class: "mono" }));
    if (data.record_dropped) bits.push(h("span", { class: "warn" }, t("event.recordDropped")));
    return bits;
  }

  details(d) {
    const row = (key, value) => [h("dt", {}, t(key)), h("dd", {}, value)];
    const mono = (v) => datum(v, { class: "mono" });
    const copyable = (v) => v ? h("span", { class: "copyable" }, mono(v), copyButton(v)) : mono(v);
    return h("dl", { class: "kv-grid" },
      row("col.source", datum(d.source)),
      row("col.requestedBy", datum(d.requested_by)),
      row("drawer.task", d.parent_task_id ? [datum(d.task?.name || d.parent_task_name), " ", mono(d.parent_task_id)] : datum(null)),
      row("drawer.callId", copyable(d.call_id)),
      row("drawer.traceId", copyable(d.trace_id)),
      row("drawer.spanId", copyable(d.span_id)),
      row("drawer.parentSpanId", mono(d.parent_span_id)),
      row("drawer.process", mono(d.process)),
      row("drawer.server", mono(d.server_address)),
      row("drawer.provider", datum(d.provider)),
      row("drawer.responseModel", mono(d.response_model)),
      row("drawer.responseId", mono(d.response_id)),
      row("drawer.finishReasons", datum(Array.isArray(d.finish_reasons) ? d.finish_reasons.join(", ") : d.finish_reasons)),
      row("drawer.enqueuedAt", h("span", { class: "num", title: d.enqueued_at || "" }, preciseTime(d.enqueued_at))),
      row("drawer.startedAt", h("span", { class: "num", title: d.started_at || "" }, preciseTime(d.started_at))),
      row("drawer.firstTokenAt", h("span", { class: "num", title: d.first_token_at || "" }, preciseTime(d.first_token_at))),
      row("drawer.endedAt", h("span", { class: "num", title: d.ended_at || "" }, preciseTime(d.ended_at))),
      d.attributes && Object.keys(d.attributes).length ? row("drawer.attributes", longText(json(d.attributes), "json")) : null);
  }

  raw(d) {
    const text = JSON.stringify(d, null, 2);
    const holder = h("div", { class: "raw-holder" });
    const details = h("details", { class: "section raw" },
      h("summary", { class: "section-title" }, t("drawer.raw"), h("span", { class: "muted small" }, " ", t("drawer.rawSize", { n: text.length }))),
      h("div", { class: "raw-actions" }, copyButton(text, t("drawer.copyJson"))),
      holder);
    details.addEventListener("toggle", () => {
      if (details.open && !holder.firstChild) holder.appendChild(longText(text, "json"));
    });
    return details;
  }
}

function section(title, content, cls) {
  return h("section", { class: ["section", cls] }, h("h3", { class: "section-title" }, title), content);
}

function copyButton(text, label = t("drawer.copy")) {
  const button = h("button", { type: "button", class: "btn-link copy", title: label }, label);
  button.addEventListener("click", async () => {
    const done = await copyText(text);
    button.textContent = done ? t("drawer.copied") : t("drawer.copyFailed");
    setTimeout(() => { button.textContent = label; }, 1500);
  });
  return button;
}
