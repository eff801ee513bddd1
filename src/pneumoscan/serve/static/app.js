// pneumoscan page: upload chest X-rays to /v1/predict and show the answers. No external resources.
"use strict";

const byId = (id) => document.getElementById(id);
let limits = null;
let positiveClass = null; // the model's positive output class, from /v1/model

function setStatus(text, isError = false) {
  const status = byId("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function percent(value) {
  return `${(100 * value).toFixed(1)} %`;
}

function addFact(list, term, value) {
  if (value === undefined || value === null || value === "") return;
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = term;
  dd.textContent = String(value);
  list.append(dt, dd);
}

function metricsText(split) {
  if (!split) return null;
  const parts = [];
  if (split.roc_auc != null) parts.push(`ROC-AUC ${split.roc_auc.toFixed(3)}`);
  if (split.accuracy != null) parts.push(`accuracy ${percent(split.accuracy)}`);
  if (split.sensitivity != null) parts.push(`sensitivity ${percent(split.sensitivity)}`);
  if (split.specificity != null) parts.push(`specificity ${percent(split.specificity)}`);
  if (split.images != null) parts.push(`${split.images} images`);
  return parts.join(", ");
}

async function loadModel() {
  try {
    const response = await fetch("/v1/model");
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const model = await response.json();
    limits = model.upload_limits;
    positiveClass = model.class_names[1];
    byId("intended-use").textContent = model.intended_use;
    const facts = byId("model-facts");
    addFact(facts, "Model", model.model_id);
    addFact(facts, "Architecture", model.architecture);
    addFact(facts, "Engine", model.engine + (model.heatmaps ? "" : " (no heat maps)"));
    addFact(facts, "Threshold", `${model.threshold.toFixed(3)}: ${model.threshold_rule}`);
    const crop = model.preprocessing.crop_fraction;
    const kept = crop >= 1 ? "the whole image" : `the central ${percent(crop)} of each side`;
    addFact(facts, "Input", `${kept}, resized to ${model.preprocessing.image_size} px square`);
    addFact(facts, "Validation", metricsText(model.metrics.validation));
    addFact(facts, "Test", metricsText(model.metrics.test));
    addFact(facts, "Created", model.created);
    const list = byId("limits");
    for (const text of model.limits) {
      const item = document.createElement("li");
      item.textContent = text;
      list.append(item);
    }
  } catch (error) {
    setStatus(`Could not load the model description: ${error.message}`, true);
  }
}

function tooMuch(files) {
  if (!limits) return null;
  if (files.length > limits.max_files) return `Choose at most ${limits.max_files} files at a time.`;
  const total = files.reduce((sum, file) => sum + file.size, 0);
  if (total > limits.max_upload_bytes) {
    const mib = (limits.max_upload_bytes / 1048576).toFixed(0);
    return `These files are too large together (limit ${mib} MiB); choose fewer or smaller files.`;
  }
  return null;
}

function renderResult(result) {
  const card = byId("result-template").content.firstElementChild.cloneNode(true);
  card.querySelector(".name").textContent = result.name;
  const figure = card.querySelector(".figure");
  if (result.error || result.refused) {  // no verdict: an unreadable file, or one the model refuses
    if (result.error) {
      card.querySelector(".error").textContent = result.error;
    } else {
      const refusal = card.querySelector(".refusal");
      refusal.hidden = false;
      refusal.querySelector(".refusal-title").textContent = "Not a chest X-ray this model can judge";
      refusal.querySelector(".refusal-reason").textContent = result.refusal_reason;
    }
    card.querySelector(".verdict").hidden = true;
    card.querySelector(".meter").hidden = true;
    figure.hidden = true;
    return card;
  }
  if (result.out_of_distribution) {
    const item = document.createElement("li");
    item.textContent = `Out of distribution (judged anyway): ${result.refusal_reason}`;
    card.querySelector(".warnings").append(item);
  }
  card.querySelector(".probability").textContent = percent(result.probability);
  const label = card.querySelector(".label");
  label.textContent = result.label;
  label.classList.add(positiveClass !== null && result.label === positiveClass ? "positive" : "negative");
  card.querySelector(".meter-fill").style.width = percent(result.probability).replace(" ", "");
  card.querySelector(".meter-threshold").style.left = percent(result.threshold).replace(" ", "");
  card.querySelector(".threshold").textContent =
    `Probability of pneumonia. The label is ${positiveClass ?? "positive"} at or above the model's ` +
    `threshold of ${percent(result.threshold)}.`;
  const warnings = card.querySelector(".warnings");
  for (const text of result.warnings) {
    const item = document.createElement("li");
    item.textContent = `Warning: ${text}`;
    warnings.append(item);
  }
  const caption = figure.querySelector("figcaption");
  const enlarge = figure.querySelector(".enlarge");
  if (result.heatmap) {
    const image = figure.querySelector(".overlay");
    image.src = `data:image/png;base64,${result.heatmap}`;
    image.alt = `Heat map over ${result.name}`;
    caption.textContent = HEATMAP_TEXT;
    const open = () => openViewer(result);
    image.addEventListener("click", open);
    enlarge.addEventListener("click", open);
    enlarge.hidden = !result.film;
  } else {
    figure.querySelector(".overlay").hidden = true;
    enlarge.hidden = true;
    caption.textContent = result.heatmap_note || "No heat map.";
  }
  return card;
}

const HEATMAP_TEXT =
  "Heat map of the evidence for pneumonia, on the fixed scale of the colour bar: its brightest point " +
  "equals the probability, so a film the model calls normal with confidence stays blue, and red " +
  "marks the regions that pushed a high score. It is not an outline of disease.";

function openViewer(result) {
  byId("viewer-name").textContent = result.name;
  const film = byId("viewer-film");
  film.src = `data:image/png;base64,${result.film}`;
  film.alt = `The film ${result.name}`;
  const overlay = byId("viewer-overlay");
  overlay.src = `data:image/png;base64,${result.heatmap}`;
  overlay.alt = `Heat map over ${result.name}`;
  byId("viewer-caption").textContent = HEATMAP_TEXT;
  byId("viewer").showModal();
}

async function analyse(files) {
  if (!files.length) return;
  const problem = tooMuch(files);
  if (problem) {
    setStatus(problem, true);
    return;
  }
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  const results = byId("results");
  results.replaceChildren();
  setStatus(files.length === 1 ? `Analysing ${files[0].name} …` : `Analysing ${files.length} images …`);
  try {
    const response = await fetch("/v1/predict?heatmap=true", { method: "POST", body: form });
    const body = await response.json().catch(() => ({ detail: `the server answered ${response.status}` }));
    if (!response.ok) {
      setStatus(body.detail || `the server answered ${response.status}`, true);
      return;
    }
    results.replaceChildren(...body.results.map(renderResult));
    setStatus(`Done: ${body.results.length} image${body.results.length === 1 ? "" : "s"}.`);
  } catch (error) {
    setStatus(`The upload failed: ${error.message}`, true);
  }
}

function setUp() {
  const drop = byId("drop");
  const input = byId("file");
  input.addEventListener("change", () => {
    analyse(Array.from(input.files));
    input.value = "";
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    analyse(Array.from(event.dataTransfer.files));
  });
  const viewer = byId("viewer");
  byId("viewer-close").addEventListener("click", () => viewer.close());
  viewer.addEventListener("click", (event) => {
    if (event.target === viewer) viewer.close(); // a click on the backdrop
  });
  loadModel();
}

setUp();
