// Keyboard ranking: letters best first, "=" ties the next letter with the previous one,
// Backspace undoes, X/U toggle flags, 1–5 set confidence, "/" focuses the comment,
// Enter submits when every completion has a rank, S skips. The rank selects stay the source
// of truth, so the form also works with a mouse or without JavaScript.
(function () {
  "use strict";
  const form = document.getElementById("judgement-form");
  if (!form) return;
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

  // Keep the keyboard state in step with changes made with the mouse.
  labels.forEach((l) => selectFor(l).addEventListener("change", () => {
    order = labels.filter((x) => selectFor(x).value).map((x) => [x, Number(selectFor(x).value)])
      .sort((a, b) => a[1] - b[1]);
    render();
  }));

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
    const key = event.key.toLowerCase();
    if (labels.includes(key)) { press(key); event.preventDefault(); }
    else if (key === "=") { if (order.length) { tieNext = true; render(); } event.preventDefault(); }
    else if (key === "backspace") { order.pop(); tieNext = false; render(); event.preventDefault(); }
    else if (key === "x") { document.getElementById("flag-all_bad").click(); event.preventDefault(); }
    else if (key === "u") { document.getElementById("flag-unsafe").click(); event.preventDefault(); }
    else if (/^[1-5]$/.test(key)) { form.querySelector(`input[name="confidence"][value="${key}"]`).checked = true; event.preventDefault(); }
    else if (key === "/") { form.querySelector("textarea[name=comment]").focus(); event.preventDefault(); }
    else if (key === "s") { document.getElementById("skip-form").submit(); event.preventDefault(); }
    else if (key === "enter") {
      event.preventDefault();
      if (complete()) form.requestSubmit();
      else preview.textContent = "Rank every completion first (press its letter).";
    }
  });
  render();
})();
