// The filter bar of the call list: text search, time range, "slower than", sort, status (several),
// source, requested_by, model and error type (choices with counts from llm/facets), and saved views
// (kept in this browser's localStorage). Every change goes through the router, so the URL holds it.

import { fill, h } from "./dom.js";
import { compact, language, t } from "./i18n.js";
import { RANGES, SLOW_METRICS, SORTS, STATUSES, toSearch, fromSearch } from "./state.js";

const VIEWS_KEY = "llm-otel-admin.views";
const SELECTS = [
  ["source", "sources"],
  ["requested_by", "requested_by"],
  ["model", "models"],
  ["error_type", "error_types"],
];

export class FilterBar {
  /** `actions`: {update(change)}. */
  constructor(root, actions) {
    this.root = root;
    this.actions = actions;
    this.state = null;
    this.facets = null;
    this.build();
  }

  build() {
    this.search = h("input", {
      type: "search",
      class: "search",
      id: "call-search",
      autocomplete: "off",
      spellcheck: "false",
      on: {
        input: () => {
          clearTimeout(this.searchTimer);
          this.searchTimer = setTimeout(() => this.setFilter("q", this.search.value), 350);
        },
        keydown: (event) => {
          if (event.key === "Enter") {
            clearTimeout(this.searchTimer);
            this.setFilter("q", this.search.value);
          }
        },
      },
    });
    this.range = h("select", { class: "range", on: { change: () => this.rangeChanged() } });
    this.from = h("input", { type: "datetime-local", class: "custom-time", on: { change: () => this.customChanged() } });
    this.to = h("input", { type: "datetime-local", class: "custom-time", on: { change: () => this.customChanged() } });
    this.custom = h("span", { class: "custom-range", hidden: true }, this.from, h("span", { class: "muted" }, "–"), this.to);
    this.slowMetric = h("select", { class: "slow-metric", on: { change: () => this.slowChanged() } });
    this.slowValue = h("input", {
      type: "number", min: "0", step: "100", class: "slow-value", inputmode: "numeric",
      on: { change: () => this.slowChanged() },
    });
    this.sort = h("select", { class: "sort", on: { change: () => this.actions.update((s) => { s.sort = this.sort.value; s.page = 1; }) } });
    this.statusBox = h("div", { class: "status-chips", role: "group" });
    this.selects = Object.fromEntries(SELECTS.map(([key]) => [key, h("select", {
      class: "facet", data: { filter: key },
      on: { change: (event) => this.setFilter(key, event.target.value) },
    })]));
    this.clear = h("button", { type: "button", class: "btn-link", on: { click: () => this.clearAll() } });
    this.views = h("select", { class: "views", on: { change: () => this.viewChosen() } });
    this.viewName = h("input", { type: "text", class: "view-name", maxlength: "60" });
    this.viewSave = h("button", { type: "button", class: "btn", on: { click: () => this.saveView() } });
    this.viewForm = h("span", { class: "view-form", hidden: true }, this.viewName, this.viewSave);
    this.viewAdd = h("button", { type: "button", class: "btn-link", on: { click: () => this.toggleViewForm() } });
    this.viewDelete = h("button", { type: "button", class: "btn-link", hidden: true, on: { click: () => this.deleteView() } });
    this.viewName.addEventListener("keydown", (event) => {
      if (event.key === "Enter") this.saveView();
      if (event.key === "Escape") this.toggleViewForm(false);
    });
    this.labels = {};
    const label = (key, control) => h("label", { class: "field" }, (this.labels[key] = h("span", { class: "field-label" })), control);
    fill(
      this.root,
      h("div", { class: "filter-row" },
        h("span", { class: "search-box" }, this.search, h("kbd", { class: "hint", title: "/" }, "/")),
        this.range,
        this.custom,
        label("slow", h("span", { class: "slow" }, this.slowMetric, this.slowValue, (this.labels.ms = h("span", { class: "muted small" })))),
        this.sort,
        h("span", { class: "spacer" }),
        h("span", { class: "views-box" }, this.views, this.viewDelete, this.viewAdd, this.viewForm)),
      h("div", { class: "filter-row" },
        this.statusBox,
        SELECTS.map(([key]) => this.selects[key]),
        this.clear),
    );
  }

