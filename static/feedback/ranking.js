// The ranking core shared by annotating (annotate.js) and adjudicating (adjudicate.js): letters rank
// best first, "=" ties the next letter with the previous one, Backspace undoes, Enter submits when
// every completion has a rank (Ctrl/Cmd+Enter from a text field), Escape leaves a text field. The rank
// selects (rank_<label>) stay the source of truth: equal ranks are a tie, and a change made with the
// mouse (or a ranking the server sent back) becomes the keyboard's state, so the form also works with
// a mouse or without JavaScript.
window.Ranking = (function () {
  "use strict";

  // form: the <form> holding one .completion card (data-label) and one rank select per completion.
  // options.extraKey(key, event) -> true when the page handled a key of its own (flags, skip, …).
  // options.focusedButtonsKeepKeys: Enter and Space on a focused button or link do what it says.
  function attach(form, options) {
    const extraKey = options.extraKey || (() => false);
    const cards = Array.from(form.querySelectorAll(".completion"));
    const labels = cards.map((c) => c.dataset.label);
    const preview = document.getElementById("ranking-preview");
    let order = []; // [[label, rank], ...] in the order pressed
    let tieNext = false;

    function selectFor(label) { return form.querySelector(`select[name="rank_${label}"]`); }

    function render() {
      labels.forEach((l) => { selectFor(l).value = ""; });
      order.forEach(([l, r]) => { selectFor(l).value = String(r); });
      cards.forEach((c) => c.classList.toggle("ranked", order.some(([l]) => l === c.dataset.label)));
      const groups = [];
      order.forEach(([l, r]) => { (groups[r - 1] = groups[r - 1] || []).push(l.toUpperCase()); });
      preview.textContent = groups.filter(Boolean).map((g) => g.join(" = ")).join(" > ") + (tieNext ? " =" : "");
    }

    function press(label) {
      if (order.some(([l]) => l === label)) return;
      const last = order[order.length - 1];
      const rank = last ? (tieNext ? last[1] : order.length + 1) : 1;
      order.push([label, rank]);
      tieNext = false;
      render();
    }

    function fromSelects() {
      order = labels.filter((x) => selectFor(x).value).map((x) => [x, Number(selectFor(x).value)])
        .sort((a, b) => a[1] - b[1]);
    }

    // Keep the keyboard state in step with changes made with the mouse.
    labels.forEach((l) => selectFor(l).addEventListener("change", () => { fromSelects(); render(); }));

    function complete() { return labels.every((l) => selectFor(l).value); }

    document.addEventListener("keydown", (event) => {
      const target = event.target;
      const typing = target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type === "text");
      if (typing) {
        if (event.key === "Escape") target.blur();
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && complete()) form.requestSubmit();
        return;
      }
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (options.focusedButtonsKeepKeys && (target.tagName === "BUTTON" || target.tagName === "A")
          && (event.key === "Enter" || event.key === " ")) return;
      const key = event.key.toLowerCase();
      if (labels.includes(key)) { press(key); event.preventDefault(); }
      else if (key === "=") { if (order.length) { tieNext = true; render(); } event.preventDefault(); }
      else if (key === "backspace") { order.pop(); tieNext = false; render(); event.preventDefault(); }
      else if (key === "enter") {
        event.preventDefault();
        if (complete()) form.requestSubmit();
        else preview.textContent = "Rank every completion first (press its letter).";
      }
      else if (extraKey(key, event)) event.preventDefault();
    });
    // A ranking already in the selects (kept after a refused submit, or a stored decision): start from it.
    fromSelects();
    render();
    return { labels };
  }

  return { attach };
})();
