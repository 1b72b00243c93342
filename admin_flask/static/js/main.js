// The admin page. It reads its settings from <body data-…> (set by admin_flask/page.py), keeps the
// view in the URL (state.js), loads from the admin API (api.js) and follows the live feed (live.js).
//
// Modules, one concern each: api (HTTP client), live (websocket, reconnect, long-poll fallback),
// state (URL state, filters), i18n + strings (languages, formatting), dom (text-only DOM building),
// status + chart (status card), filters (filter bar, saved views), calls + latency (call list),
// drawer + conversation (call detail), tasks (Tasks tab), states (empty/loading/error panels),
// keyboard (shortcuts).

import { Api, ApiError, Latest } from "./api.js";
import { CallList } from "./calls.js";
import { Drawer } from "./drawer.js";
import { FilterBar } from "./filters.js";
import { LANGUAGES, language, onLanguageChange, setLanguage, t, translateStatic } from "./i18n.js";
import { installKeyboard } from "./keyboard.js";
import { LiveFeed } from "./live.js";
import { PAGE_SIZE, Router, filterParams } from "./state.js";
import { StatusCard } from "./status.js";
import { TasksView } from "./tasks.js";
import { fill, h, link } from "./dom.js";

const FACETS_EVERY_MS = 2000; // a live change refreshes the filter's numbers at most this often
const STATUS_EVERY_MS = 1000;
const RETRY_EVERY_MS = 5000;

function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, wait);
  };
}

function listKey(state) {
  return JSON.stringify([state.filters, state.sort, state.page]);
}

function taskKey(state) {
  return JSON.stringify([state.taskPage, state.taskQ, state.taskStatus]);
}

class App {
  constructor(settings) {
    this.settings = settings;
    this.api = new Api(settings.api);
    const $ = (id) => document.getElementById(id);
    this.el = {
      llm: $("view-llm"),
      tasks: $("view-tasks"),
      banner: $("banner"),
      conn: $("conn"),
      lang: $("lang"),
    };
    const update = (change, options) => this.router.update(change, options);
    this.status = new StatusCard($("status-card"), {
      openCall: (callId) => update((s) => { s.call = callId; }),
      setWindow: (win) => update((s) => { s.window = win; }, { replace: true }),
      filterStatus: (status) => update((s) => { s.filters.status = [status]; s.page = 1; }),
    });
    this.filters = new FilterBar($("filter-bar"), { update });
    this.calls = new CallList(
      { summary: $("filter-summary"), notice: $("new-calls"), list: $("call-list"), pager: $("pager") },
      {
        open: (callId) => update((s) => { s.call = callId; }),
        update,
        showNew: () => {
          if (this.router.state.page === 1 && this.router.state.sort === "newest") this.loadCalls();
          else update((s) => { s.page = 1; s.sort = "newest"; });
        },
        retry: () => this.loadCalls(),
        exportUrl: () => this.api.exportUrl({ ...filterParams(this.router.state.filters), sort: this.router.state.sort }),
      },
    );
    this.drawer = new Drawer($("drawer"), this.api, {
      close: () => update((s) => { s.call = ""; }),
      viewTask: (taskId) => {
        this.tasks.focusCall = this.router.state.call;
        update((s) => { s.tab = "tasks"; s.task = taskId; s.call = ""; });
      },
      pagePrefix: settings.page,
    });
    this.tasks = new TasksView($("view-tasks"), this.api, {
      update,
      openCall: (callId) => update((s) => { s.call = callId; }),
      failed: (error) => this.failedWith(error),
      recovered: () => this.recovered(),
    });
    this.callsLatest = new Latest();
    this.statusLatest = new Latest();
    this.refreshFacets = throttle(() => this.loadFacets(), FACETS_EVERY_MS);
    this.refreshStatus = throttle(() => this.loadStatus(), STATUS_EVERY_MS);
    this.router = new Router((state, previous) => this.route(state, previous));
    this.live = new LiveFeed(this.api);
  }

