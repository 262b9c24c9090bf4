// Keyboard adjudication, the same keys as annotating (the ranking keys of ranking.js: letters best
// first, "=" ties the next letter with the previous one, Backspace undoes, Enter submits when every
// completion has a rank), and "/" focuses the note, N opens the next task without deciding.
(function () {
  "use strict";
  const form = document.getElementById("adjudication-form");
  if (!form) return;
  window.Ranking.attach(form, {
    extraKey(key) {
      if (key === "/") { const note = form.querySelector("textarea[name=note]"); if (note) note.focus(); }
      else if (key === "n") { const next = document.getElementById("next-task"); if (next) next.click(); }
      else return false;
      return true;
    },
  });
})();
