// vitkit serve page: a classifier's page sends the chosen image to /v1/predict and /v1/explain and draws the bars
// and the attention overlay; a segmentor's sends it to /v1/segment and shows the class overlay and the shares.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, depth: 1, overlays: new Map(), pending: null, task: "classification" };

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${body.error}: ${body.detail}`;
  } catch (e) {
    return `HTTP ${response.status}`;
  }
}

async function post(path, file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const response = await fetch(path, { method: "POST", body: form });
  if (!response.ok) throw new Error(await errorText(response));
  return response;
}

// Bars of (label, value in [0, 1]) rows: a classifier's top-k probabilities, a segmentor's pixel shares.
function showBars(rows) {
  const list = $("topk");
  list.replaceChildren();
  for (const [name, share] of rows) {
    const item = document.createElement("li");
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("span");
    label.textContent = name;
    const value = document.createElement("span");
    value.textContent = `${(100 * share).toFixed(1)}%`;
    row.append(label, value);
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${Math.max(0.5, 100 * share)}%`;
    track.append(fill);
    item.append(row, track);
    list.append(item);
  }
}

// One overlay per layer, fetched when first shown and kept for the slider.
async function showOverlay(layer) {
  $("layer-value").textContent = layer;
  const file = state.file;
  if (!state.overlays.has(layer)) {
    const response = await post(`/v1/explain?layers=1-${layer}`, file);
    const url = URL.createObjectURL(await response.blob());
    if (file !== state.file) return; // a newer image was chosen meanwhile
    state.overlays.set(layer, url);
  }
  if (Number($("layer").value) === layer) $("overlay").src = state.overlays.get(layer);
}

async function classify(file) {
  state.file = file;
  for (const url of state.overlays.values()) URL.revokeObjectURL(url);
  state.overlays.clear();
  $("overlay").removeAttribute("src");
  $("topk").replaceChildren();
  $("preview").src = URL.createObjectURL(file);
  $("preview-name").textContent = file.name;
  $("results").hidden = false;
  $("layer").value = state.depth;
  setStatus(`${state.task === "segmentation" ? "segmenting" : "classifying"} ${file.name}...`);
  document.body.dataset.state = "busy";
  try {
    if (state.task === "segmentation") {
      const response = await post("/v1/segment", file);
      const shares = Object.entries(JSON.parse(response.headers.get("X-Vitkit-Shares")));
      $("overlay").src = URL.createObjectURL(await response.blob());
      showBars(shares);
      setStatus(`${file.name}: mostly ${shares[0][0]} (${(100 * shares[0][1]).toFixed(1)}% of the pixels)`);
    } else {
      const response = await post("/v1/predict", file);
      const result = await response.json();
      showBars(result.top.map((entry) => [entry.label, entry.prob]));
      await showOverlay(state.depth);
      setStatus(`${file.name}: ${result.top[0].label} (${(100 * result.top[0].prob).toFixed(1)}%)`);
    }
    document.body.dataset.state = "done"; // for scripted browsers: results and overlay are shown
  } catch (err) {
    setStatus(err.message, true);
    document.body.dataset.state = "error";
  }
}

async function loadModel() {
  try {
    const response = await fetch("/v1/model");
    const info = await response.json();
    state.task = info.task;
    document.body.dataset.task = info.task;
    if (info.task === "segmentation") {
      const size = info.preprocessing.img_size.join("x");
      $("model-info").textContent = `${info.name}: segments ${info.num_classes} classes, ${size} px crops`;
      $("bars-title").textContent = "Share of the pixels";
      $("overlay-caption").textContent = "Each pixel's class over the image";
      $("overlay").alt = "each pixel's class over the image";
      $("layer-controls").hidden = true; // a segmentor's overlay has no layers to choose
      return;
    }
    state.depth = info.depth;
    $("layer").max = info.depth;
    $("layer").value = info.depth;
    $("layer-value").textContent = info.depth;
    const size = info.preprocessing.img_size.join("x");
    $("model-info").textContent = `${info.name}: ${info.num_classes} classes, ${info.depth} layers, ${size} px input`;
  } catch (err) {
    $("model-info").textContent = "could not reach the server";
  }
}

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => e.target.files.length && classify(e.target.files[0]));
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) classify(e.dataTransfer.files[0]);
  });
  $("layer").addEventListener("input", (e) => {
    if (state.file) showOverlay(Number(e.target.value)).catch((err) => setStatus(err.message, true));
    else $("layer-value").textContent = e.target.value;
  });
}

wire();
loadModel();
