// Web UI of the diagnosis service: builds the form from /api/model, posts one record to
// /api/predict, shows the result, and keeps a status strip from /api/health and /api/ready.
"use strict";

const API = "/api";
let features = [];

function el(id) { return document.getElementById(id); }

function fmt(value) {
  return Number(value).toPrecision(4).replace(/\.?0+$/, "").replace(/\.?0+e/, "e");
}

// A number as a person writes it: binary floating-point noise rounded away
// (13.274999999999999 -> "13.275", 0.09545000000000001 -> "0.09545"), no other rounding.
function plain(value) {
  return String(Number(Number(value).toPrecision(12)));
}

function setPill(id, state, text) {
  const pill = el(id);
  pill.className = "pill " + state;
  pill.textContent = text;
}

async function getJson(path) {
  const resp = await fetch(API + path, { headers: { Accept: "application/json" }, cache: "no-store" });
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  return { ok: resp.ok, status: resp.status, body };
}

async function refreshStatus() {
  try {
    const health = await getJson("/health");
    setPill("status-api", health.ok ? "ok" : "bad", health.ok ? "API: up" : "API: HTTP " + health.status);
  } catch (_) {
    setPill("status-api", "bad", "API: unreachable");
  }
  try {
    const ready = await getJson("/ready");
    if (ready.ok) {
      setPill("status-model", "ok", "Model: ready (" + ready.body.model.version + ")");
    } else {
      const reason = ready.body && ready.body.reason ? ": " + ready.body.reason : "";
      setPill("status-model", "bad", "Model: not ready" + reason);
    }
  } catch (_) {
    setPill("status-model", "bad", "Model: unknown");
  }
  el("status-checked").textContent = "checked " + new Date().toLocaleTimeString();
}

function buildForm(model) {
  features = model.features;
  const box = el("fields");
  box.textContent = "";
  for (const f of features) {
    const wrap = document.createElement("label");
    wrap.className = "field";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = f.label;
    const input = document.createElement("input");
    input.type = "number";
    input.step = "any";
    input.name = f.name;
    input.id = "f-" + f.name;
    input.required = true;
    input.min = String(f.accepted_min);
    input.max = String(f.accepted_max);
    input.value = plain(f.median);
    input.dataset.default = plain(f.median);
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = "observed " + fmt(f.observed_min) + " to " + fmt(f.observed_max) +
      "; accepted " + fmt(f.accepted_min) + " to " + fmt(f.accepted_max);
    wrap.append(name, input, hint);
    box.append(wrap);
  }
  el("model-name").textContent = model.name;
  el("model-version").textContent = model.version;
  el("model-sha").textContent = model.sha256.slice(0, 12);
  const m = model.metrics || {};
  el("model-metrics").textContent = "held-out accuracy " + fmt(m.test_accuracy) + ", ROC AUC " + fmt(m.test_roc_auc) +
    ", sensitivity for malignancy " + fmt(m.test_sensitivity_malignant);
  el("model-card").hidden = false;
  el("submit").disabled = false;
  el("reset").disabled = false;
}

function showErrors(messages) {
  const list = el("error-list");
  list.textContent = "";
  for (const msg of messages) {
    const li = document.createElement("li");
    li.textContent = msg;
    list.append(li);
  }
  el("error").hidden = false;
}

async function submitForm(event) {
  event.preventDefault();
  el("error").hidden = true;
  const record = {};
  const problems = [];
  for (const f of features) {
    const input = el("f-" + f.name);
    const value = input.value.trim() === "" ? NaN : Number(input.value);
    if (!Number.isFinite(value)) problems.push(f.name + ": enter a number");
    record[f.name] = value;
  }
  if (problems.length) { showErrors(problems); return; }
  el("submit").disabled = true;
  try {
    const resp = await fetch(API + "/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(record),
    });
    const body = await resp.json().catch(() => null);
    if (!resp.ok) {
      const detail = body && Array.isArray(body.detail) ? body.detail.map((d) => d.msg)
        : ["HTTP " + resp.status + (body && body.reason ? ": " + body.reason : "")];
      el("result").hidden = true;
      showErrors(detail);
      return;
    }
    el("result-prediction").textContent = body.prediction;
    el("result-prediction").className = "verdict " + body.prediction;
    el("result-probability").textContent = (100 * body.probability).toFixed(1) + " %";
    el("result-model").textContent = body.model.name;
    el("result-version").textContent = body.model.version;
    const warnings = el("result-warnings");
    warnings.textContent = "";
    for (const w of body.warnings) {
      const li = document.createElement("li");
      li.textContent = w;
      warnings.append(li);
    }
    el("result").hidden = false;
  } catch (err) {
    showErrors(["the API could not be reached: " + err]);
  } finally {
    el("submit").disabled = false;
  }
}

function resetForm() {
  for (const f of features) el("f-" + f.name).value = el("f-" + f.name).dataset.default;
  el("result").hidden = true;
  el("error").hidden = true;
}

async function start() {
  el("predict-form").addEventListener("submit", submitForm);
  el("reset").addEventListener("click", resetForm);
  refreshStatus();
  setInterval(refreshStatus, 10000);
  for (let attempt = 0; ; attempt++) {
    try {
      const model = await getJson("/model");
      if (model.ok) { buildForm(model.body); return; }
      el("fields-loading").textContent = "The model is not ready (HTTP " + model.status + "); retrying...";
    } catch (_) {
      el("fields-loading").textContent = "The API cannot be reached; retrying...";
    }
    await new Promise((r) => setTimeout(r, Math.min(10000, 1000 * 2 ** attempt)));
  }
}

document.addEventListener("DOMContentLoaded", start);
