// snapkit workbench: plain JS, no build step. Every change is a POST carrying the token header.
"use strict";

const TOKEN = document.querySelector('meta[name="snapkit-token"]').content;
const $ = (selector, root = document) => root.querySelector(selector);
let classes = [];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function say(message, isError = false) {
  const status = $("#status");
  status.textContent = message;
  status.className = isError ? "error" : "";
}

async function api(method, url, body, contentType = "application/json") {
  const options = { method, headers: { "X-Snapkit-Token": TOKEN } };
  if (body !== undefined) {
    if (contentType === "application/json") body = JSON.stringify(body);
    if (contentType) options.headers["Content-Type"] = contentType;
    options.body = body;
  }
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

async function act(promise, done) {
  try {
    const result = await promise;
    if (done) say(done(result));
    await refresh();
    return result;
  } catch (error) {
    say(error.message, true);
    return null;
  }
}

const fileUrl = (root, path) => `/api/file?root=${encodeURIComponent(root)}&path=${encodeURIComponent(path)}`;
const specUrl = (root, path) => `/api/spectrogram.png?root=${encodeURIComponent(root)}&path=${encodeURIComponent(path)}`;
const fmt = (value, digits = 1) => (value === null || value === undefined ? "-" : Number(value).toFixed(digits));

function clipCard(root, path, title, extra, actions) {
  return el("div", { class: "card", "data-path": path },
    el("img", { src: specUrl(root, path), alt: `spectrogram of ${path}`, loading: "lazy" }),
    el("audio", { controls: "", preload: "none", src: fileUrl(root, path) }),
    title, el("div", { class: "name" }, path), ...extra, el("div", { class: "actions" }, ...actions));
}

function classSelect(exclude, extra = []) {
  const select = el("select");
  for (const label of [...new Set([...classes, ...extra])].filter((c) => c !== exclude)) {
    select.append(el("option", { value: label }, label));
  }
  return select;
}

// --- Dataset ---------------------------------------------------------------------------------------------------

function renderDataset(data) {
  classes = data.classes.map((c) => c.label);
  $("#data-dir").textContent = data.data_dir;
  const list = $("#class-list");
  list.replaceChildren(...[...new Set([...classes, "background"])].map((c) => el("option", { value: c })));
  $("#classes tbody").replaceChildren(...data.classes.map((c) => el("tr", {},
    el("td", {}, c.label), el("td", {}, c.clips), el("td", {}, fmt(c.seconds)),
    el("td", {}, el("button", { type: "button", onclick: () => renameClass(c.label) }, "Rename")))));
  $("#problems").replaceChildren(...(data.problems.length ? data.problems.map((p) =>
    el("li", { class: p.severity }, `${p.severity}: ${p.message}`)) : [el("li", {}, "none")]));
  const blocks = [];
  for (const label of classes) {
    const clips = data.clips.filter((c) => c.label === label);
    blocks.push(el("div", { class: "class-block" }, el("h3", {}, `${label} (${clips.length})`),
      el("div", { class: "cards" }, ...clips.map((clip) => {
        const target = classSelect(label, ["background"]);
        const info = clip.error ? el("div", { class: "label" }, clip.error)
          : el("div", {}, `${fmt(clip.duration_s, 2)} s, peak ${fmt(clip.peak_dbfs)} dBFS`);
        return clipCard("data", clip.path, "", [info], [
          target,
          el("button", { type: "button", onclick: () => act(api("POST", "/api/move", { paths: [clip.path], label: target.value }),
            (r) => `Moved ${clip.path} to ${r.label}.`) }, "Move"),
          el("button", { type: "button", class: "delete", onclick: () => act(api("POST", "/api/delete", { paths: [clip.path] }),
            () => `Deleted ${clip.path} (Undo brings it back).`) }, "Delete"),
        ]);
      }))));
  }
  $("#clips").replaceChildren(...blocks);
}

function renameClass(old) {
  const name = prompt(`New name for class ${old}:`, old);
  if (name && name !== old) act(api("POST", "/api/rename", { old, new: name }), () => `Renamed ${old} to ${name}.`);
}

$("#upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = new FormData();
  for (const file of $("#upload-files").files) body.append("files", file);
  const query = new URLSearchParams({ label: form.label.value, clip_s: form.clip_s.value, hop_s: form.hop_s.value });
  say("Importing ...");
  await act(api("POST", `/api/upload?${query}`, body, null),
    (r) => `Imported ${r.written.length} clip(s); skipped ${r.silent_skipped} silent and ${r.room_tone_skipped} room-tone window(s).`);
});

