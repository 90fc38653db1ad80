// CompactLM chat UI: chat with the served model (streamed), compare it with a second server, rate answers.
// Everything the servers send is untrusted text: it is only ever set with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_PREFIX = "compactlm-api-key:";
  const panels = [];
  let keyQueue = Promise.resolve();

  const baseUrl = (text) => (text.trim() ? text.trim().replace(/\/+$/, "") : location.origin);
  const keyFor = (base) => sessionStorage.getItem(KEY_PREFIX + base);

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // One key prompt at a time; resolves once the user has entered a key for `base`.
  function askForKey(base, rejected) {
    keyQueue = keyQueue.then(() => new Promise((resolve) => {
      const form = $("key-form");
      $("key-prompt").textContent = rejected
        ? `The server at ${base} rejected the API key: enter another.`
        : `The server at ${base} needs an API key.`;
      form.hidden = false;
      $("key-input").value = "";
      $("key-input").focus();
      form.onsubmit = (event) => {
        event.preventDefault();
        const key = $("key-input").value.trim();
        if (!key) return;
        sessionStorage.setItem(KEY_PREFIX + base, key);
        form.hidden = true;
        form.onsubmit = null;
        resolve();
      };
    }));
    return keyQueue;
  }

  // fetch with the stored key as Bearer; a 401 asks for a key and tries again.
  async function api(base, path, options = {}) {
    for (;;) {
      const key = keyFor(base);
      const headers = { "Content-Type": "application/json" };
      if (key) headers.Authorization = `Bearer ${key}`;
      const response = await fetch(base + path, { ...options, headers });
      if (response.status !== 401) return response;
      if (key) sessionStorage.removeItem(KEY_PREFIX + base);
      await askForKey(base, Boolean(key));
    }
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return `${response.status}: ${body.error && body.error.message ? body.error.message : JSON.stringify(body)}`;
    } catch {
      return `${response.status} ${response.statusText}`;
    }
  }

  // Server-sent events of an OpenAI stream: calls onEvent with each JSON payload until [DONE].
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      const events = buffer.split(/\r\n\r\n|\n\n|\r\r/);
      buffer = done ? "" : events.pop();
      for (const event of events) {
        const data = event.split(/\r\n|\n|\r/).filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
      if (done) return;
    }
  }

  async function loadModel(panel) {
    try {
      const response = await api(panel.base, "/v1/models", { method: "GET" });
      if (!response.ok) throw new Error(await errorText(response));
      panel.model = (await response.json()).data[0].id;
      panel.modelEl.textContent = ` ${panel.model}`;
      panel.errorEl.textContent = "";
    } catch (error) {
      panel.errorEl.textContent = `${panel.base}: ${error.message}`;
    }
  }

  function connect() {
    panels.length = 0;
    $("panels").replaceChildren();
    const wanted = [["champion", $("url-a").value], ["challenger", $("url-b").value]];
    for (const [role, url] of wanted) {
      if (role !== "champion" && !url.trim()) continue;
      const section = element("section", "panel");
      section.dataset.role = role;
      const title = element("h2", null, role);
      const panel = { role, base: baseUrl(url), history: [], model: null,
        modelEl: element("span", "model"), errorEl: element("p", "error"), turns: element("div", "turns") };
      title.append(panel.modelEl);
      section.append(title, panel.errorEl, panel.turns);
      $("panels").append(section);
      panels.push(panel);
    }
    return Promise.all(panels.map(loadModel));
  }

  function setupFeedback(turn, panel, responseId, question) {
    const box = turn.querySelector(".feedback");
    const form = turn.querySelector(".correction");
    const status = turn.querySelector(".status");
    const send = async (rating, corrected, reason) => {
      status.textContent = "sending...";
      const body = { request_id: responseId, rating, prompt: question, source: "ui" };
      if (corrected) body.corrected_answer = corrected;
      if (reason) body.reason = reason;
      try {
        const response = await api(panel.base, "/v1/feedback", { method: "POST", body: JSON.stringify(body) });
        if (!response.ok) throw new Error(await errorText(response));
        status.textContent = `Thanks: feedback #${(await response.json()).id} stored.`;
        form.hidden = true;
      } catch (error) {
        status.textContent = "";
        status.append(element("span", "error", `Feedback not stored: ${error.message}`));
      }
    };
    turn.querySelector(".up").onclick = (event) => {
      event.currentTarget.classList.add("chosen");
      send("up");
    };
    turn.querySelector(".down").onclick = (event) => {
      event.currentTarget.classList.add("chosen");
      form.hidden = false;
      form.querySelector(".corrected").focus();
    };
    form.onsubmit = (event) => {
      event.preventDefault();
      send("down", form.querySelector(".corrected").value.trim(), form.querySelector(".reason").value.trim());
    };
    box.hidden = false;
  }

  async function answer(panel, question, params) {
    const turn = $("answer-template").content.firstElementChild.cloneNode(true);
    turn.querySelector(".question").textContent = question;
    const answerEl = turn.querySelector(".answer");
    const meta = turn.querySelector(".meta");
    panel.turns.append(turn);
    if (!panel.model) await loadModel(panel);
    const messages = [...panel.history, { role: "user", content: question }];
    let text = "";
    let responseId = null;
    turn.classList.add("streaming");
    try {
      if (!panel.model) throw new Error("no model to ask (see the error above)");
      const response = await api(panel.base, "/v1/chat/completions", { method: "POST",
        body: JSON.stringify({ model: panel.model, messages, stream: true, ...params }) });
      if (!response.ok) throw new Error(await errorText(response));
      await readEvents(response, (event) => {
        if (event.error) throw new Error(event.error.message);
        responseId = event.id || responseId;
        const delta = event.choices && event.choices[0] && event.choices[0].delta;
        if (delta && delta.content) {
          text += delta.content;
          answerEl.textContent = text;
        }
      });
    } catch (error) {
      turn.classList.remove("streaming");
      turn.classList.add("failed");
      answerEl.append(element("span", "error", error.message));
      return;
    }
    turn.classList.remove("streaming");
    turn.classList.add("done");
    turn.dataset.responseId = responseId;
    panel.history.push({ role: "user", content: question }, { role: "assistant", content: text });
    meta.textContent = `${panel.model} · ${responseId}${text ? "" : " · (empty answer)"}`;
    setupFeedback(turn, panel, responseId, question);
  }

  async function ask(event) {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question) return;
    const params = { max_tokens: Number($("max-tokens").value) || 128, temperature: Number($("temperature").value) };
    $("question").value = "";
    $("ask").disabled = true;
    try {
      await Promise.all(panels.map((panel) => answer(panel, question, params)));
    } finally {
      $("ask").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const query = new URLSearchParams(location.search);
    $("url-a").value = query.get("champion") || "";
    $("url-b").value = query.get("challenger") || "";
    $("endpoints").onsubmit = (event) => {
      event.preventDefault();
      connect();
    };
    $("ask-form").onsubmit = ask;
    $("question").onkeydown = (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        $("ask-form").requestSubmit();
      }
    };
    connect();
  });
})();
