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
      if (charts[name] && charts[name].canvas === canvas) {
        charts[name].data.datasets[0].data = values;
        charts[name].update("none");
      } else {
        charts[name] = new Chart(canvas, {
          type: "line",
          data: { datasets: [{ label: name, data: values, borderWidth: 1.5, pointRadius: 0 }] },
          options: { animation: false, parsing: false, plugins: { legend: { display: false } },
                     scales: { x: { type: "linear", title: { display: true, text: "step" } } } },
        });
      }
    });
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.body.addEventListener("htmx:afterSwap", draw);
})();
