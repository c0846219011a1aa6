"use strict";
// The download list follows /ws/downloads: a snapshot on connect, then an event per change (a deleted
// task too), so progress bars, speed, ETA, status and the row buttons move without polling or reloading.
(() => {
  const live = document.getElementById("download-live");
  if (!live) return;
  const allowed = JSON.parse(document.getElementById("download-actions").textContent);
  const state = live.querySelector("[data-live-state]");
  let delay = 1000;

  function set(kind, id, text) {
    const element = document.querySelector(`[data-${kind}-for="${id}"]`);
    if (element) element.textContent = text;
  }

  const unlisted = new Set();
  const UNFINISHED = ["pending", "downloading", "paused"];

  // A task this page does not list: started elsewhere, or of another page or filter.
  function notice(task) {
    unlisted.add(task.id);
    const link = live.querySelector("[data-unlisted]");
    link.hidden = false;
    const more = `${unlisted.size} more download${unlisted.size > 1 ? "s" : ""}`;
    link.textContent = `${more} changed since this list was loaded: reload`;
  }

  function apply(task) {
    const bar = document.querySelector(`[data-progress-for="${task.id}"]`);
    if (!bar) {
      notice(task);
      return;
    }
    bar.value = task.progress;
    set("percent", task.id, `${task.progress.toFixed(1)}%`);
    set("status", task.id, task.status);
    set("speed", task.id, task.speed_bytes_per_second ? task.speed : "-");
    set("eta", task.id, task.eta || "-");
    set("size", task.id, `${task.downloaded_size} / ${task.total_size}`);
    for (const button of document.querySelectorAll(`button[data-row="${task.id}"]`)) {
      const statuses = allowed[button.dataset.action];
      button.disabled = Boolean(statuses) && !statuses.includes(task.status);
    }
    if (task.error) set("status", task.id, `${task.status}: ${task.error}`);
  }

  // A task deleted elsewhere (another operator, the API): its row goes.
  function remove(taskId) {
    const bar = document.querySelector(`[data-progress-for="${taskId}"]`);
    if (bar) bar.closest("tr").remove();
  }

  // A listed task shown as unfinished but missing from the snapshot finished between the page's render
  // and this connection (the snapshot holds unfinished tasks only): ask the API where it ended.
  function settleFinished(inSnapshot) {
    for (const status of document.querySelectorAll("[data-status-for]")) {
      const id = status.dataset.statusFor;
      if (inSnapshot.has(id) || !UNFINISHED.includes(status.textContent.trim())) continue;
      fetch(`/api/downloads/${encodeURIComponent(id)}`, { credentials: "same-origin" })
        .then((response) => (response.ok ? response.json() : null))
        .then((body) => body && apply(body.data));
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/downloads`);
    socket.addEventListener("open", () => {
      delay = 1000;
      live.dataset.connected = "true";
      state.textContent = "connected";
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "snapshot") {
        message.tasks.forEach(apply);
        settleFinished(new Set(message.tasks.map((task) => task.id)));
      } else if (message.type === "deleted") remove(message.task_id);
      else apply(message.task);
    });
    socket.addEventListener("close", () => {
      live.dataset.connected = "false";
      state.textContent = "disconnected, reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    });
  }

  connect();
})();
