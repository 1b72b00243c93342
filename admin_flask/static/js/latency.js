// Where a call's time went, as three segments: queue wait | until the first token | generation.
// A call that does not stream gets its whole answer at once: its time after dispatch is one
// "until the response" segment. A call still running grows with the clock.

import { h } from "./dom.js";
import { duration, t } from "./i18n.js";

/** The segments of `call` in milliseconds: {wait, first, generation, running}. */
export function segments(call, now = Date.now()) {
  const wait = call.wait_ms ?? (call.status === "queued" && call.enqueued_at ? now - Date.parse(call.enqueued_at) : 0);
  let total = call.duration_ms;
  const running = total === null || total === undefined;
  if (running) total = call.started_at ? Math.max(0, now - Date.parse(call.started_at)) : 0;
  const first = call.first_token_ms ?? null;
  if (first !== null && first <= total) return { wait, first, generation: total - first, running };
  return { wait, first: total, generation: 0, running };
}

/** Wait plus duration: how long the caller waited in all. */
export function totalMs(call, now = Date.now()) {
  const s = segments(call, now);
  return s.wait + s.first + s.generation;
}

/** The stacked bar, its full width standing for `scaleMs`. */
export function latencyBar(call, scaleMs, { now = Date.now(), large = false } = {}) {
  const s = segments(call, now);
  const scale = Math.max(scaleMs, 1);
  const part = (cls, ms, label) => {
    if (!ms) return null;
    const el = h("span", { class: ["seg", cls, s.running && cls !== "seg-wait" ? "is-running" : ""], title: `${label}: ${duration(ms)}` });
    el.style.width = `${Math.max(0.6, (100 * ms) / scale)}%`;
    return el;
  };
  const streamed = call.first_token_ms !== null && call.first_token_ms !== undefined;
  return h(
    "span",
    { class: ["latency", large ? "latency-large" : ""], role: "img", "aria-label": describe(call, s, streamed) },
    part("seg-wait", s.wait, t("latency.wait")),
    part("seg-first", s.first, streamed ? t("latency.first") : t("latency.response")),
    part("seg-gen", s.generation, t("latency.generation")),
  );
}

function describe(call, s, streamed) {
  const pieces = [`${t("latency.wait")} ${duration(s.wait)}`];
  pieces.push(`${streamed ? t("latency.first") : t("latency.response")} ${duration(s.first)}`);
  if (streamed) pieces.push(`${t("latency.generation")} ${duration(s.generation)}`);
  return pieces.join(", ");
}

/** The legend of the three colours. */
export function latencyLegend() {
  return h(
    "span",
    { class: "latency-legend" },
    h("span", { class: "key key-wait" }, t("latency.wait")),
    h("span", { class: "key key-first" }, t("latency.first")),
    h("span", { class: "key key-gen" }, t("latency.generation")),
  );
}
