// Building DOM nodes. Every string becomes a text node: the page never parses HTML, so text from
// prompts, responses, errors, labels and task names can only ever be shown, never run.

const SVG_NS = "http://www.w3.org/2000/svg";

function assertSafeName(name) {
  // Event handlers are attached with addEventListener (`on`), never as attributes.
  if (/^on/i.test(name) || /^(href|src|xlink:href|srcdoc|formaction)$/i.test(name)) {
    throw new Error(`dom: set ${name} with a checked helper, not as a plain attribute`);
  }
}

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

function apply(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", [value].flat(Infinity).filter(Boolean).join(" "));
    else if (key === "text") el.textContent = String(value);
    else if (key === "data") for (const [name, v] of Object.entries(value)) el.dataset[name] = String(v);
    else if (key === "on") for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    else if (key === "style") for (const [name, v] of Object.entries(value)) el.style.setProperty(name, v);
    else if (key === "hidden" || key === "disabled" || key === "checked" || key === "selected") el[key] = Boolean(value);
    else if (key === "value") el.value = String(value);
    else {
      assertSafeName(key);
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

/** An HTML element: h("td", {class: "num"}, text, child, ...). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  apply(el, props);
  append(el, children);
  return el;
}

/** An SVG element (attributes are geometry and classes only). */
export function svg(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, props);
  append(el, children);
  return el;
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An <a> whose href is checked: only http(s) and same-origin URLs, never javascript: or data:. */
export function link(href, props, ...children) {
  const a = h("a", props, ...children);
  const url = safeUrl(href);
  if (url) a.href = url;
  return a;
}

/** `href` resolved against the page, if it is http(s); null for anything else. */
export function safeUrl(href) {
  if (typeof href !== "string" || !href) return null;
  try {
    const url = new URL(href, window.location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** Copy `text` to the clipboard; resolves true when it worked. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h("textarea", { class: "offscreen", readonly: true });
    area.value = text;
    document.body.appendChild(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    return done;
  }
}

/**
 * A value from the data (a label, an id, a model, a prompt): a text node in an element marked
 * translate="no", so that neither a browser's translator nor the page's language switch touches it.
 */
export function datum(value, props = {}, tag = "span") {
  const empty = value === null || value === undefined || value === "";
  return h(tag, { ...props, class: [props.class, empty ? "empty" : ""], translate: "no" }, empty ? "–" : String(value));
}
