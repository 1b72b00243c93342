// Languages: English and 简体中文, every visible string of the page. The choice is remembered in
// localStorage; the default follows the browser's language. Dates are shown in the admin's own
// time zone, durations and numbers in the chosen language.

import { STRINGS } from "./strings.js";

export const LANGUAGES = { en: "English", "zh-CN": "简体中文" };
const STORAGE_KEY = "llm-otel-admin.lang";
const listeners = new Set();

function initialLanguage() {
  let saved = null;
  try {
    saved = window.localStorage.getItem(STORAGE_KEY);
  } catch {
    saved = null;
  }
  if (saved && saved in LANGUAGES) return saved;
  const preferred = navigator.languages?.length ? navigator.languages : [navigator.language || "en"];
  return preferred.some((tag) => /^zh\b/i.test(tag)) && !/^zh-(TW|HK|MO|Hant)/i.test(preferred[0]) ? "zh-CN" : "en";
}

let lang = initialLanguage();

export function language() {
  return lang;
}

export function setLanguage(next) {
  if (!(next in LANGUAGES) || next === lang) return;
  lang = next;
  try {
    window.localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // private mode: the choice lasts for this page only
  }
  document.documentElement.lang = next;
  translateStatic(document);
  for (const listener of listeners) listener(next);
}

export function onLanguageChange(listener) {
  listeners.add(listener);
}

/**
 * The text of `key` in the current language, `{name}` placeholders filled from `params`. A key
 * with `one`/`other` forms is chosen by `params.n`.
 */
export function t(key, params = {}) {
  let entry = STRINGS[lang][key] ?? STRINGS.en[key];
  if (entry === undefined) {
    console.error(`i18n: no text for ${key}`);
    return key;
  }
  if (typeof entry === "object") {
    const form = new Intl.PluralRules(lang).select(params.n ?? 0);
    entry = entry[form] ?? entry.other;
  }
  return entry.replace(/\{(\w+)\}/g, (whole, name) =>
    name in params ? (name === "n" && typeof params.n === "number" ? number(params.n) : String(params[name])) : whole,
  );
}

/** Elements of the shell carry data-i18n (text), data-i18n-placeholder, -title and -label (aria-label). */
export function translateStatic(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  document.title = t("page.title");
}

// -- formatting ---------------------------------------------------------------------------------

const cache = new Map();
function formatter(kind, options) {
  const key = `${lang}|${kind}|${JSON.stringify(options)}`;
  if (!cache.has(key)) {
    const make = { number: Intl.NumberFormat, date: Intl.DateTimeFormat, relative: Intl.RelativeTimeFormat }[kind];
    cache.set(key, new make(lang, options));
  }
  return cache.get(key);
}

export function number(value, options = {}) {
  if (value === null || value === undefined) return "–";
  return formatter("number", options).format(value);
}

/** 1234567 → "1.2M" / "123.5万". */
export function compact(value) {
  if (value === null || value === undefined) return "–";
  return value < 10000 ? number(value) : number(value, { notation: "compact", maximumFractionDigits: 1 });
}

export function percent(value) {
  if (value === null || value === undefined) return "–";
  return number(value, { style: "percent", maximumFractionDigits: value < 0.1 ? 1 : 0 });
}

/** A duration in milliseconds, human-readable: 850 ms, 1.24 s, 2 min 5 s, 3 h 20 min. */
export function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  const u = (unit, n) => t(`unit.${unit}`, { v: n });
  if (ms < 1000) return u("ms", number(Math.round(ms)));
  if (ms < 10_000) return u("s", number(ms / 1000, { maximumFractionDigits: 2 }));
  if (ms < 60_000) return u("s", number(ms / 1000, { maximumFractionDigits: 1 }));
  const s = Math.round(ms / 1000);
  if (s < 3600) return joinUnits(u("min", Math.floor(s / 60)), s % 60 ? u("s", s % 60) : "");
  const m = Math.round(s / 60);
  if (m < 1440) return joinUnits(u("h", Math.floor(m / 60)), m % 60 ? u("min", m % 60) : "");
  return joinUnits(u("d", Math.floor(m / 1440)), Math.floor((m % 1440) / 60) ? u("h", Math.floor((m % 1440) / 60)) : "");
}

function joinUnits(a, b) {
  return b ? `${a} ${b}` : a;
}

/** A timestamp (ISO 8601) in the admin's time zone: the time alone when it is today. */
export function dateTime(iso, { seconds = true, full = false } = {}) {
  if (!iso) return "–";
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  const options = { hour: "2-digit", minute: "2-digit", hour12: false };
  if (seconds) options.second = "2-digit";
  if (full || !today) Object.assign(options, { month: "short", day: "numeric" });
  if (full) options.year = "numeric";
  return formatter("date", options).format(date);
}

/** Milliseconds of a timestamp with its milliseconds, for timelines: 11:02:03.456. */
export function preciseTime(iso) {
  if (!iso) return "–";
  return formatter("date", { hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3, hour12: false }).format(new Date(iso));
}

/** "5 s ago" / "5 秒前". */
export function ago(iso, now = Date.now()) {
  if (!iso) return "–";
  const seconds = Math.round((Date.parse(iso) - now) / 1000);
  const rtf = formatter("relative", { numeric: "auto", style: "narrow" });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}
