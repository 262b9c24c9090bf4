// Dashboard plots from the JSON the server embeds (#dashboard-data); Chart.js is vendored, no CDN.
// Every chart has its numbers in a table underneath (templates/feedback/dashboard.html).
(function () {
  "use strict";
  const source = document.getElementById("dashboard-data");
  if (!source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const common = { animation: false, plugins: { legend: { display: false } } };
  function chart(id, config) {
    const el = document.getElementById(id);
    if (el) el.chart = new Chart(el, config);
  }
  // One point is drawn as a point (a line needs two).
  const radius = (rows) => (rows.length === 1 ? 4 : 2);
  chart("chart-per-hour", { type: "bar", data: { labels: data.per_hour.map((r) => r[0]),
    datasets: [{ label: "judgements", data: data.per_hour.map((r) => r[1]) }] }, options: common });
  chart("chart-agreement", { type: "line", data: { labels: data.agreement_over_time.map((r) => r[0]),
    datasets: [{ label: "mean pair agreement", data: data.agreement_over_time.map((r) => r[1]),
      pointRadius: radius(data.agreement_over_time) }] },
    options: { ...common, scales: { y: { min: 0, max: 1 } } } });
  chart("chart-annotators", { type: "bar", data: { labels: data.annotators.map((r) => r.annotator),
    datasets: [{ label: "judgements", data: data.annotators.map((r) => r.judgements) }] }, options: common });

  // Leaderboard on the Elo scale: a floating bar from the lower to the upper end of each model's 95% interval,
  // and a dot at its score (drawn by the small plugin below); the axis spans the data, not 0…1.
  const board = data.leaderboard;
  const scoreDots = {
    id: "scoreDots",
    afterDatasetsDraw(c) {
      const meta = c.getDatasetMeta(0);
      const ctx = c.ctx;
      ctx.save();
      ctx.fillStyle = "#1d232a";
      meta.data.forEach((bar, i) => {
        ctx.beginPath();
        ctx.arc(c.scales.x.getPixelForValue(board[i].score), bar.y, 4, 0, 2 * Math.PI);
        ctx.fill();
      });
      ctx.restore();
    },
  };
  const axis = data.leaderboard_axis || {};
  chart("chart-leaderboard", {
    type: "bar",
    data: { labels: board.map((r) => r.model),
      datasets: [{ label: "95% CI", data: board.map((r) => [r.lower, r.upper]), backgroundColor: "rgba(37, 87, 214, 0.35)",
        borderColor: "rgba(37, 87, 214, 0.8)", borderWidth: 1, barPercentage: 0.5, minBarLength: 2 }] },
    options: { ...common, indexAxis: "y",
      scales: { x: { type: "linear", min: axis.min, max: axis.max, title: { display: true, text: "Elo score" } } },
      plugins: { legend: { display: false }, tooltip: { callbacks: { label: (item) => {
        const r = board[item.dataIndex];
        return `${Math.round(r.score)} (95% CI ${Math.round(r.lower)}–${Math.round(r.upper)}, ${r.comparisons} comparisons)`;
      } } } } },
    plugins: [scoreDots],
  });
})();
