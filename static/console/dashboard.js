"use strict";
// The dashboard (admin index): machine figures and counts, refreshed every few seconds in place.
(() => {
  const panel = document.getElementById("dashboard");
  if (!panel) return;
  const REFRESH_MS = 3000;

  function put(name, text) {
    panel.querySelector(`[data-figure="${name}"]`).textContent = text;
  }

  function bar(name, percent) {
    const meter = panel.querySelector(`[data-bar="${name}"]`);
    meter.value = Math.min(100, Math.max(0, percent));
  }

  function counts(name, mapping) {
    const entries = Object.entries(mapping);
    const total = entries.reduce((sum, [, n]) => sum + n, 0);
    const detail = entries.map(([key, n]) => `${key}: ${n}`).join(", ");
    put(name, entries.length ? `${total} (${detail})` : "0");
  }

  async function refresh() {
    try {
      const figures = await LLMConsole.request(panel.dataset.figuresUrl);
      const {cpu, memory, disk, gpus} = figures.resources;
      const failing = Object.entries(figures.health.checks).filter(([, check]) => check.status !== "healthy");
      put("health", [figures.health.status,
        ...failing.map(([name, check]) => `${name}: ${check.status} (${check.detail})`)].join("; "));
      put("cpu", `${cpu.usage_percent.toFixed(1)}% of ${cpu.cores} cores, load ${figures.load.load_average["1m"]}`);
      bar("cpu", cpu.usage_percent);
      put("memory", `${memory.used_gb} / ${memory.total_gb} GB (${memory.usage_percent}%)`);
      bar("memory", memory.usage_percent);
      put("disk", `${disk.used_gb} / ${disk.total_gb} GB (${disk.usage_percent}%), ${disk.free_gb} GB free`);
      bar("disk", disk.usage_percent);
      put("gpus", gpus.length
        ? gpus.map((g) => `${g.index} ${g.name}: ${g.utilization_percent}% busy, ${g.memory_used_gb} / ` +
            `${g.memory_total_gb} GB` + (g.deployments.length ? ` (${g.deployments.join(", ")})` : "")).join("; ")
        : "none detected");
      counts("catalog", figures.catalog);
      counts("downloads", figures.downloads);
      counts("deployments", figures.deployments);
      panel.dataset.refreshes = String(Number(panel.dataset.refreshes || 0) + 1);
    } catch (error) {
      LLMConsole.showMessage(`Dashboard: ${error.message}`);
    }
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
