// Keyboard ranking: letters best first, "=" ties the next letter with the previous one,
// Backspace undoes, X/U toggle flags, 1–5 set confidence, "/" focuses the comment,
// Enter submits when every completion has a rank, S skips, E shows (or folds) every long answer. The rank selects stay the source
// of truth, so the form also works with a mouse or without JavaScript.
(function () {
  "use strict";
  // Times the server wrote in UTC (<time datetime="…+00:00">) are shown in the browser's own time zone.
  function localTime(date) { return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
  document.querySelectorAll("time.local-time").forEach((t) => { t.textContent = localTime(new Date(t.dateTime)); });

  // Long completions: folded to a few screens with a "Show all" button (a real button: Tab + Enter/Space;
  // E unfolds, or folds again, every long text at once). Without JavaScript nothing is folded.
  const foldable = Array.from(document.querySelectorAll(".body[data-long]")).map((body) => {
    const button = body.nextElementSibling;
    function set(folded) {
      body.classList.toggle("folded", folded);
      button.setAttribute("aria-expanded", String(!folded));
      button.textContent = folded ? "Show all" : "Show less";
    }
    button.hidden = false;
    set(true);
    button.addEventListener("click", () => set(!body.classList.contains("folded")));
    return { body, set };
  });
  function toggleAllFolds() {
    const anyFolded = foldable.some(({ body }) => body.classList.contains("folded"));
    foldable.forEach(({ set }) => set(!anyFolded));
  }

  const form = document.getElementById("judgement-form");
  if (!form) return;
  startLeaseClock(form);
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
    // Enter and Space on a focused button or link do what that button says (e.g. "Show all"), not submit.
    if ((target.tagName === "BUTTON" || target.tagName === "A") && (event.key === "Enter" || event.key === " ")) return;
    const key = event.key.toLowerCase();
    if (labels.includes(key)) { press(key); event.preventDefault(); }
    else if (key === "=") { if (order.length) { tieNext = true; render(); } event.preventDefault(); }
    else if (key === "backspace") { order.pop(); tieNext = false; render(); event.preventDefault(); }
    else if (key === "x") { document.getElementById("flag-all_bad").click(); event.preventDefault(); }
    else if (key === "u") { document.getElementById("flag-unsafe").click(); event.preventDefault(); }
    else if (/^[1-5]$/.test(key)) { form.querySelector(`input[name="confidence"][value="${key}"]`).checked = true; event.preventDefault(); }
    else if (key === "/") { form.querySelector("textarea[name=comment]").focus(); event.preventDefault(); }
    else if (key === "s") { document.getElementById("skip-form").submit(); event.preventDefault(); }
    else if (key === "e" && !labels.includes("e")) { toggleAllFolds(); event.preventDefault(); }
    else if (key === "enter") {
      event.preventDefault();
      if (complete()) form.requestSubmit();
      else preview.textContent = "Rank every completion first (press its letter).";
    }
  });
  // A ranking kept after a refused submit is already in the selects: start from it.
  order = labels.filter((x) => selectFor(x).value).map((x) => [x, Number(selectFor(x).value)]).sort((a, b) => a[1] - b[1]);
  render();

  // Lease: count down to its end in local time, and renew it while the annotator is active on the page
  // (a key, click, scroll or pointer move since the last renewal), when less than half of it is left.
  function startLeaseClock(form) {
    const lease = document.getElementById("lease");
    const out = document.getElementById("lease-countdown");
    if (!lease || !out) return;
    const total = Number(lease.dataset.seconds) * 1000;
    let until = new Date(lease.dataset.until);
    let lastActive = Date.now();
    let lastRenewal = Date.now();
    let problem = "";
    ["keydown", "pointerdown", "pointermove", "scroll", "input"].forEach((type) =>
      document.addEventListener(type, () => { lastActive = Date.now(); }, { passive: true, capture: true }));

    function show() {
      const left = until - Date.now();
      if (left <= 0) {
        out.textContent = "Lease expired: submitting takes the task back if nobody else has.";
        out.classList.add("expired");
      } else {
        const s = Math.floor(left / 1000);
        out.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")} left (until ${localTime(until)})` + problem;
        out.classList.toggle("expired", false);
        out.classList.toggle("soon", left < 60000);
      }
      lease.hidden = true;
    }

    function renew() {
      const body = new FormData();
      body.append("csrfmiddlewaretoken", form.querySelector("input[name=csrfmiddlewaretoken]").value);
      body.append("lease_token", form.querySelector("input[name=lease_token]").value);
      lastRenewal = Date.now();
      fetch(lease.dataset.renewUrl, { method: "POST", body, credentials: "same-origin" })
        .then((r) => r.json().then((data) => ({ ok: r.ok, data })))
        .then(({ ok, data }) => {
          if (ok) { until = new Date(data.leased_until); problem = ""; }
          else problem = ` · ${data.detail || "could not renew the lease"}`;
          show();
        })
        .catch(() => { problem = " · offline: lease not renewed"; show(); });
    }

    setInterval(() => {
      const left = until - Date.now();
      if (lastActive > lastRenewal && left < total / 2 && Date.now() - lastRenewal > 5000) renew();
      show();
    }, 1000);
    show();
  }
})();
