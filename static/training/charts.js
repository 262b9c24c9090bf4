// Draws one small line chart per logged metric from the JSON the server embeds (#run-series),
// again after each htmx refresh. Chart.js is vendored (static/vendor), never from a CDN.
(function () {
  "use strict";
  const charts = {};
  function draw() {
    const data = document.getElementById("run-series");
    const box = document.getElementById("charts");
    if (!data || !box || typeof Chart === "undefined") return;
    const series = JSON.parse(data.textContent);
    Object.entries(series).forEach(([name, points]) => {
      let canvas = document.getElementById(`chart-${name}`);
      if (!canvas) {
        const figure = document.createElement("figure");
        figure.className = "chart";
        canvas = document.createElement("canvas");
        canvas.id = `chart-${name}`;
        canvas.width = 320; canvas.height = 180;
        const caption = document.createElement("figcaption");
        caption.textContent = name;
        figure.append(caption, canvas);
        box.append(figure);
      }
      const values = points.map(([step, value]) => ({ x: step, y: value }));
      // From the first point on: one point is drawn as a point (a line needs two), and the x axis starts at it.
      const radius = values.length === 1 ? 4 : 1.5;
      const first = values.length ? values[0].x : 0;
      if (charts[name] && charts[name].canvas === canvas) {
        const chart = charts[name];
        chart.data.datasets[0].data = values;
        chart.data.datasets[0].pointRadius = radius;
        chart.options.scales.x.min = first;
        chart.update("none");
      } else {
        charts[name] = new Chart(canvas, {
          type: "line",
          data: { datasets: [{ label: name, data: values, borderWidth: 1.5, pointRadius: radius, showLine: true }] },
          options: { animation: false, parsing: false, plugins: { legend: { display: false } },
                     scales: { x: { type: "linear", min: first, title: { display: true, text: "step" } } } },
        });
      }
    });
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.body.addEventListener("htmx:afterSwap", draw);
})();
