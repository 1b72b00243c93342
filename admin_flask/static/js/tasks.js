// The Tasks tab: the recorded tasks (name, id, status, start, duration, calls, failed calls,
// tokens) and one task's calls on a timeline: where each waited, started, got its first token and
// ended, so a serial scheduler's queueing shows at a glance. A call's lane opens its drawer.

import { Latest } from "./api.js";
import { datum, fill, h, svg } from "./dom.js";
import { compact, dateTime, duration, number, t } from "./i18n.js";
import { TASK_STATUSES } from "./state.js";
import { emptyState, errorState, loadingRows } from "./states.js";
import { statusPill } from "./calls.js";

const PAGE_SIZE = 50;
const LANE_H = 22;
const LABEL_W = 210;

export class TasksView {
  /** `actions`: {update(change), openCall(callId), failed(error), recovered()}. */
  constructor(root, api, actions) {
    this.root = root;
    this.api = api;
    this.actions = actions;
    this.listLatest = new Latest();
    this.detailLatest = new Latest();
    this.page = null;
    this.detail = null;
    this.state = null;
    this.selected = -1;
    this.focusCall = ""; // the call whose "View parent task" led here: its lane is marked
    this.build();
  }

  build() {
    this.search = h("input", {
      type: "search", class: "search", id: "task-search", autocomplete: "off",
      on: {
        input: () => {
          clearTimeout(this.searchTimer);
          this.searchTimer = setTimeout(() => this.actions.update((s) => { s.taskQ = this.search.value.trim(); s.taskPage = 1; }), 350);
        },
      },
    });
    this.statusBox = h("div", { class: "status-chips", role: "group" });
    this.listEl = h("div", { class: "task-list" });
    this.pagerEl = h("div", { class: "pager" });
    this.detailEl = h("div", { class: "task-detail", hidden: true });
    fill(this.root,
      this.detailEl,
      h("div", { class: "card" },
        h("div", { class: "card-head" }, h("h2", { class: "tasks-title" }),
          h("span", { class: "search-box" }, this.search), this.statusBox),
        this.listEl, this.pagerEl));
  }

  async load(state) {
    this.state = state;
    this.renderFilters();
    if (!this.page) fill(this.listEl, loadingRows(6));
    const params = { page: state.taskPage, page_size: PAGE_SIZE };
    if (state.taskQ) params.q = state.taskQ;
    if (state.taskStatus.length) params.status = state.taskStatus.join(",");
    const detail = state.task ? this.loadDetail(state.task) : (this.hideDetail(), null);
    try {
      const page = await this.listLatest.run((signal) => this.api.tasks(params, { signal }));
      if (page === Latest.STALE) return;
      this.page = page;
      this.renderList();
      this.actions.recovered?.();
    } catch (error) {
      this.page = null;
      fill(this.pagerEl);
      fill(this.listEl, errorState(error, () => this.load(this.state)));
      this.actions.failed?.(error);
    }
    await detail;
  }

  renderFilters() {
    const state = this.state;
    this.root.querySelector(".tasks-title").textContent = t("tasks.title");
    if (document.activeElement !== this.search) this.search.value = state.taskQ;
    this.search.placeholder = t("tasks.search");
    this.search.setAttribute("aria-label", t("tasks.search"));
    this.statusBox.setAttribute("aria-label", t("filters.status"));
    fill(this.statusBox, TASK_STATUSES.map((status) => h("button", {
      type: "button",
      class: ["status-chip", `st-${status}`, state.taskStatus.includes(status) ? "is-on" : ""],
      "aria-pressed": String(state.taskStatus.includes(status)),
      on: {
        click: () => this.actions.update((s) => {
          const set = new Set(s.taskStatus);
          if (set.has(status)) set.delete(status);
          else set.add(status);
          s.taskStatus = [...set];
          s.taskPage = 1;
        }),
      },
    }, h("span", { class: "dot" }), t(`status.${status}`))));
  }

