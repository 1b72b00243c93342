// Keyboard: "/" focuses the search, "j" / "k" move through the list, Enter opens, Esc closes.

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

/** `actions`: {search(), move(step), open(), escape()}: each returns nothing. */
export function installKeyboard(actions) {
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape") {
      if (typing(event.target)) event.target.blur();
      actions.escape();
      return;
    }
    if (typing(event.target)) return;
    if (event.key === "/") {
      event.preventDefault();
      actions.search();
    } else if (event.key === "j" || event.key === "ArrowDown") {
      if (event.key === "ArrowDown" && !event.target.closest?.(".calls, .tasks")) return;
      event.preventDefault();
      actions.move(1);
    } else if (event.key === "k" || event.key === "ArrowUp") {
      if (event.key === "ArrowUp" && !event.target.closest?.(".calls, .tasks")) return;
      event.preventDefault();
      actions.move(-1);
    } else if (event.key === "Enter" && !event.target.closest?.("a, button, summary")) {
      event.preventDefault();
      actions.open();
    }
  });
}
