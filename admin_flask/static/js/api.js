// The admin API client (docs/contracts/http-apis.md): JSON in, JSON out, errors as ApiError.

/** A failed request: `status` is the HTTP status (0: the server could not be reached). */
export class ApiError extends Error {
  constructor(status, code, message, parameter, reason) {
    super(message || code || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.parameter = parameter || null;
    /** A 503's reason: "damaged", "missing" or "unavailable". */
    this.reason = reason || null;
  }

  /** What the page shows for it: "signed-out", "forbidden", "unavailable", "offline", "bad-request", "not-found" or "failed". */
  get kind() {
    if (this.status === 401) return "signed-out";
    if (this.status === 403) return "forbidden";
    if (this.status === 503) return "unavailable";
    if (this.status === 0) return "offline";
    if (this.status === 400) return "bad-request";
    if (this.status === 404) return "not-found";
    return "failed";
  }
}

export class Api {
  /** `base` is the API prefix, e.g. "/api/admin/jobs". */
  constructor(base) {
    this.base = base.replace(/\/$/, "");
  }

  url(path, params) {
    const query = params ? new URLSearchParams(params).toString() : "";
    return `${this.base}/${path}${query ? `?${query}` : ""}`;
  }

  async get(path, params, { signal } = {}) {
    let response;
    try {
      response = await fetch(this.url(path, params), {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        signal,
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "offline", error.message);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const error = (body && body.error) || {};
      throw new ApiError(response.status, error.code, error.message, error.parameter, error.reason);
    }
    return body;
  }

  status(window) {
    return this.get("llm/status", { window });
  }

  calls(params, options) {
    return this.get("llm/calls", params, options);
  }

  facets(params, options) {
    return this.get("llm/facets", params, options);
  }

  call(callId, options) {
    return this.get(`llm/calls/${encodeURIComponent(callId)}`, null, options);
  }

  tasks(params, options) {
    return this.get("tasks", params, options);
  }

  task(taskId, options) {
    return this.get(`tasks/${encodeURIComponent(taskId)}`, null, options);
  }

  /** The long poll; `after` null asks for the events from now on. */
  events(after, timeout, options) {
    return this.get("llm/events", after === null ? { timeout } : { after, timeout }, options);
  }

  /** The websocket URL of the live feed, resuming after `after` when given. */
  wsUrl(after) {
    const url = new URL(this.url("llm/ws", after ? { after } : null), window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  exportUrl(params) {
    return this.url("llm/calls/export", { ...params, format: "jsonl" });
  }
}

/** Runs `load` so that only the latest call's result is used; earlier ones are aborted. */
export class Latest {
  constructor() {
    this.controller = null;
  }

  async run(load) {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    try {
      const result = await load(controller.signal);
      return controller.signal.aborted ? Latest.STALE : result;
    } catch (error) {
      if (controller.signal.aborted || error.name === "AbortError") return Latest.STALE;
      throw error;
    }
  }
}
Latest.STALE = Symbol("stale");
