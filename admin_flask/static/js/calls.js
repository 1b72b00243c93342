// The call list: the current filter's numbers (p50/p95, error rate, failures by error type and by
// model), the table with each call's latency split, the exact total and pages, and live updates:
// a call on the page changes in place; a new matching call appears at the top of page 1, or, on
// other pages and while the admin reads, is counted in an "N new calls" notice.

import { datum, fill, h, link } from "./dom.js";
import { compact, dateTime, duration, number, percent, t } from "./i18n.js";
import { latencyBar, latencyLegend, totalMs } from "./latency.js";
import { defaultState, hasFilters, matches } from "./state.js";
import { emptyState, errorState, loadingRows } from "./states.js";

export class CallList {
  /** `actions`: {open(callId), update(change), showNew(), retry(), exportUrl()}. */
  constructor(elements, actions) {
    this.summaryEl = elements.summary;
    this.noticeEl = elements.notice;
    this.listEl = elements.list;
    this.pagerEl = elements.pager;
    this.actions = actions;
    this.page = null; // the API's {items, total, page, page_size}
    this.state = null;
    this.selected = -1;
    this.openId = "";
    this.fresh = new Set(); // new matching calls not shown yet
    this.rows = new Map(); // call_id -> <tr>
  }

  // -- rendering ---------------------------------------------------------------------------------

  loading(state) {
    this.state = state;
    this.listEl.setAttribute("aria-busy", "true");
    if (!this.page) fill(this.listEl, loadingRows());
    else this.listEl.classList.add("is-loading");
  }

  loaded() {
    this.listEl.classList.remove("is-loading");
    this.listEl.removeAttribute("aria-busy");
  }

  show(state, page) {
    this.state = state;
    this.page = page;
    this.fresh.clear();
    this.loaded();
    this.renderNotice();
    this.render();
  }

  fail(error) {
    this.page = null;
    this.loaded();
    fill(this.summaryEl);
    fill(this.pagerEl);
    fill(this.listEl, errorState(error, () => this.actions.retry()));
  }

  render() {
    const page = this.page;
    this.rows.clear();
    if (!page.items.length) {
      fill(this.pagerEl);
      if (hasFilters(this.state.filters)) {
        fill(this.listEl, emptyState("noMatch", () => this.actions.update((s) => {
          s.filters = defaultState().filters;
          s.page = 1;
        })));
      } else if (page.total > 0) {
        fill(this.listEl, emptyState("pastEnd", () => this.actions.update((s) => { s.page = 1; })));
      } else {
        fill(this.listEl, emptyState("noCalls"));
      }
      return;
    }
    const scale = Math.max(...page.items.map((c) => totalMs(c)));
    const head = [
      ["status", ""], ["started", ""], ["model", ""], ["source", ""], ["requestedBy", ""],
      ["latency", "col-latency"], ["wait", "num"], ["firstToken", "num"], ["duration", "num"],
      ["retries", "num"], ["tokens", "num"], ["preview", "col-preview"],
    ];
    const sortKey = { wait: "wait", firstToken: "first_token", duration: "duration" };
    const tbody = h("tbody", {}, page.items.map((call, index) => this.row(call, index, scale)));
    fill(
      this.listEl,
      h("table", { class: "table calls", "aria-rowcount": String(page.total) },
        h("colgroup", {}, head.map(([key]) => h("col", { class: `c-${key}` }))),
        h("thead", {}, h("tr", {}, head.map(([key, cls]) => h("th", {
          class: [cls, sortKey[key] && this.state.sort === sortKey[key] ? "is-sorted" : ""],
          scope: "col",
          title: key === "latency" ? `${t("latency.wait")} | ${t("latency.first")} | ${t("latency.generation")}` : null,
        }, t(`col.${key}`))))),
        tbody),
    );
    this.tbody = tbody;
    this.scale = scale;
    this.renderPager();
    this.highlight();
  }