  setFilter(key, value) {
    this.actions.update((s) => {
      s.filters[key] = value;
      s.page = 1;
    });
  }

  rangeChanged() {
    const value = this.range.value;
    if (value === "custom") {
      this.custom.hidden = false;
      this.from.focus();
      return;
    }
    this.actions.update((s) => {
      s.filters.range = value;
      s.filters.from = s.filters.to = "";
      s.page = 1;
    });
  }

  customChanged() {
    const iso = (input) => (input.value ? new Date(input.value).toISOString() : "");
    this.actions.update((s) => {
      s.filters.range = "";
      s.filters.from = iso(this.from);
      s.filters.to = iso(this.to);
      s.page = 1;
    });
  }

  slowChanged() {
    const metric = this.slowMetric.value;
    const value = /^\d+$/.test(this.slowValue.value) ? this.slowValue.value : "";
    this.actions.update((s) => {
      for (const key of SLOW_METRICS) s.filters[key] = "";
      if (value) s.filters[metric] = value;
      s.page = 1;
    });
  }

  toggleStatus(status) {
    this.actions.update((s) => {
      const set = new Set(s.filters.status);
      if (set.has(status)) set.delete(status);
      else set.add(status);
      s.filters.status = [...set];
      s.page = 1;
    });
  }

  clearAll() {
    this.actions.update((s) => {
      const keep = { tab: s.tab, window: s.window };
      Object.assign(s, fromSearch(""), keep);
    });
  }

