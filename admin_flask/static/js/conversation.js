// A call's messages as a conversation: system / user / assistant / tool turns, tool calls and their
// results as cards with formatted JSON, reasoning folded away. Every text is a text node (never
// HTML, never a link: a "uri" part is shown as text). Long texts are cut and rendered on demand, in
// slices spread over animation frames, so that a 1 MB prompt opens at once and the page never freezes.

import { datum, h } from "./dom.js";
import { number, t } from "./i18n.js";

const INLINE_CHARS = 4000; // texts up to this long are shown whole
const PREVIEW_CHARS = 1500; // what a longer text shows until it is expanded
const SLICE_CHARS = 64 * 1024; // appended per animation frame while expanding

/** The whole conversation of a call detail: system instructions, input, then the response. */
export function conversation(detail) {
  const items = [];
  if (Array.isArray(detail.system_instructions) && detail.system_instructions.length) {
    items.push(message({ role: "system", parts: detail.system_instructions }));
  }
  for (const m of asList(detail.input_messages)) items.push(message(m));
  const output = asList(detail.output_messages);
  if (output.length) {
    items.push(h("div", { class: "turn-divider" }, h("span", {}, t("conv.response"))));
    for (const m of output) items.push(message(m, true));
  } else if (detail.status === "queued" || detail.status === "running") {
    items.push(h("div", { class: "turn-divider" }, h("span", {}, t("conv.awaiting"))));
  }
  if (!items.length) return h("p", { class: "muted" }, t("conv.none"));
  return h("div", { class: "conversation" }, items);
}

function asList(value) {
  return Array.isArray(value) ? value.filter((m) => m && typeof m === "object") : [];
}

function message(m, isOutput = false) {
  const role = typeof m.role === "string" ? m.role : "unknown";
  const known = ["system", "user", "assistant", "tool"].includes(role);
  const parts = Array.isArray(m.parts) ? m.parts : [];
  return h(
    "div",
    { class: ["turn", `role-${known ? role : "other"}`, isOutput ? "is-output" : ""] },
    h("div", { class: "turn-head" },
      h("span", { class: "role" }, known ? t(`role.${role}`) : datum(role)),
      m.finish_reason ? h("span", { class: "badge", title: t("conv.finishReason") }, datum(m.finish_reason)) : null,
      m.name ? datum(m.name, { class: "muted mono" }) : null),
    h("div", { class: "turn-body" }, parts.length ? parts.map(part) : h("span", { class: "muted" }, t("conv.empty"))),
  );
}

function part(p) {
  if (!p || typeof p !== "object") return longText(String(p));
  switch (p.type) {
    case "text":
      return longText(typeof p.content === "string" ? p.content : json(p.content));
    case "tool_call":
      return card("tool-call", t("conv.toolCall"), p.name, p.id, jsonBlock(p.arguments));
    case "tool_call_response":
      return card("tool-result", t("conv.toolResult"), null, p.id, jsonBlock(p.response));
    case "reasoning":
      return h("details", { class: "reasoning" }, h("summary", {}, t("conv.reasoning")), longText(String(p.content ?? "")));
    case "uri":
      return h("div", { class: "attachment" }, h("span", { class: "muted" }, t("conv.uri"), " "),
        datum(p.modality), " ", datum(p.uri, { class: "mono" }));
    case "blob":
      return h("div", { class: "attachment" }, h("span", { class: "muted" }, t("conv.blob"), " "),
        datum(p.modality), " ", datum(p.mime_type), " ", datum(p.content, { class: "muted" }));
    default:
      return h("div", { class: "attachment" }, h("span", { class: "muted" }, t("conv.part"), " "), datum(p.type), jsonBlock(p));
  }
}

function card(kind, label, name, id, body) {
  return h("div", { class: ["tool-card", kind] },
    h("div", { class: "tool-head" },
      h("span", { class: "tool-kind" }, label),
      name ? datum(name, { class: "tool-name mono" }) : null,
      id ? datum(id, { class: "tool-id mono muted" }) : null),
    body);
}

/** `value` as indented JSON (a string that holds JSON is parsed first). */
export function json(value) {
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  if (value === undefined) return "";
  return JSON.stringify(value, null, 2);
}

export function jsonBlock(value) {
  return longText(json(value), "json");
}

/**
 * A block of text: whole when short; else its first PREVIEW_CHARS and a button that renders the
 * rest, a slice per animation frame.
 */
export function longText(text, kind = "text") {
  const pre = h("pre", { class: ["text", kind === "json" ? "json" : ""], translate: "no" });
  if (text.length <= INLINE_CHARS) {
    pre.textContent = text;
    return pre;
  }
  pre.textContent = text.slice(0, PREVIEW_CHARS);
  const more = h("button", { type: "button", class: "btn-link expand" }, t("conv.showAll", { n: text.length }));
  const wrap = h("div", { class: "long-text is-collapsed" }, pre,
    h("div", { class: "expand-bar" }, h("span", { class: "muted small" }, t("conv.shown", { shown: number(PREVIEW_CHARS), n: text.length })), more));
  more.addEventListener("click", () => expand(wrap, pre, text, more));
  return wrap;
}

function expand(wrap, pre, text, button) {
  button.disabled = true;
  wrap.classList.replace("is-collapsed", "is-expanding");
  pre.textContent = "";
  let offset = 0;
  const step = () => {
    if (!pre.isConnected) return;
    const end = Math.min(text.length, offset + SLICE_CHARS);
    pre.appendChild(document.createTextNode(text.slice(offset, end)));
    offset = end;
    if (offset < text.length) {
      button.textContent = t("conv.rendering", { done: number(Math.round((100 * offset) / text.length)) });
      requestAnimationFrame(step);
    } else {
      wrap.classList.replace("is-expanding", "is-expanded");
      button.parentElement.remove();
    }
  };
  requestAnimationFrame(step);
}