  renderList() {
    const page = this.page;
    if (!page.items.length) {
      fill(this.pagerEl);
      fill(this.listEl, this.state.taskQ || this.state.taskStatus.length
        ? emptyState("noMatch", () => this.actions.update((s) => { s.taskQ = ""; s.taskStatus = []; s.taskPage = 1; }))
        : emptyState("noTasks"));
      return;
    }
    const cols = ["name", "taskId", "status", "started", "duration", "calls", "failedCalls", "tokens", "process"];
    const numeric = new Set(["duration", "calls", "failedCalls", "tokens"]);
    this.rows = page.items.map((task, index) => h("tr", {
      class: ["task-row", task.task_id === this.state.task ? "is-highlighted" : ""],
      data: { taskId: task.task_id, index: String(index) },
      tabindex: "-1",
      on: { click: () => this.open(task.task_id) },
    },
    h("td", { class: "clip strong" }, datum(task.name)),
    h("td", { class: "clip" }, datum(task.task_id, { class: "mono" })),
    h("td", {}, statusPill(task.status)),
    h("td", { class: "time", title: task.started_at }, dateTime(task.started_at)),
    h("td", { class: "num" }, duration(task.duration_ms)),
    h("td", { class: "num" }, number(task.calls)),
    h("td", { class: ["num", task.failed_calls ? "bad" : "muted"] }, number(task.failed_calls)),
    h("td", { class: "num nowrap" }, compact(task.input_tokens), h("span", { class: "muted" }, " / "), compact(task.output_tokens)),
    h("td", { class: "clip" }, datum(task.process, { class: "mono muted" }))));
    fill(this.listEl, h("table", { class: "table tasks" },
      h("thead", {}, h("tr", {}, cols.map((key) => h("th", { class: numeric.has(key) ? "num" : "" }, t(`tasks.col.${key}`))))),
      h("tbody", {}, this.rows)));
    const pages = Math.max(1, Math.ceil(page.total / page.page_size));
    const go = (p) => this.actions.update((s) => { s.taskPage = p; });
    fill(this.pagerEl,
      h("span", { class: "muted" }, t("pager.range", {
        first: number(Math.min(page.total, (page.page - 1) * page.page_size + 1)),
        last: number(Math.min(page.total, page.page * page.page_size)),
        total: number(page.total),
      })),
      h("span", { class: "pager-buttons" },
        h("button", { type: "button", class: "btn", disabled: page.page <= 1, "aria-label": t("pager.previous"), on: { click: () => go(page.page - 1) } }, "‹"),
        h("span", { class: "muted" }, t("pager.of", { pages: number(pages) })),
        h("button", { type: "button", class: "btn", disabled: page.page >= pages, "aria-label": t("pager.next"), on: { click: () => go(page.page + 1) } }, "›")));
    this.highlight();
  }

  /** Draw again what is loaded (the language changed). */
  rerender() {
    if (!this.state) return;
    this.renderFilters();
    if (this.page) this.renderList();
    if (this.detail) this.renderDetail();
  }

  /** Only the open task changed: highlight it and show its detail (or hide the detail). */
  showTask(state) {
    this.state = state;
    this.highlight();
    if (state.task) this.loadDetail(state.task);
    else this.hideDetail();
  }

  open(taskId) {
    this.actions.update((s) => { s.task = s.task === taskId ? "" : taskId; });
  }

  highlight() {
    for (const row of this.rows || []) {
      const on = row.dataset.taskId === this.state.task;
      row.classList.toggle("is-highlighted", on);
      if (on) row.scrollIntoView({ block: "nearest" });
    }
  }

  hideDetail() {
    this.detail = null;
    this.detailEl.hidden = true;
    fill(this.detailEl);
  }

  async loadDetail(taskId) {
    this.detailEl.hidden = false;
    if (!this.detail || this.detail.task_id !== taskId) {
      fill(this.detailEl, h("div", { class: "card" }, h("div", { class: "loading-block" }, h("span", { class: "spinner" }), t("state.loading"))));
    }
    try {
      const detail = await this.detailLatest.run((signal) => this.api.task(taskId, { signal }));
      if (detail === Latest.STALE) return;
      this.detail = detail;
      this.renderDetail();
    } catch (error) {
      this.detail = null;
      fill(this.detailEl, h("div", { class: "card" }, errorState(error, () => this.loadDetail(taskId))));
    }
  }

  /** A call of the open task changed: reload the task (coalesced). */
  changed(call) {
    if (this.detail && call.parent_task_id === this.detail.task_id) {
      clearTimeout(this.detailTimer);
      this.detailTimer = setTimeout(() => this.loadDetail(this.detail.task_id), 250);
    }
    if (this.page && this.state?.taskPage === 1 && call.parent_task_id) {
      clearTimeout(this.listTimer);
      this.listTimer = setTimeout(() => this.load(this.state), 1000);
    }
  }

  renderDetail() {
    const task = this.detail;
    const attributes = task.attributes && typeof task.attributes === "object" ? Object.entries(task.attributes) : [];
    fill(this.detailEl, h("div", { class: "card task-card is-highlighted", data: { taskId: task.task_id } },
      h("div", { class: "card-head" },
        h("h2", {}, datum(task.name)),
        statusPill(task.status),
        datum(task.task_id, { class: "mono muted" }),
        h("span", { class: "spacer" }),
        h("button", { type: "button", class: "drawer-close", "aria-label": t("drawer.close"), title: t("drawer.close"),
          on: { click: () => this.actions.update((s) => { s.task = ""; }) } }, "×")),
      h("div", { class: "task-facts" },
        fact(t("tasks.col.started"), h("span", { class: "num", title: task.started_at }, dateTime(task.started_at, { full: true }))),
        fact(t("tasks.col.duration"), h("span", { class: "num" }, duration(task.duration_ms))),
        fact(t("tasks.col.calls"), h("span", { class: "num" }, number(Array.isArray(task.calls) ? task.calls.length : task.calls))),
        fact(t("tasks.col.failedCalls"), h("span", { class: ["num", task.failed_calls ? "bad" : ""] }, number(task.failed_calls))),
        fact(t("tasks.col.tokens"), h("span", { class: "num" }, number(task.input_tokens), " / ", number(task.output_tokens))),
        fact(t("tasks.col.process"), datum(task.process, { class: "mono" })),
        fact(t("drawer.traceId"), datum(task.trace_id, { class: "mono" })),
        attributes.map(([key, value]) => fact(datum(key), datum(typeof value === "string" ? value : JSON.stringify(value), { class: "mono" })))),
      h("h3", { class: "section-title" }, t("tasks.timeline")),
      this.timeline(task),
      task.calls_truncated ? h("p", { class: "muted small" }, t("tasks.truncated", { n: task.calls.length })) : null));
    this.detailEl.hidden = false;
    this.detailEl.querySelector(".task-card").scrollIntoView({ block: "nearest" });
  }