  row(call, index, scale) {
    const preview = call.error_type
      ? [h("span", { class: "err-type" }, datum(call.error_type)), " ", datum(call.error_message, { class: "muted" })]
      : [datum(call.prompt_preview), h("span", { class: "arrow" }, " → "), datum(call.response_preview, { class: "muted" })];
    const tr = h(
      "tr",
      {
        class: ["call-row", `st-${call.status}`],
        data: { callId: call.call_id, index: String(index) },
        tabindex: "-1",
        on: { click: (event) => { if (!event.target.closest("a,button")) this.actions.open(call.call_id); } },
      },
      h("td", {}, statusPill(call.status)),
      h("td", { class: "time", title: call.enqueued_at }, dateTime(call.enqueued_at)),
      h("td", { class: "clip" }, datum(call.model, { class: "mono" })),
      h("td", { class: "clip" }, datum(call.source)),
      h("td", { class: "clip" }, datum(call.requested_by)),
      h("td", { class: "col-latency" }, latencyBar(call, scale)),
      h("td", { class: "num" }, duration(call.wait_ms)),
      h("td", { class: "num" }, duration(call.first_token_ms)),
      h("td", { class: "num" }, duration(call.duration_ms)),
      h("td", { class: ["num", call.retry_count ? "warn" : "muted"] }, number(call.retry_count)),
      h("td", { class: "num nowrap", title: t("tokens.title", { input: number(call.input_tokens), output: number(call.output_tokens) }) },
        compact(call.input_tokens), h("span", { class: "muted" }, " / "), compact(call.output_tokens)),
      h("td", { class: "col-preview" }, h("div", { class: "preview" },
        call.parent_task_name ? h("span", { class: "task-tag", title: call.parent_task_id }, datum(call.parent_task_name)) : null,
        preview)),
    );
    this.rows.set(call.call_id, tr);
    return tr;
  }

  renderSummary(facets = this.facets, error = null) {
    this.facets = error ? null : facets;
    if (error || !facets) {
      fill(this.summaryEl);
      return;
    }
    const failures = (facets.error_types || []).filter((f) => f.value);
    const models = (facets.failures_by_model || []).filter((f) => f.value);
    const metric = (key, label) => h("span", { class: "metric" }, h("span", { class: "muted" }, label, " "),
      h("span", { class: "num" }, duration(facets[key]?.p50)), h("span", { class: "muted" }, " / "), h("span", { class: "num" }, duration(facets[key]?.p95)));
    const group = (label, items, apply) => items.length ? h("span", { class: "groups" }, h("span", { class: "muted" }, label, " "),
      items.slice(0, 5).map((item) => h("button", {
        type: "button", class: "chip chip-bad", title: t("summary.filterOn"),
        on: { click: () => this.actions.update((s) => { apply(s, item.value); s.filters.status = ["failed"]; s.page = 1; }) },
      }, datum(item.value), " ", h("span", { class: "num" }, compact(item.count))))) : null;
    fill(
      this.summaryEl,
      h("div", { class: "summary-line" },
        h("strong", { class: "num total" }, t("summary.total", { n: facets.total })),
        this.actions.exportUrl ? link(this.actions.exportUrl(), { class: "btn-link export", download: "", title: t("filters.exportTitle") }, "⤓ ", t("filters.export")) : null,
        metric("duration_ms", t("summary.duration")),
        metric("first_token_ms", t("summary.firstToken")),
        metric("wait_ms", t("summary.wait")),
        h("span", { class: "metric" }, h("span", { class: "muted" }, t("summary.errorRate"), " "),
          h("span", { class: ["num", facets.error_rate > 0.05 ? "bad" : ""] }, percent(facets.error_rate))),
        h("span", { class: "spacer" }),
        latencyLegend()),
      failures.length || models.length
        ? h("div", { class: "summary-line" },
          group(t("summary.byError"), failures, (s, v) => { s.filters.error_type = v; }),
          group(t("summary.byModel"), models, (s, v) => { s.filters.model = v; }))
        : null,
    );
  }

