// The designed states of a panel: loading, empty (no calls yet, nothing matches) and the errors
// (signed out, not an admin, the store unavailable, the server unreachable).

import { datum, h, link } from "./dom.js";
import { t } from "./i18n.js";

/** Placeholder rows while the first page loads. */
export function loadingRows(rows = 8) {
  return h(
    "div",
    { class: "skeleton", "aria-busy": "true", "aria-label": t("state.loading") },
    Array.from({ length: rows }, () => h("div", { class: "skeleton-row" })),
  );
}

function panel(kind, icon, title, ...body) {
  return h("div", { class: ["state", `state-${kind}`], role: kind === "error" ? "alert" : "status" },
    h("div", { class: "state-icon", "aria-hidden": "true" }, icon),
    h("h3", { class: "state-title" }, title),
    ...body);
}

/** `kind`: "noCalls" (with how to record some), "noMatch" (`action` clears the filters), "pastEnd", "noTasks". */
export function emptyState(kind, action) {
  if (kind === "noCalls" || kind === "noTasks") {
    return panel("empty", "∅", t(`empty.${kind}`),
      h("p", {}, t("empty.hint")),
      h("pre", { class: "code", translate: "no" },
        "import llm_otel\n\nllm_otel.setup(db=\"sqlite:///llm_calls.db\")\n",
        kind === "noTasks" ? "with llm_otel.task(\"nightly-report\"):\n    client.chat.completions.create(...)\n" : ""),
      h("p", { class: "muted" }, t("empty.demo"), " ", h("code", { translate: "no" }, "llm-otel demo")));
  }
  return panel("empty", "⌕", t(`empty.${kind}`),
    action ? h("button", { type: "button", class: "btn", on: { click: action } }, t(kind === "pastEnd" ? "empty.firstPage" : "filters.clear")) : null);
}

/** The panel for an ApiError (`retry` reloads). */
export function errorState(error, retry) {
  const kind = error.kind || "failed";
  const login = document.body.dataset.login;
  const next = window.location.pathname + window.location.search;
  const actions = [];
  if (kind === "signed-out" && login) {
    const href = `${login}${login.includes("?") ? "&" : "?"}${new URLSearchParams({ next })}`;
    actions.push(link(href, { class: "btn btn-primary" }, t("error.signIn")));
  } else if (kind !== "forbidden") {
    actions.push(h("button", { type: "button", class: "btn", on: { click: retry } }, t("error.retry")));
  }
  const title = kind === "unavailable" && ["damaged", "missing"].includes(error.reason) ? `error.${error.reason}` : `error.${kind}`;
  return panel("error", kind === "signed-out" ? "⏻" : "!", t(title),
    h("p", {}, t(`${title}.hint`)),
    error.message && kind !== "signed-out" ? h("p", { class: "muted small" }, datum(error.message, { class: "mono" })) : null,
    h("div", { class: "state-actions" }, actions));
}