// --- Record ----------------------------------------------------------------------------------------------------

let microphone = null;

async function openMicrophone() {
  if (microphone) return microphone;
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const context = new AudioContext();
  const source = context.createMediaStreamSource(stream);
  // ScriptProcessor: no module file to serve and enough for a level meter and 2 s clips.
  const processor = context.createScriptProcessor(4096, 1, 1);
  const silent = context.createGain();
  silent.gain.value = 0;
  microphone = { context, wanted: 0, parts: [], got: 0, done: null };
  processor.onaudioprocess = (event) => {
    const block = event.inputBuffer.getChannelData(0);
    let peak = 0;
    for (let i = 0; i < block.length; i++) peak = Math.max(peak, Math.abs(block[i]));
    const db = peak > 0 ? 20 * Math.log10(peak) : -100;
    const bar = $("#meter-bar");
    bar.style.width = `${Math.max(0, Math.min(100, (db + 60) / 60 * 100))}%`;
    bar.classList.toggle("hot", db > -3);
    const mic = microphone;
    if (mic.wanted > mic.got) {
      const take = block.slice(0, Math.min(block.length, mic.wanted - mic.got));
      mic.parts.push(take);
      mic.got += take.length;
      if (mic.got >= mic.wanted) {
        const clip = new Float32Array(mic.got);
        let at = 0;
        for (const part of mic.parts) { clip.set(part, at); at += part.length; }
        mic.wanted = 0;
        mic.done(clip);
      }
    }
  };
  source.connect(processor);
  processor.connect(silent);
  silent.connect(context.destination);
  return microphone;
}

function capture(mic, seconds) {
  return new Promise((resolve) => {
    mic.parts = []; mic.got = 0; mic.done = resolve;
    mic.wanted = Math.round(seconds * mic.context.sampleRate);
  });
}

$("#record-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const label = $("#record-label").value.trim();
  const seconds = Number($("#record-seconds").value);
  const state = $("#record-state");
  const button = $("#record-button");
  button.disabled = true;
  try {
    const mic = await openMicrophone();
    await mic.context.resume();
    for (let left = Number($("#record-countdown").value); left > 0; left--) {
      state.textContent = `Recording in ${left} ...`;
      await new Promise((r) => setTimeout(r, 1000));
    }
    state.textContent = `● Recording ${seconds} s of ${label} ...`;
    const clip = await capture(mic, seconds);
    state.textContent = "Saving ...";
    const query = new URLSearchParams({ label, sample_rate_hz: mic.context.sampleRate });
    const saved = await api("POST", `/api/record?${query}`, clip.buffer, "application/octet-stream");
    state.textContent = `Saved ${saved.path}, peak ${fmt(saved.peak_dbfs)} dBFS.`;
    $("#recorded").prepend(el("li", { class: "saved" }, saved.path));
    refresh();
  } catch (error) {
    state.textContent = error.message;
    say(error.message, true);
  } finally {
    button.disabled = false;
  }
});

// --- Review ----------------------------------------------------------------------------------------------------

