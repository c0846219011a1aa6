"use strict";
// The Usage page: requests per model, and tokens in and out, over time (uPlot, served from static/).
(() => {
  const panel = document.getElementById("usage");
  if (!panel || typeof uPlot === "undefined") return;
  const usage = JSON.parse(document.getElementById("usage-series").textContent);
  const step = usage.granularity === "day" ? 86400 : 3600;
  const start = Math.floor(Date.parse(usage.from) / 1000 / step) * step;
  const end = Date.parse(usage.to) / 1000;
  const times = [];
  for (let t = start; t < end; t += step) times.push(t);
  const index = new Map(times.map((t, i) => [t, i]));

  // One value per time slot (0 where nothing was served), from a series' points.
  function column(points, figure) {
    const values = times.map(() => 0);
    for (const point of points) {
      const slot = index.get(Date.parse(point.at) / 1000);
      if (slot !== undefined) values[slot] += point[figure];
    }
    return values;
  }

  const COLOURS = ["#417690", "#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2", "#4b5563"];
  function draw(element, lines) {
    const options = {
      width: Math.max(320, element.clientWidth || 800), height: 240,
      series: [{}, ...lines.map((line, i) => ({label: line.label, stroke: COLOURS[i % COLOURS.length], width: 2}))],
      axes: [{}, {size: 60}],
    };
    element.dataset.series = lines.length;
    return new uPlot(options, [times, ...lines.map((line) => line.values)], element);
  }

  const all = usage.series.flatMap((entry) => entry.points);
  draw(panel.querySelector("[data-chart=requests]"),
    usage.series.map((entry) => ({label: entry.key, values: column(entry.points, "requests")})));
  draw(panel.querySelector("[data-chart=tokens]"), [
    {label: "prompt tokens (in)", values: column(all, "prompt_tokens")},
    {label: "completion tokens (out)", values: column(all, "completion_tokens")},
  ]);
  panel.dataset.drawn = "true";
})();
