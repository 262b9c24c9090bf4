// Dashboard plots from the JSON the server embeds (#dashboard-data); Chart.js is vendored, no CDN.
(function () {
  "use strict";
  const source = document.getElementById("dashboard-data");
  if (!source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const common = { animation: false, plugins: { legend: { display: false } } };
  function chart(id, config) { const el = document.getElementById(id); if (el) new Chart(el, config); }
  chart("chart-per-hour", { type: "bar", data: { labels: data.per_hour.map((r) => r[0]),
    datasets: [{ label: "judgements", data: data.per_hour.map((r) => r[1]) }] }, options: common });
  chart("chart-agreement", { type: "line", data: { labels: data.agreement_over_time.map((r) => r[0]),
    datasets: [{ label: "mean pair agreement", data: data.agreement_over_time.map((r) => r[1]) }] },
    options: { ...common, scales: { y: { min: 0, max: 1 } } } });
  chart("chart-annotators", { type: "bar", data: { labels: data.annotators.map((r) => r.annotator),
    datasets: [{ label: "judgements", data: data.annotators.map((r) => r.judgements) }] }, options: common });
  // Floating bars from the lower to the upper bound of each model's interval.
  chart("chart-leaderboard", { type: "bar", data: { labels: data.leaderboard.map((r) => r.model),
    datasets: [{ label: "95% CI", data: data.leaderboard.map((r) => [r.lower, r.upper]) }] },
    options: { ...common, indexAxis: "y" } });
})();
