// The view state lives in the URL: a view is shareable, survives a reload, and back/forward work.
// Filter names are the list API's (docs/contracts/http-apis.md), so a URL reads like its API query.

export const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
export const TASK_STATUSES = ["running", "succeeded", "failed"];
export const SORTS = ["newest", "duration", "first_token", "wait"];
export const RANGES = ["15m", "1h", "6h", "24h", "7d"];
export const WINDOWS = ["1h", "24h", "7d"];
export const SLOW_METRICS = ["min_duration_ms", "min_first_token_ms", "min_wait_ms"];
export const TEXT_FILTERS = ["source", "requested_by", "model", "error_type", "parent_task_id"];
export const PAGE_SIZE = 50;

const RANGE_MS = { "15m": 15 * 60e3, "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3 };

/** The default view: the Tasks tab, every call newest first. */
export function defaultState() {
  return {
    tab: "tasks",
    filters: { status: [], range: "", from: "", to: "", q: "", ...Object.fromEntries(TEXT_FILTERS.map((k) => [k, ""])),
      ...Object.fromEntries(SLOW_METRICS.map((k) => [k, ""])) },
    sort: "newest",
    page: 1,
    window: "1h",
    call: "",
    task: "",
    taskPage: 1,
    taskQ: "",
    taskStatus: [],
  };
}

/** The state a URL (search part) describes; unknown or bad values fall back to the defaults. */
export function fromSearch(search) {
  const params = new URLSearchParams(search);
  const state = defaultState();
  const tab = params.get("tab");
  if (tab === "llm" || tab === "tasks") state.tab = tab;
  const f = state.filters;
  f.status = (params.get("status") || "").split(",").filter((s) => STATUSES.includes(s));
  for (const key of TEXT_FILTERS) f[key] = params.get(key) || "";
  for (const key of SLOW_METRICS) f[key] = /^\d+$/.test(params.get(key) || "") ? params.get(key) : "";
  f.q = params.get("q") || "";
  const range = params.get("range") || "";
  f.range = RANGES.includes(range) ? range : "";
  f.from = params.get("from") || "";
  f.to = params.get("to") || "";
  if (f.range) f.from = f.to = "";
  const sort = params.get("sort");
  if (SORTS.includes(sort)) state.sort = sort;
  state.page = positive(params.get("page"));
  const win = params.get("window");
  if (WINDOWS.includes(win)) state.window = win;
  state.call = params.get("call") || "";
  state.task = params.get("task") || "";
  state.taskPage = positive(params.get("task_page"));
  state.taskQ = params.get("task_q") || "";
  state.taskStatus = (params.get("task_status") || "").split(",").filter((s) => TASK_STATUSES.includes(s));
  if (state.call && !params.get("tab")) state.tab = "llm";
  if (state.task && !params.get("tab")) state.tab = "tasks";
  return state;
}

function positive(text) {
  const n = Number.parseInt(text || "1", 10);
  return Number.isFinite(n) && n >= 1 ? n : 1;
}

/** The URL search part of `state` (defaults left out, so URLs stay short). */
export function toSearch(state) {
  const params = new URLSearchParams();
  params.set("tab", state.tab);
  const f = state.filters;
  if (f.status.length) params.set("status", [...f.status].sort(byStatus).join(","));
  for (const key of TEXT_FILTERS) if (f[key]) params.set(key, f[key]);
  if (f.range) params.set("range", f.range);
  else {
    if (f.from) params.set("from", f.from);
    if (f.to) params.set("to", f.to);
  }
  for (const key of SLOW_METRICS) if (f[key]) params.set(key, f[key]);
  if (f.q) params.set("q", f.q);
  if (state.sort !== "newest") params.set("sort", state.sort);
  if (state.page > 1) params.set("page", String(state.page));
  if (state.window !== "1h") params.set("window", state.window);
  if (state.call) params.set("call", state.call);
  if (state.task) params.set("task", state.task);
  if (state.taskPage > 1) params.set("task_page", String(state.taskPage));
  if (state.taskQ) params.set("task_q", state.taskQ);
  if (state.taskStatus.length) params.set("task_status", state.taskStatus.join(","));
  return `?${params.toString()}`;
}

function byStatus(a, b) {
  return STATUSES.indexOf(a) - STATUSES.indexOf(b);
}

/** The filter query of the list API for `filters` (a relative range is resolved against `now`). */
export function filterParams(filters, now = Date.now()) {
  const params = {};
  if (filters.status.length) params.status = [...filters.status].sort(byStatus).join(",");
  for (const key of TEXT_FILTERS) if (filters[key]) params[key] = filters[key];
  if (filters.range) params.from = new Date(now - RANGE_MS[filters.range]).toISOString();
  else {
    if (filters.from) params.from = filters.from;
    if (filters.to) params.to = filters.to;
  }
  for (const key of SLOW_METRICS) if (filters[key]) params[key] = filters[key];
  if (filters.q.trim()) params.q = filters.q.trim();
  return params;
}

/** True when any filter is set. */
export function hasFilters(filters) {
  return Object.keys(filterParams(filters)).length > 0;
}

/**
 * Whether a call (a CallSummary) matches `filters`, for live calls the page did not ask the server
 * about. The text search is matched against the previews only, so it may miss a call the server
 * would find; the page then shows the call after its next refresh.
 */
export function matches(call, filters, now = Date.now()) {
  const f = filters;
  if (f.status.length && !f.status.includes(call.status)) return false;
  for (const key of TEXT_FILTERS) if (f[key] && call[key] !== f[key]) return false;
  const enqueued = Date.parse(call.enqueued_at);
  if (f.range && enqueued < now - RANGE_MS[f.range]) return false;
  if (!f.range && f.from && enqueued < Date.parse(f.from)) return false;
  if (!f.range && f.to && enqueued >= Date.parse(f.to)) return false;
  const slow = { min_duration_ms: "duration_ms", min_first_token_ms: "first_token_ms", min_wait_ms: "wait_ms" };
  for (const [key, field] of Object.entries(slow)) {
    if (f[key] && !(call[field] >= Number(f[key]))) return false;
  }
  const q = f.q.trim().toLowerCase();
  if (q && !`${call.prompt_preview || ""}\n${call.response_preview || ""}`.toLowerCase().includes(q)) return false;
  return true;
}

/** Keeps the state in step with the address bar. */
export class Router {
  constructor(onChange) {
    this.state = fromSearch(window.location.search);
    this.onChange = onChange;
    window.addEventListener("popstate", () => {
      const previous = this.state;
      this.state = fromSearch(window.location.search);
      this.onChange(this.state, previous);
    });
  }

  /** Apply `change(state)` to a copy of the state; push a history entry unless `replace`. */
  update(change, { replace = false } = {}) {
    const previous = this.state;
    const next = structuredClone(previous);
    change(next);
    const search = toSearch(next);
    this.state = fromSearch(search);
    if (search !== window.location.search) {
      if (replace) window.history.replaceState(null, "", search);
      else window.history.pushState(null, "", search);
    }
    this.onChange(this.state, previous);
  }
}
