// The debrief: a copy button for the completion code, and the automatic return to the
// recruitment site (Prolific) once nothing is left to do on this page.
const copy = document.getElementById("copy");
const said = document.getElementById("copied");
if (copy && navigator.clipboard) {
  copy.hidden = false;
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(copy.dataset.copy);
      said.textContent = "Copied.";
    } catch {
      said.textContent = "Could not copy: select the code and copy it yourself.";
    }
  });
}

const target = document.getElementById("debrief").dataset.redirect;
const note = document.getElementById("redirecting");
if (target && note) {
  let left = 5; // seconds to read (and copy) the code first
  const tick = () => {
    if (left <= 0) {
      window.location.assign(target);
      return;
    }
    note.textContent = `Returning you automatically in ${left} s…`;
    left -= 1;
    setTimeout(tick, 1000);
  };
  tick();
}
