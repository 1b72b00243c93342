"""What a page shows as its own words (not data), for the language tests."""

from __future__ import annotations

import re

from playwright.sync_api import Page

# Technical terms a Chinese admin reads as they are (as in Chinese OpenTelemetry and LLM docs), and
# the names of products.
KEPT_IN_CHINESE = {"LLM", "JSON", "JSONL", "Token", "Trace", "Span", "ID", "Esc", "WebSocket", "HTTP"}
KEPT_IN_CHINESE |= {"llm-otel", "OpenAI", "SDK", "JavaScript"}
_WORD = re.compile(r"[A-Za-z][A-Za-z-]+")

_UI_TEXTS = """
() => {
  const texts = [];
  const isData = (el) => Boolean(el.closest('[translate="no"], script, style, noscript'));
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    const text = node.textContent.trim();
    if (!text || !el || isData(el)) continue;
    const box = el.tagName === "OPTION" ? el.parentElement : el;  // a closed <select> still shows its choices
    const shown = box.checkVisibility({ visibilityProperty: true });
    if (shown) texts.push(text);
  }
  for (const el of document.querySelectorAll("[placeholder], [title], [aria-label]")) {
    if (isData(el) || !el.checkVisibility()) continue;
    for (const name of ["placeholder", "title", "aria-label"]) {
      const value = el.getAttribute(name);
      if (value) texts.push(value);
    }
  }
  for (const el of document.querySelectorAll("svg title")) if (!isData(el)) texts.push(el.textContent);
  return texts;
}
"""


def ui_texts(page: Page) -> list[str]:
    """Every visible text node, placeholder, tooltip and label of the page that is not data."""
    return page.evaluate(_UI_TEXTS)


def english_left(page: Page) -> list[str]:
    """The page's own strings that still hold an English word (beyond the kept technical terms)."""
    left = []
    for text in ui_texts(page):
        words = [
            word
            for word in _WORD.findall(text)
            if word not in KEPT_IN_CHINESE and not re.fullmatch(r"p\d+", word)
        ]
        if words:
            left.append(text)
    return sorted(set(left))