  start() {
    document.documentElement.lang = language();
    translateStatic(document);
    fill(this.el.lang, Object.entries(LANGUAGES).map(([code, name]) => h("option", { value: code, translate: "no", lang: code }, name)));
    this.el.lang.value = language();
    this.el.lang.addEventListener("change", () => setLanguage(this.el.lang.value));
    onLanguageChange(() => this.rerender());
    for (const tab of document.querySelectorAll("[data-tab]")) {
      tab.addEventListener("click", (event) => {
        event.preventDefault();
        this.router.update((s) => { s.tab = tab.dataset.tab; });
      });
    }
    installKeyboard({
      search: () => (this.router.state.tab === "llm" ? this.filters.focusSearch() : this.tasks.focusSearch()),
      move: (step) => (this.router.state.tab === "llm" ? this.calls.move(step) : this.tasks.move(step)),
      open: () => {
        if (this.router.state.tab === "tasks") return this.tasks.openSelected();
        const callId = this.calls.selectedId();
        if (callId) this.router.update((s) => { s.call = callId; });
      },
      escape: () => {
        if (this.router.state.call) this.router.update((s) => { s.call = ""; });
      },
    });
    this.live.addEventListener("call", (event) => this.onLiveCall(event.detail));
    this.live.addEventListener("status", (event) => {
      const message = event.detail;
      if (message.error) {
        const error = new ApiError(503, message.error.code, message.error.message, null, message.error.reason);
        this.status.fail(error);
        this.showError(error);
        this.failed = true;
      } else if (this.failed) {
        this.reloadAll(); // the store is back
      } else if (this.router.state.window === message.window) {
        this.statusShownAt = Date.now();
        this.status.show(message);
      }
    });
    this.live.addEventListener("reset", () => this.reloadAll());
    this.live.addEventListener("state", (event) => this.showConnection(event.detail));
    this.showConnection("connecting");
    this.route(this.router.state, null);
    this.live.start();
    // Keep the "… ago" texts and a stale status card fresh even when no message comes; after a
    // failure (store unavailable, server unreachable) try again by itself.
    setInterval(() => {
      if (this.failed) this.reloadAll();
      else if (this.router.state.tab === "llm" && Date.now() - (this.statusShownAt || 0) > 6000) this.loadStatus();
    }, RETRY_EVERY_MS);
  }

  route(state, previous) {
    const tabChanged = !previous || previous.tab !== state.tab;
    if (tabChanged) this.showTab(state.tab);
    if (state.tab === "llm") {
      this.filters.update(state, null);
      if (tabChanged || listKey(state) !== listKey(previous)) this.loadCalls();
      if (tabChanged || previous.window !== state.window) this.loadStatus();
    } else if (tabChanged || taskKey(state) !== taskKey(previous)) {
      this.tasks.load(state);
    } else if (previous.task !== state.task) {
      this.tasks.showTask(state);
    }
    if (state.call !== this.drawer.callId) {
      if (state.call) this.drawer.open(state.call);
      else this.drawer.close();
    }
    this.calls.setOpen(state.call);
  }

  showTab(tab) {
    this.el.llm.hidden = tab !== "llm";
    this.el.tasks.hidden = tab !== "tasks";
    for (const link of document.querySelectorAll("[data-tab]")) {
      const on = link.dataset.tab === tab;
      link.classList.toggle("is-on", on);
      link.setAttribute("aria-selected", String(on));
    }
  }

  async loadCalls() {
    const state = this.router.state;
    this.calls.loading(state);
    const params = { ...filterParams(state.filters), sort: state.sort, page: state.page, page_size: PAGE_SIZE };
    this.loadFacets();
    try {
      const page = await this.callsLatest.run((signal) => this.api.calls(params, { signal }));
      if (page === Latest.STALE) return;
      this.calls.show(state, page);
      this.recovered();
    } catch (error) {
      this.calls.fail(error);
      this.failedWith(error);
    }
  }