  /** Show `state`'s filters and the choice counts of `facets` (null while they load). */
  update(state, facets) {
    this.state = state;
    if (facets) this.facets = facets;
    const f = state.filters;
    if (document.activeElement !== this.search) this.search.value = f.q;
    this.search.placeholder = t("filters.search");
    this.search.setAttribute("aria-label", t("filters.search"));

    const localValue = (iso) => {
      if (!iso) return "";
      const date = new Date(iso);
      if (Number.isNaN(date.getTime())) return "";
      return new Date(date.getTime() - date.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
    };
    const isCustom = !f.range && Boolean(f.from || f.to);
    // Options are rebuilt only when their texts change: rebuilding closes a dropdown the admin has open.
    const fresh = this.lang !== language();
    this.lang = language();
    if (fresh) {
      fill(this.range,
        h("option", { value: "" }, t("range.all")),
        RANGES.map((r) => h("option", { value: r }, t(`range.${r}`))),
        h("option", { value: "custom" }, t("range.custom")));
      fill(this.slowMetric, SLOW_METRICS.map((key) => h("option", { value: key }, t(`slow.${key}`))));
      fill(this.sort, SORTS.map((key) => h("option", { value: key }, t(`sort.${key}`))));
    }
    this.range.value = isCustom ? "custom" : f.range;
    if (!this.custom.hidden || isCustom) {
      this.custom.hidden = !isCustom && this.range.value !== "custom";
      this.from.value = localValue(f.from);
      this.to.value = localValue(f.to);
    }
    this.from.setAttribute("aria-label", t("range.from"));
    this.to.setAttribute("aria-label", t("range.to"));

    const metric = SLOW_METRICS.find((key) => f[key]) || SLOW_METRICS[0];
    this.slowMetric.value = metric;
    if (document.activeElement !== this.slowValue) this.slowValue.value = f[metric] || "";
    this.slowValue.placeholder = "0";
    this.slowValue.setAttribute("aria-label", t("filters.slowValue"));

    this.sort.value = state.sort;

    const counts = this.facets?.statuses || {};
    this.statusBox.setAttribute("aria-label", t("filters.status"));
    fill(this.statusBox, STATUSES.map((status) => h("button", {
      type: "button",
      class: ["status-chip", `st-${status}`, f.status.includes(status) ? "is-on" : ""],
      "aria-pressed": String(f.status.includes(status)),
      data: { status },
      on: { click: () => this.toggleStatus(status) },
    }, h("span", { class: "dot" }), t(`status.${status}`), " ", h("span", { class: "num count" }, this.facets ? compact(counts[status] || 0) : ""))));

    this.range.setAttribute("aria-label", t("filters.range"));
    this.range.title = t("filters.range");
    this.sort.setAttribute("aria-label", t("filters.sort"));
    this.sort.title = t("filters.sort");
    for (const [key, facetKey] of SELECTS) {
      const select = this.selects[key];
      select.setAttribute("aria-label", t(`filters.${key}`));
      select.title = t(`filters.${key}`);
      const choices = (this.facets?.[facetKey] || []).filter((c) => c.value !== null && c.value !== "");
      if (f[key] && !choices.some((c) => c.value === f[key])) choices.unshift({ value: f[key], count: 0 });
      const options = [[ "", t(`filters.all.${key}`)], ...choices.map((c) => [c.value, `${c.value}  (${compact(c.count)})`])];
      const signature = JSON.stringify(options);
      if (select.dataset.options !== signature && document.activeElement !== select) {
        fill(select, options.map(([value, text], i) => h("option", { value, translate: i ? "no" : null }, text)));
        select.dataset.options = signature;
      }
      select.value = f[key];
      select.classList.toggle("is-on", Boolean(f[key]));
    }
    for (const [key, el] of Object.entries(this.labels)) el.textContent = t(`filters.${key}`);
    this.clear.textContent = t("filters.clear");
    this.clear.hidden = toSearch({ ...state, page: 1, call: "", task: "" }) === toSearch({ ...fromSearch(""), tab: state.tab, window: state.window });
    this.renderViews();
  }

  // -- saved views -------------------------------------------------------------------------------

  loadViews() {
    try {
      const views = JSON.parse(window.localStorage.getItem(VIEWS_KEY) || "[]");
      return Array.isArray(views) ? views.filter((v) => typeof v.name === "string" && typeof v.search === "string") : [];
    } catch {
      return [];
    }
  }

  storeViews(views) {
    try {
      window.localStorage.setItem(VIEWS_KEY, JSON.stringify(views));
    } catch {
      // storage full or disabled: the view is not kept
    }
  }

  viewSearch(state) {
    const params = new URLSearchParams(toSearch({ ...state, page: 1, call: "", task: "", taskPage: 1, taskQ: "", taskStatus: [] }));
    params.delete("tab");
    params.delete("window");
    return params.toString();
  }

  currentView() {
    if (!this.state) return null;
    const search = this.viewSearch(this.state);
    return this.loadViews().find((v) => v.search === search) || null;
  }

  renderViews() {
    const views = this.loadViews();
    const current = this.currentView();
    fill(this.views,
      h("option", { value: "" }, views.length ? t("views.choose") : t("views.none")),
      views.map((v, i) => h("option", { value: String(i), translate: "no" }, v.name)));
    this.views.value = current ? String(views.indexOf(current)) : "";
    this.views.disabled = !views.length;
    this.views.setAttribute("aria-label", t("views.label"));
    this.viewDelete.hidden = !current;
    this.viewDelete.textContent = t("views.delete");
    this.viewAdd.textContent = t("views.save");
    this.viewSave.textContent = t("views.saveButton");
    this.viewName.placeholder = t("views.name");
    this.viewName.setAttribute("aria-label", t("views.name"));
  }

  viewChosen() {
    const view = this.loadViews()[Number(this.views.value)];
    if (!view) return;
    const chosen = fromSearch(view.search);
    this.actions.update((s) => {
      s.filters = chosen.filters;
      s.sort = chosen.sort;
      s.page = 1;
    });
  }

  toggleViewForm(show = this.viewForm.hidden) {
    this.viewForm.hidden = !show;
    if (show) this.viewName.focus();
  }

  saveView() {
    const name = this.viewName.value.trim();
    if (!name || !this.state) return;
    const search = this.viewSearch(this.state);
    const views = this.loadViews().filter((v) => v.name !== name);
    views.push({ name, search });
    views.sort((a, b) => a.name.localeCompare(b.name));
    this.storeViews(views);
    this.viewName.value = "";
    this.toggleViewForm(false);
    this.renderViews();
  }

  deleteView() {
    const current = this.currentView();
    if (!current) return;
    this.storeViews(this.loadViews().filter((v) => v !== current && v.name !== current.name));
    this.renderViews();
  }

  focusSearch() {
    this.search.focus();
    this.search.select();
  }
}
