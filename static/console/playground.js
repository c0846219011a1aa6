"use strict";
// The playground: chat (the conversation is kept here and sent whole) or plain completion,
// the engine's server-sent events read as they arrive and the text appended token by token.
(() => {
  const form = document.getElementById("playground");
  if (!form) return;
  const transcript = document.getElementById("transcript");
  const state = document.getElementById("playground-state");
  let messages = [];

  function turn(role, text) {
    const element = document.createElement("div");
    element.className = `turn ${role}`;
    const label = document.createElement("span");
    label.className = "role";
    label.textContent = `${role}:`;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    element.append(label, body);
    transcript.append(element);
    return body;
  }

  function setState(name, text) {
    state.dataset.state = name;
    state.textContent = text;
  }

  // Each complete "data: …" event in `buffer`; answers what is left over for the next read.
  function readEvents(buffer, onEvent) {
    const events = buffer.replace(/\r\n/g, "\n").split("\n\n");
    const rest = events.pop();
    for (const event of events) {
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) onEvent(line.slice(6));
      }
    }
    return rest;
  }

  async function send(event) {
    event.preventDefault();
    const deployment = form.elements.deployment.value;
    const prompt = form.elements.prompt.value.trim();
    if (!deployment || !prompt) return;
    const mode = form.elements.mode.value;
    const body = {
      stream: true,
      max_tokens: Number(form.elements.max_tokens.value),
      temperature: Number(form.elements.temperature.value),
    };
    if (mode === "chat") {
      messages.push({role: "user", content: prompt});
      body.messages = messages;
    } else {
      body.prompt = prompt;
    }
    turn(mode === "chat" ? "user" : "prompt", prompt);
    const output = turn(mode === "chat" ? "assistant" : "completion", "");
    form.elements.prompt.value = "";
    setState("streaming", "answering…");
    const url = `${form.dataset.sendUrl}${mode}/${encodeURIComponent(deployment)}`;
    try {
      const response = await fetch(url, {
        method: "POST", credentials: "same-origin", body: JSON.stringify(body),
        headers: {"Content-Type": "application/json", "X-CSRFToken": LLMConsole.csrfToken()},
      });
      if (!response.ok) {
        const answer = await response.json().catch(() => ({message: `HTTP ${response.status}`}));
        throw new Error(answer.message || `HTTP ${response.status}`);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer = readEvents(buffer + decoder.decode(value, {stream: true}), (data) => {
          if (data === "[DONE]") return;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          const choice = (chunk.choices || [])[0];
          if (!choice) return;
          output.textContent += mode === "chat" ? (choice.delta && choice.delta.content) || "" : choice.text || "";
          transcript.scrollTop = transcript.scrollHeight;
        });
      }
      if (mode === "chat") messages.push({role: "assistant", content: output.textContent});
      setState("done", "done");
    } catch (error) {
      if (mode === "chat") messages.pop();
      LLMConsole.showMessage(`Playground: ${error.message}`);
      setState("failed", "failed");
    }
  }

  form.addEventListener("submit", send);
  document.getElementById("clear").addEventListener("click", () => {
    messages = [];
    transcript.textContent = "";
    setState("idle", "");
  });
})();
