"use strict";
// Deployment pages: live health per row, the memory estimate on the deploy form, and a log that follows.
(() => {
  const HEALTH_MS = 3000;
  const LOG_MS = 1000;

  async function refreshHealth() {
    for (const cell of document.querySelectorAll("[data-health-for]")) {
      const id = cell.dataset.healthFor;
      if (!cell.dataset.live) continue;
      try {
        const health = await LLMConsole.request(`/api/deployments/${encodeURIComponent(id)}/health`);
        const probe = health.probe.ok ? `ok, ${health.probe.latency_ms} ms` : health.probe.detail;
        cell.textContent = `${health.healthy ? "healthy" : "unhealthy"} (${probe})`;
        document.querySelector(`[data-status-for="${id}"]`).textContent = health.status;
        document.querySelector(`[data-restarts-for="${id}"]`).textContent = health.restart_count;
      } catch (error) {
        cell.textContent = error.message;
      }
    }
  }

  function watchEstimate(form) {
    const output = document.getElementById("memory-estimate");
    const fields = ["model", "engine", "max_model_len", "gpu_memory_utilization", "quantization", "file"];
    async function estimate() {
      if (!form.elements.model.value) return;
      const query = new URLSearchParams(fields.map((name) => [name, form.elements[name].value]));
      try {
        const answer = await LLMConsole.request(`${form.dataset.estimateUrl}?${query}`);
        output.textContent = `${answer.engine}: needs about ${LLMConsole.size(answer.required_bytes)}, ` +
          `${LLMConsole.size(answer.available_bytes)} free — ${answer.fits ? "fits" : "does not fit"}` +
          (answer.file ? ` (${answer.file}: ${answer.file_reason})` : "");
        output.dataset.fits = String(answer.fits);
      } catch (error) {
        output.textContent = error.message;
        output.dataset.fits = "false";
      }
    }
    fields.forEach((name) => form.elements[name].addEventListener("change", estimate));
    estimate();
  }

  function followLog(log) {
    async function refresh() {
      try {
        const answer = await LLMConsole.request(log.dataset.logsUrl);
        const text = answer.lines.join("\n");
        if (text !== log.textContent) {
          const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
          log.textContent = text || "(no output yet)";
          if (atBottom) log.scrollTop = log.scrollHeight;
        }
      } catch (error) {
        LLMConsole.showMessage(`Logs: ${error.message}`);
      }
    }
    refresh();
    setInterval(refresh, LOG_MS);
  }

  if (document.querySelector("[data-health-for]")) {
    refreshHealth();
    setInterval(refreshHealth, HEALTH_MS);
  }
  const form = document.getElementById("deploy-form");
  if (form) watchEstimate(form);
  const log = document.getElementById("deployment-log");
  if (log) followLog(log);
})();
