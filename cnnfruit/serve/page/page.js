// The page of `cnnfruit serve`: photos in, the model's answers and maps out, through the
// server's own API (docs/serve.md). Text from files and the model is only ever set as text.
"use strict";

const state = { model: null, threshold: 0.5, map: "occlusion", tta: "none", photos: [], explaining: false };
const el = (id) => document.getElementById(id);
const percent = (p) => `${(100 * p).toFixed(1)}%`;

function make(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

async function reason(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (err) { /* not JSON: the status says it */ }
  return `the server answered ${response.status} ${response.statusText}`;
}

function setStatus(text) { el("status").textContent = text; }

// ---- the model panel

function table(head, rows, numeric = []) {
  const t = make("table");
  const tr = make("tr");
  head.forEach((h) => tr.appendChild(make("th", h)));
  t.appendChild(make("thead")).appendChild(tr);
  const body = t.appendChild(make("tbody"));
  rows.forEach((row) => {
    const r = body.appendChild(make("tr"));
    row.forEach((cell, i) => r.appendChild(make("td", String(cell), numeric.includes(i) ? "number" : undefined)));
  });
  const wrap = make("div", undefined, "scroll");
  wrap.appendChild(t);
  return wrap;
}

function facts(pairs) {
  const list = make("dl", undefined, "facts");
  pairs.forEach(([key, value]) => {
    const row = list.appendChild(make("div"));
    row.appendChild(make("dt", key));
    row.appendChild(make("dd", String(value)));
  });
  return list;
}

function section(title, className, ...children) {
  const part = make("section", undefined, className);
  part.appendChild(make("h2", title));
  children.forEach((child) => part.appendChild(child));
  return part;
}

function showModel(m) {
  el("model-name").textContent = m.file ? `· ${m.file}` : "";
  el("classes-line").textContent = `Classes: ${m.class_names.join(", ")}`;
  const number = (n) => n.toLocaleString("en");
  const layers = m.layers.map((l) => [l.name, l.output_shape.join(" x "), number(l.parameters), number(l.forward_flops)]);
  layers.push(["total", "", number(m.total_parameters), number(m.forward_flops)]);
  const t = m.training;
  const trained = [["data", t.data]];
  if (t.epochs !== null) trained.push(["epochs trained", t.epochs]);
  if (t.best_epoch !== null) trained.push(["best epoch (validation loss)", t.best_epoch]);
  if (t.test_accuracy !== null) trained.push(["test accuracy", percent(t.test_accuracy)]);
  Object.entries(t.settings).forEach(([key, value]) =>
    trained.push([key, Array.isArray(value) ? value.join(",") : value === null ? "none" : value]));
  const limits = m.limits;
  el("model-body").replaceChildren(
    section("Classes", "about", make("p", m.class_names.join(", ")),
      make("h2", "Server"),
      facts([
        ["cnnfruit version", m.cnnfruit_version],
        ["largest image", `${(limits.max_upload_bytes / 2 ** 20).toFixed(1)} MB`],
        ["images per request", limits.max_images],
        ["upload timeout", `${limits.upload_timeout_seconds} s`],
      ])),
    section("Layers", "layers",
      make("p", `Input ${m.color === "grey" ? 1 : 3} x ${m.image_size} x ${m.image_size} ` +
        `(${m.color}, normalize ${m.normalize}); FLOPs per image, 2 per multiply-add.`),
      table(["layer", "output shape", "parameters", "forward FLOPs"], layers, [2, 3])),
    section("Training", "training", facts(trained)));
}

// ---- photos

function addPhotos(files) {
  const images = Array.from(files).filter((f) => !f.type || f.type.startsWith("image/"));
  if (!images.length) {
    setStatus("None of those files is an image.");
    return;
  }
  const fresh = document.createDocumentFragment();
  const added = images.map((file) => {
    const card = el("card").content.firstElementChild.cloneNode(true);
    const photo = { file, url: URL.createObjectURL(file), card, result: null, error: null, mapUrl: null, mapFor: null };
    card.querySelector(".file").textContent = file.name || "photo";
    card.querySelector(".show-map").addEventListener("change", () => render(photo));
    fresh.appendChild(card);
    state.photos.push(photo);
    render(photo);
    return photo;
  });
  el("results").prepend(fresh);
  classify(added);
}

async function classify(photos) {
  const limits = state.model ? state.model.limits : { max_images: 8, max_upload_bytes: Infinity };
  const sendable = [];
  photos.forEach((p) => {
    p.result = null;
    p.error = null;
    if (p.file.size > limits.max_upload_bytes) {
      p.error = `larger than the server's ${(limits.max_upload_bytes / 2 ** 20).toFixed(1)} MB limit`;
      render(p);
    } else {
      sendable.push(p);
    }
  });
  setStatus(`Classifying ${sendable.length} photo${sendable.length === 1 ? "" : "s"}…`);
  for (let start = 0; start < sendable.length; start += limits.max_images) {
    const chunk = sendable.slice(start, start + limits.max_images);
    const form = new FormData();
    chunk.forEach((p) => form.append("image", p.file, p.file.name || "photo"));
    const query = new URLSearchParams({ view: "1", tta: state.tta, min_confidence: String(state.threshold) });
    try {
      const response = await fetch(`api/predict?${query}`, { method: "POST", body: form });
      const body = response.status === 200 || response.status === 422 ? await response.json() : null;
      if (!body || !body.images) throw new Error(await reason(response));
      chunk.forEach((p, i) => {
        const answer = body.images[i];
        if (answer.error) p.error = answer.error;
        else p.result = answer;
        render(p);
      });
    } catch (err) {
      chunk.forEach((p) => { p.error = String(err.message || err); render(p); });
    }
  }
  const done = state.photos.filter((p) => p.result).length;
  setStatus(`${done} photo${done === 1 ? "" : "s"} classified. Drawing the maps…`);
  explainAll();
}

async function explainAll() {
  if (state.explaining) return;
  state.explaining = true;
  try {
    for (;;) {
      const photo = state.photos.find((p) => p.result && p.mapFor !== state.map);
      if (!photo) break;
      const kind = state.map;
      photo.mapFor = kind;
      const query = new URLSearchParams({ map: kind, name: photo.file.name || "photo" });
      try {
        const response = await fetch(`api/explain?${query}`, {
          method: "POST", body: photo.file, headers: { "Content-Type": photo.file.type || "application/octet-stream" },
        });
        if (!response.ok) throw new Error(await reason(response));
        const blob = await response.blob();
        if (photo.mapUrl) URL.revokeObjectURL(photo.mapUrl);
        photo.mapUrl = URL.createObjectURL(blob);
        photo.mapKind = kind;
        photo.mapNote = null;
      } catch (err) {
        photo.mapNote = `No map: ${err.message || err}`;
      }
      render(photo);
    }
  } finally {
    state.explaining = false;
  }
  const done = state.photos.filter((p) => p.result).length;
  if (done) setStatus(`${done} photo${done === 1 ? "" : "s"} classified.`);
}

function render(photo) {
  const card = photo.card;
  const shown = card.querySelector(".shown");
  const wantMap = card.querySelector(".show-map").checked && photo.mapUrl;
  shown.src = wantMap ? photo.mapUrl : photo.url;
  const name = photo.file.name || "photo";
  shown.alt = wantMap ? `${name}, with the ${photo.mapKind} map over it` : name;
  const answer = card.querySelector(".answer");
  const bars = card.querySelector(".bars");
  const view = card.querySelector(".network-view");
  const note = card.querySelector(".map-note");
  bars.replaceChildren();
  answer.className = "answer";
  delete card.dataset.class;
  if (photo.error) {
    answer.textContent = `Cannot classify: ${photo.error}`;
    answer.classList.add("error");
    view.removeAttribute("src");
    note.textContent = "";
    return;
  }
  if (!photo.result) {
    answer.textContent = "…";
    return;
  }
  const r = photo.result;
  const top = r.class;
  const p = r.probabilities[top];
  const unsure = p < state.threshold;
  card.dataset.class = top;
  answer.replaceChildren(make("span", unsure ? "unsure" : top, "label"), document.createTextNode(" "),
    make("small", unsure ? `best guess ${top}, ${percent(p)}` : percent(p), "confidence"));
  if (unsure) answer.classList.add("unsure");
  view.src = r.view;
  const grey = state.model && state.model.color === "grey";
  view.alt = `The ${grey ? "grey " : ""}${state.model ? state.model.image_size : 32} x ` +
    `${state.model ? state.model.image_size : 32} image the network sees`;
  const ranked = Object.entries(r.probabilities).sort((a, b) => b[1] - a[1]).slice(0, 5);
  ranked.forEach(([cls, prob]) => {
    const li = make("li");
    if (cls !== top || unsure) li.classList.add("low");
    li.appendChild(make("span", cls, "name"));
    const track = li.appendChild(make("span", undefined, "track"));
    track.setAttribute("aria-hidden", "true");
    const fill = track.appendChild(make("span", undefined, "fill"));
    fill.style.width = `${(100 * prob).toFixed(1)}%`;
    fill.style.display = "block";
    li.appendChild(make("span", percent(prob), "value"));
    bars.appendChild(li);
  });
  if (photo.mapUrl) card.dataset.map = photo.mapKind;
  if (photo.mapNote) note.textContent = photo.mapNote;
  else if (!photo.mapUrl) note.textContent = "Drawing the map…";
  else if (photo.mapKind === "occlusion") note.textContent = `Bright: covering these parts lowers p(${top}) the most.`;
  else note.textContent = `Bright: the pixels that move ${top}'s score the most (saliency).`;
}

// ---- wiring

function wire() {
  const drop = el("drop");
  ["choose", "camera"].forEach((id) => el(id).addEventListener("change", (e) => {
    addPhotos(e.target.files);
    e.target.value = "";
  }));
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    addPhotos(e.dataTransfer.files);
  });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => e.preventDefault());
  el("threshold").addEventListener("input", (e) => {
    state.threshold = Number(e.target.value);
    el("threshold-value").textContent = `${Math.round(100 * state.threshold)}%`;
    state.photos.forEach(render);
  });
  document.querySelectorAll("input[name=map]").forEach((radio) => radio.addEventListener("change", (e) => {
    state.map = e.target.value;
    explainAll();
  }));
  el("tta").addEventListener("change", (e) => {
    state.tta = e.target.value;
    if (state.photos.length) classify(state.photos);
  });
  el("clear").addEventListener("click", () => {
    state.photos.forEach((p) => {
      URL.revokeObjectURL(p.url);
      if (p.mapUrl) URL.revokeObjectURL(p.mapUrl);
    });
    state.photos = [];
    el("results").replaceChildren();
    setStatus("");
  });
  el("settings").addEventListener("submit", (e) => e.preventDefault());
}

async function start() {
  wire();
  try {
    const response = await fetch("api/model");
    if (!response.ok) throw new Error(await reason(response));
    state.model = await response.json();
    state.threshold = state.model.min_confidence;
    el("threshold").value = String(state.threshold);
    el("threshold-value").textContent = `${Math.round(100 * state.threshold)}%`;
    showModel(state.model);
    document.body.dataset.ready = "1";
  } catch (err) {
    el("classes-line").textContent = `The model could not be described: ${err.message || err}`;
  }
}

start();