  timeline(task) {
    const calls = Array.isArray(task.calls) ? task.calls : [];
    if (!calls.length) return h("p", { class: "muted" }, t("tasks.noCalls"));
    const now = Date.now();
    const time = (iso) => (iso ? Date.parse(iso) : null);
    const start = Math.min(time(task.started_at) ?? Infinity, ...calls.map((c) => time(c.enqueued_at)));
    const end = Math.max(time(task.ended_at) ?? 0, ...calls.map((c) => time(c.ended_at) ?? now));
    const span = Math.max(1, end - start);
    const width = 1000;
    const x = (ms) => ((ms - start) / span) * width;
    const ticks = [0, 0.25, 0.5, 0.75, 1];
    const axis = h("div", { class: "tl-axis" }, h("span", { class: "tl-label" }),
      h("div", { class: "tl-track" }, ticks.map((f) => {
        const tick = h("span", { class: "tl-tick num" }, duration(f * span));
        tick.style.left = `${f * 100}%`;
        return tick;
      })));
    const lanes = calls.map((call) => {
      const enq = time(call.enqueued_at);
      const started = time(call.started_at);
      const first = time(call.first_token_at);
      const ended = time(call.ended_at) ?? now;
      const bar = svg("svg", { class: "tl-bar", viewBox: `0 0 ${width} ${LANE_H}`, preserveAspectRatio: "none", "aria-hidden": "true" });
      const rect = (from, to, cls) => {
        if (from === null || to === null || to < from) return;
        bar.appendChild(svg("rect", { x: x(from), y: 5, width: Math.max(2, x(to) - x(from)), height: LANE_H - 10, class: cls }));
      };
      rect(enq, started ?? ended, "tl-wait");
      if (started !== null) {
        if (first !== null) {
          rect(started, first, "tl-first");
          rect(first, ended, "tl-gen");
        } else rect(started, ended, "tl-first");
      }
      const mark = (at, cls) => { if (at !== null) bar.appendChild(svg("rect", { x: x(at) - 1, y: 2, width: 2, height: LANE_H - 4, class: cls })); };
      mark(started, "tl-mark-start");
      mark(first, "tl-mark-first");
      if (call.ended_at) mark(ended, `tl-mark-end st-${call.status}`);
      const label = h("span", { class: "tl-label" }, h("span", { class: ["dot", `st-${call.status}`] }),
        datum(call.model, { class: "mono" }), " ", datum(call.prompt_preview, { class: "muted" }));
      return h("button", {
        type: "button",
        class: ["tl-lane", `st-${call.status}`, call.call_id === this.focusCall ? "is-focus" : ""],
        data: { callId: call.call_id },
        title: t("tasks.laneTitle", {
          wait: duration(call.wait_ms), first: duration(call.first_token_ms), duration: duration(call.duration_ms),
        }),
        on: { click: () => this.actions.openCall(call.call_id) },
      }, label, h("span", { class: "tl-track" }, bar), h("span", { class: "tl-times num muted" },
        duration(call.wait_ms), " · ", duration(call.duration_ms)));
    });
    return h("div", { class: "tl" }, axis, lanes,
      h("div", { class: "tl-legend" },
        h("span", { class: "key key-wait" }, t("latency.wait")),
        h("span", { class: "key key-first" }, t("latency.first")),
        h("span", { class: "key key-gen" }, t("latency.generation")),
        h("span", { class: "muted small" }, t("tasks.timelineHint"))));
  }

  // -- keyboard ----------------------------------------------------------------------------------

  move(step) {
    if (!this.rows?.length) return;
    this.selected = Math.max(0, Math.min(this.rows.length - 1, this.selected + step));
    this.rows.forEach((row, i) => row.classList.toggle("is-selected", i === this.selected));
    this.rows[this.selected].scrollIntoView({ block: "nearest" });
    this.rows[this.selected].focus({ preventScroll: true });
  }

  openSelected() {
    const row = this.rows?.[this.selected];
    if (row) this.open(row.dataset.taskId);
  }

  focusSearch() {
    this.search.focus();
    this.search.select();
  }
}

function fact(label, value) {
  return h("div", { class: "fact" }, h("span", { class: "fact-label" }, label), h("span", { class: "fact-value" }, value));
}