function renderReview(data) {
  $("#events-dirs").textContent = data.folders.join(", ") || "no --events folder";
  $("#events").replaceChildren(el("div", { class: "cards" }, ...data.clips.map((clip) => {
    const other = classSelect(clip.label, ["background"]);
    const review = (label, what) => act(api("POST", "/api/review", { root: clip.root, path: clip.path, label }),
      () => `${clip.path}: ${what}, moved to ${label}.`);
    const actions = [];
    if (clip.label) actions.push(el("button", { type: "button", class: "right", onclick: () => review(clip.label, "right") }, `Right (${clip.label})`));
    actions.push(el("button", { type: "button", class: "wrong", onclick: () => review("background", "wrong") }, "Wrong"));
    actions.push(other, el("button", { type: "button", class: "other", onclick: () => review(other.value, "another class") }, "Another class"));
    return clipCard(clip.root, clip.path, el("div", { class: "label" }, clip.label || "(unknown label)"),
      [el("div", {}, `score ${clip.score === null ? "-" : fmt(clip.score, 2)}, ${clip.time || ""}`)], actions);
  })));
  if (!data.clips.length) $("#events").append(el("p", {}, "No event clips left to review."));
}

function renderChanges(changes) {
  const text = `${changes.total} change(s) since ${changes.trained_at ? "the last training" : "start (no model yet)"}`;
  $("#changes").replaceChildren(text, " ", el("button", { type: "button", id: "retrain", onclick: retrain }, "Retrain"));
}

// --- Train -----------------------------------------------------------------------------------------------------

function retrain() {
  location.hash = "#train";
  $("#train-form").requestSubmit();
}

const streams = {};

// Follow a server-sent event stream of snapshots until its state is no longer "running".
function follow(url, show, ended) {
  if (streams[url]) streams[url].close();
  const stream = new EventSource(url);
  streams[url] = stream;
  stream.onmessage = (message) => {
    const snapshot = JSON.parse(message.data);
    show(snapshot);
    if (snapshot.state !== "running") { stream.close(); delete streams[url]; ended(); }
  };
}

const followTraining = () => follow("/api/train/stream", showTraining, () => { refresh(); loadModels(); });

function showTraining(status) {
  const log = $("#train-log");
  if (status.lines.length) { log.textContent += status.lines.join("\n") + "\n"; log.scrollTop = log.scrollHeight; }
  const running = status.state === "running";
  $("#train-button").disabled = running;
  $("#train-state").textContent = running ? `Training ${status.run} ... (one training at a time)`
    : status.state === "done" ? `Trained ${status.run}.` : status.state === "failed" ? status.error : "";
  if (status.result) showResult(status.result);
}

function showResult(result) {
  const m = result.metrics;
  const parts = [];
  if (m.per_class) {
    const rows = Object.entries(m.per_class).map(([label, r]) => el("tr", {},
      el("td", {}, label), el("td", {}, fmt(r.precision, 2)), el("td", {}, fmt(r.recall, 2)), el("td", {}, fmt(r.f1, 2)), el("td", {}, r.support)));
    parts.push(el("div", {}, el("h3", {}, `Per class (accuracy ${fmt(m.accuracy, 2)}, ${m.estimate})`),
      el("table", { id: "per-class" }, el("thead", {}, el("tr", {}, ...["class", "precision", "recall", "F1", "clips"].map((h) => el("th", {}, h)))), el("tbody", {}, ...rows))));
  } else {
    parts.push(el("p", { id: "per-class" }, `No quality estimate: ${m.estimate}`));
  }
  if (m.confusion_matrix) {
    const names = m.classes;
    parts.push(el("div", {}, el("h3", {}, "Confusion matrix (rows: truth)"),
      el("table", { class: "confusion" }, el("tr", {}, el("th", {}, ""), ...names.map((n) => el("th", {}, n))),
        ...m.confusion_matrix.map((row, i) => el("tr", {}, el("th", {}, names[i]),
          ...row.map((n, j) => el("td", { class: i === j ? "diag" : "" }, n)))))));
  }
  if (m.false_alarm_budget) {
    const rows = m.false_alarm_budget.table.map((r) => el("tr", {}, el("td", {}, r.class), el("td", {}, fmt(r.threshold, 2)),
      el("td", {}, fmt(r.false_alarms_per_hour, 2)), el("td", {}, fmt(r.detection_rate, 2))));
    parts.push(el("div", {}, el("h3", {}, `Operating point (${m.false_alarm_budget.max_false_alarms_per_hour} false alarm(s)/h)`),
      el("table", {}, el("tr", {}, ...["class", "threshold", "false alarms/h", "detection rate"].map((h) => el("th", {}, h))), ...rows)));
  }
  if (result.curve) parts.push(el("img", { src: fileUrl("runs", `${result.run}/calibration.png`), alt: "false-alarm / detection curve" }));
  $("#train-result").replaceChildren(el("div", { class: "result" }, ...parts));
}