  renderPager() {
    const { total, page, page_size: size } = this.page;
    const pages = Math.max(1, Math.ceil(total / size));
    const go = (p) => this.actions.update((s) => { s.page = p; });
    const button = (label, target, disabled, key) => h("button", {
      type: "button", class: "btn", disabled, "aria-label": t(key), title: t(key), on: { click: () => go(target) },
    }, label);
    const input = h("input", {
      type: "number", min: "1", max: String(pages), value: String(page), class: "page-input", "aria-label": t("pager.page"),
      on: { change: (e) => go(Math.min(pages, Math.max(1, Number.parseInt(e.target.value, 10) || 1))) },
    });
    fill(
      this.pagerEl,
      h("span", { class: "muted" }, t("pager.range", {
        first: number(Math.min(total, (page - 1) * size + 1)),
        last: number(Math.min(total, page * size)),
        total: number(total),
      })),
      h("span", { class: "pager-buttons" },
        button("«", 1, page <= 1, "pager.first"),
        button("‹", page - 1, page <= 1, "pager.previous"),
        h("label", { class: "page-of" }, t("pager.pageLabel"), " ", input, " ", t("pager.of", { pages: number(pages) })),
        button("›", page + 1, page >= pages, "pager.next"),
        button("»", pages, page >= pages, "pager.last")),
    );
  }

  renderNotice() {
    const n = this.fresh.size;
    if (!n) {
      this.noticeEl.hidden = true;
      return;
    }
    fill(this.noticeEl, h("button", { type: "button", class: "notice-button", on: { click: () => this.actions.showNew() } },
      h("span", { class: "pulse" }), t("notice.newCalls", { n })));
    this.noticeEl.hidden = false;
  }

  // -- live --------------------------------------------------------------------------------------

  /** A call changed (from the live feed); `reading` is true while the admin reads. */
  live(call, reading) {
    if (!this.page || !this.state) return;
    const existing = this.rows.get(call.call_id);
    if (existing) {
      const index = Number(existing.dataset.index);
      this.page.items[index] = call;
      const scale = Math.max(this.scale, totalMs(call));
      const next = this.row(call, index, scale);
      if (existing.classList.contains("is-selected")) next.classList.add("is-selected");
      if (call.call_id === this.openId) next.classList.add("is-open");
      existing.replaceWith(next);
      return;
    }
    if (this.fresh.has(call.call_id) || !matches(call, this.state.filters)) return;
    const first = this.page.items[0];
    if (first && Date.parse(call.enqueued_at) < Date.parse(first.enqueued_at) && this.state.page === 1) return; // an old call
    const atTop = this.state.page === 1 && this.state.sort === "newest";
    if (atTop && !reading) {
      this.page.items.unshift(call);
      this.page.total += 1;
      if (this.page.items.length > this.page.page_size) this.page.items.length = this.page.page_size;
      this.render();
      this.rows.get(call.call_id)?.classList.add("is-new");
      return;
    }
    this.fresh.add(call.call_id);
    this.renderNotice();
  }

  // -- selection (keyboard) ----------------------------------------------------------------------

  move(step) {
    if (!this.page || !this.page.items.length) return;
    this.selected = Math.max(0, Math.min(this.page.items.length - 1, this.selected + step));
    this.highlight(true);
  }

  selectedId() {
    return this.page?.items[this.selected]?.call_id || null;
  }

  setOpen(callId) {
    this.openId = callId;
    if (callId && this.page) {
      const index = this.page.items.findIndex((c) => c.call_id === callId);
      if (index >= 0) this.selected = index;
    }
    this.highlight();
  }

  highlight(scroll = false) {
    for (const tr of this.rows.values()) {
      tr.classList.toggle("is-selected", Number(tr.dataset.index) === this.selected);
      tr.classList.toggle("is-open", tr.dataset.callId === this.openId);
    }
    const tr = this.tbody?.children[this.selected];
    if (tr && scroll) {
      tr.scrollIntoView({ block: "nearest" });
      tr.focus({ preventScroll: true });
    }
  }

  /** Whether the admin is looking further down the list (new rows would move what they read). */
  scrolledAway() {
    const rect = this.listEl.getBoundingClientRect();
    return rect.top < -40 || this.selected > 0;
  }
}

export function statusPill(status) {
  return h("span", { class: ["pill", `st-${status}`] }, h("span", { class: "dot" }), t(`status.${status}`));
}
