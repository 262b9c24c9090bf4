// Keyboard annotating: the ranking keys of ranking.js (letters best first, "=" ties, Backspace undoes,
// Enter submits when every completion has a rank), and X/U toggle flags, 1–5 set confidence, "/" focuses
// the comment, S skips, E shows (or folds) every long answer. Also the lease clock and local times.
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
  const { labels } = window.Ranking.attach(form, {
    focusedButtonsKeepKeys: true, // e.g. Enter on "Show all" unfolds, it does not submit
    extraKey(key) {
      if (key === "x") document.getElementById("flag-all_bad").click();
      else if (key === "u") document.getElementById("flag-unsafe").click();
      else if (/^[1-5]$/.test(key)) form.querySelector(`input[name="confidence"][value="${key}"]`).checked = true;
      else if (key === "/") form.querySelector("textarea[name=comment]").focus();
      else if (key === "s") document.getElementById("skip-form").submit();
      else if (key === "e" && !labels.includes("e")) toggleAllFolds();
      else return false;
      return true;
    },
  });

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