$("#train-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const epochs = $("#train-epochs").value;
  const body = {
    backbone: $("#train-backbone").value,
    epochs: epochs ? Number(epochs) : null,
    max_minutes: Number($("#train-minutes").value),
    estimate: $("#train-estimate").checked,
  };
  try {
    await api("POST", "/api/train", body);
    $("#train-log").textContent = "";
    $("#train-result").replaceChildren();
    followTraining();
  } catch (error) {
    say(error.message, true);
  }
});

// --- Listen ----------------------------------------------------------------------------------------------------

function showListening(snapshot) {
  const status = snapshot.status;
  $("#listen-state").textContent = snapshot.state === "running"
    ? `Listening with ${snapshot.model}${status ? `, ${fmt(status.position_s)} s, level ${fmt(status.level_dbfs)} dBFS` : ""}`
    : snapshot.state === "failed" ? snapshot.error : snapshot.state === "stopped" ? `Stopped (${snapshot.model}).` : "";
  if (status) {
    $("#listen-probs tbody").replaceChildren(...Object.entries(status.probabilities).map(([label, p]) =>
      el("tr", {}, el("td", {}, label), el("td", {}, fmt(p, 2)))));
    $("#listen-events").replaceChildren(...status.events.slice().reverse().map((e) =>
      el("li", {}, `${e.time}  ${e.label}  score ${fmt(e.peak_score, 2)}`)));
  }
  $("#listen-clips").replaceChildren(...snapshot.clips.slice().reverse().map((name) =>
    el("li", {}, name, " ", el("audio", { controls: "", preload: "none", src: fileUrl("events-0", name) }))));
}

const followListening = () => follow("/api/listen/stream", showListening, refresh);

$("#listen-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api("POST", "/api/listen", { run: $("#listen-model").value });
    followListening();
  } catch (error) {
    say(error.message, true);
  }
});
$("#listen-stop").addEventListener("click", () => act(api("POST", "/api/listen/stop"), () => "Stopped listening."));

async function loadModels() {
  const models = await api("GET", "/api/models");
  $("#listen-model").replaceChildren(...models.runs.map((run) => el("option", { value: run }, run)));
  $("#listen-start").disabled = !models.runs.length;
  const state = $("#listen-state");
  if (!models.runs.length) state.textContent = "No trained model in the runs folder yet: train one first.";
  else if (state.textContent.startsWith("No trained model")) state.textContent = "";
}

// --- pages -----------------------------------------------------------------------------------------------------

async function refresh() {
  try {
    const [dataset, review] = await Promise.all([api("GET", "/api/dataset"), api("GET", "/api/review")]);
    renderDataset(dataset);
    renderReview(review);
    renderChanges(review.changes);
  } catch (error) {
    say(error.message, true);
  }
}

function showPage() {
  const page = (location.hash || "#dataset").slice(1);
  for (const section of document.querySelectorAll(".page")) section.classList.toggle("active", section.id === `page-${page}`);
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === page);
}

$("#undo").addEventListener("click", () => act(api("POST", "/api/undo"), (r) => `Undid: ${r.moves.length} clip(s) moved back.`));
window.addEventListener("hashchange", showPage);

(async function start() {
  showPage();
  await refresh();
  const status = await api("GET", "/api/train");
  $("#train-backbone").replaceChildren(...status.backbones.map((b) => el("option", { value: b }, b)));
  if (status.state === "running") followTraining();
  else showTraining(status);
  await loadModels();
  const listening = await api("GET", "/api/listen");
  if (listening.state === "running") followListening();
})();