  /** The filter's numbers (all filters) and the filter bar's choices (time, text and speed only). */
  async loadFacets() {
    const state = this.router.state;
    const all = filterParams(state.filters);
    const choices = { ...all };
    for (const key of ["status", "source", "requested_by", "model", "error_type"]) delete choices[key];
    this.facetsLatest?.abort();
    const controller = new AbortController();
    this.facetsLatest = controller;
    try {
      const [summary, options] = await Promise.all([
        this.api.facets(all, { signal: controller.signal }),
        JSON.stringify(all) === JSON.stringify(choices) ? null : this.api.facets(choices, { signal: controller.signal }),
      ]);
      if (controller.signal.aborted) return;
      this.filters.update(this.router.state, options || summary);
      this.calls.renderSummary(summary);
    } catch (error) {
      if (error.name === "AbortError" || controller.signal.aborted) return;
      this.calls.renderSummary(null, error);
    }
  }

  async loadStatus() {
    try {
      const body = await this.statusLatest.run(() => this.api.status(this.router.state.window));
      if (body === Latest.STALE) return;
      this.statusShownAt = Date.now();
      this.status.show(body);
    } catch (error) {
      this.status.fail(error);
      this.failedWith(error);
    }
  }

  onLiveCall(message) {
    const call = message.call;
    if (!call) return;
    const state = this.router.state;
    if (state.tab === "llm") {
      const reading = this.drawer.isOpen || this.calls.scrolledAway();
      this.calls.live(call, reading);
      this.refreshFacets();
      this.refreshStatus();
    } else {
      this.tasks.changed(call);
    }
    this.drawer.changed(call.call_id);
  }

  reloadAll() {
    const state = this.router.state;
    if (state.tab === "llm") {
      this.loadCalls();
      this.loadStatus();
    } else this.tasks.load(state);
    if (this.drawer.isOpen) this.drawer.load();
  }

  rerender() {
    const state = this.router.state;
    this.filters.update(state, null);
    if (this.calls.page) this.calls.render();
    this.calls.renderSummary();
    this.calls.renderNotice();
    this.status.render();
    this.drawer.rerender();
    this.tasks.rerender();
    this.reloadAll(); // texts the server wrote into the data (none today) and "… ago" refresh
    this.showConnection(this.live.state);
  }

  showConnection(state) {
    this.el.conn.dataset.state = state;
    const label = this.el.conn.querySelector(".conn-label");
    label.textContent = t(`conn.${state}`);
    this.el.conn.title = t(`conn.${state}.title`);
    if (state === "signed-out") this.showError(new ApiError(401, "unauthenticated", ""));
  }

  showError(error) {
    // The panels show every error where it happened; the banner only what concerns the whole page.
    if (!(error instanceof ApiError) || !["signed-out", "offline"].includes(error.kind)) return;
    const login = this.settings.login;
    const action = error.kind === "signed-out" && login
      ? link(`${login}?${new URLSearchParams({ next: location.pathname + location.search })}`, { class: "btn btn-primary" }, t("error.signIn"))
      : h("button", { type: "button", class: "btn", on: { click: () => this.reloadAll() } }, t("error.retry"));
    fill(this.el.banner, h("div", { class: ["banner", `banner-${error.kind}`], role: "alert" },
      h("strong", {}, t(`error.${error.kind}`)), h("span", {}, t(`error.${error.kind}.hint`)), action));
    this.el.banner.hidden = false;
  }

  failedWith(error) {
    this.failed = error instanceof ApiError && ["unavailable", "offline", "failed"].includes(error.kind);
    this.showError(error);
  }

  recovered() {
    this.failed = false;
    this.clearBanner();
  }

  clearBanner() {
    this.el.banner.hidden = true;
    fill(this.el.banner);
  }
}

const app = new App(document.body.dataset);
app.start();
