"use strict";
// What every console page shares: the API through the admin session (the session is the
// credential, so no API key is ever put in a page), errors shown as admin messages, and
// readable figures.
const LLMConsole = (() => {
  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function showMessage(text, level = "error") {
    let list = document.querySelector("ul.messagelist");
    if (!list) {
      list = document.createElement("ul");
      list.className = "messagelist";
      const content = document.getElementById("content");
      content.parentNode.insertBefore(list, content);
    }
    const same = [...list.children].find((item) => item.textContent === text);
    if (same) return;
    const item = document.createElement("li");
    item.className = level;
    item.textContent = text;
    list.appendChild(item);
  }

  // fetch() with the session cookie and CSRF token; answers the envelope's data, throws its message.
  async function request(url, {method = "GET", body} = {}) {
    const headers = {"Accept": "application/json"};
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let answer = null;
    try {
      answer = await response.json();
    } catch (error) {
      throw new Error(`${url} answered HTTP ${response.status} without JSON`);
    }
    if (!response.ok || answer.success === false) {
      throw new Error(answer.message || `${url} answered HTTP ${response.status}`);
    }
    return "data" in answer && "success" in answer ? answer.data : answer;
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "-";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let value = Number(bytes);
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  return {request, csrfToken, showMessage, size, duration};
})();
