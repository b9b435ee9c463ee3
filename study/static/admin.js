// The admin pages' one script (a file, as the Content-Security-Policy allows no inline
// script): the copy buttons beside the participant links. Without it the links stay
// selectable text and the buttons stay hidden.
"use strict";

function selectText(el) {
  const range = document.createRange();
  range.selectNodeContents(el);
  const sel = window.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
}

async function copy(el) {
  const text = el.textContent.trim();
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain http on another host: no asynchronous clipboard; copy the selection instead.
  selectText(el);
  if (!document.execCommand("copy")) throw new Error("copy refused");
}

for (const button of document.querySelectorAll("button[data-copy]")) {
  const source = document.getElementById(button.dataset.copy);
  const status = button.parentElement.querySelector(".copy-status");
  if (!source) continue;
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await copy(source);
      status.textContent = "Copied";
    } catch (_err) {
      selectText(source);
      status.textContent = "Selected: press Ctrl+C (or Cmd+C) to copy";
    }
    clearTimeout(button.timer);
    button.timer = setTimeout(() => { status.textContent = ""; }, 4000);
  });
}
