// The dit serve page: fills the form from /api/info, queues a job (POST /api/jobs), follows it
// through server-sent events (/api/jobs/{id}/events) and shows its images, grid and protocol card.
"use strict";

const $ = (id) => document.getElementById(id);
let classes = [];
let source = null; // the EventSource of the running job
let jobId = null;

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function fillClasses(filter) {
  const q = filter.trim().toLowerCase();
  const select = $("class-select");
  const keep = select.value;
  select.replaceChildren();
  for (const c of classes) {
    if (q && !c.name.toLowerCase().includes(q) && String(c.id) !== q) continue;
    const opt = document.createElement("option");
    opt.value = String(c.id);
    opt.textContent = `${c.id}: ${c.name}`;
    select.appendChild(opt);
  }
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  else if (select.options.length) select.selectedIndex = 0;
  showChosen();
}

function showChosen() {
  const c = classes.find((k) => String(k.id) === $("class-select").value);
  $("class-chosen").textContent = c ? `chosen: ${c.name} (id ${c.id})` : "no class matches";
}

async function init() {
  let info;
  try {
    const r = await fetch("/api/info");
    info = await r.json();
  } catch (e) {
    say(`cannot reach the server: ${e}`, true);
    return;
  }
  classes = info.classes;
  $("model-info").textContent = `${info.checkpoint} · ${classes.length} classes · dit ${info.dit_version}`;
  for (const s of info.samplers) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = s;
    $("sampler").appendChild(opt);
  }
  const d = info.defaults, lim = info.limits;
  $("num-images").value = Math.min(d.num_images, lim.max_images);
  $("num-images").max = lim.max_images;
  $("sampler").value = d.sampler;
  $("num-steps").value = Math.min(d.num_steps, lim.max_steps);
  $("num-steps").max = lim.max_steps;
  $("cfg-scale").value = d.cfg_scale;
  $("seed").value = d.seed;
  $("gi-lo").max = $("gi-hi").max = info.max_timestep;
  fillClasses("");
  $("class-search").addEventListener("input", (e) => fillClasses(e.target.value));
  $("class-select").addEventListener("change", showChosen);
}

// A number field as typed: "" → null, anything else → Number (the server checks the range).
function num(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function request() {
  const lo = num("gi-lo"), hi = num("gi-hi");
  const body = {
    classes: [$("class-select").value === "" ? $("class-search").value : Number($("class-select").value)],
    num_images: num("num-images"),
    sampler: $("sampler").value,
    num_steps: num("num-steps"),
    cfg_scale: num("cfg-scale"),
    seed: num("seed"),
    guidance_interval: lo === null && hi === null ? null : [lo, hi],
  };
  return body;
}

function running(on) {
  $("generate").disabled = on;
  $("cancel").disabled = !on;
  $("progress").hidden = !on;
}

function show(state) {
  if (state.status === "queued") {
    say(`waiting: ${state.position} request(s) ahead`);
  } else if (state.status === "running") {
    say(`denoising: step ${state.step} of ${state.num_steps}`);
    $("progress").max = state.num_steps;
    $("progress").value = state.step;
    if (state.preview) {
      // the images as they form: the predicted x_0 of the current step, decoded by the server
      let img = document.querySelector("#images img.preview");
      if (!img) {
        img = document.createElement("img");
        img.className = "preview";
        img.alt = "preview";
        $("images").replaceChildren(img);
      }
      img.src = state.preview;
    }
  } else if (state.status === "done") {
    say(`done: ${state.images.length} image(s), ${state.num_steps} steps`);
    const box = $("images");
    box.replaceChildren();
    state.images.forEach((src, k) => {
      const img = document.createElement("img");
      img.src = src;
      img.alt = `image ${k}`;
      box.appendChild(img);
    });
    $("grid-link").href = state.grid;
    $("card-link").href = state.protocol;
    $("downloads").hidden = false;
    $("card").textContent = JSON.stringify(state.card, null, 2);
    $("card-box").hidden = false;
  } else {
    say(`${state.status}: ${state.error || ""}`, state.status === "failed");
  }
}

async function generate(ev) {
  ev.preventDefault();
  if (source) source.close();
  say("sending…");
  let r, body;
  try {
    r = await fetch("/api/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request()),
    });
    body = await r.json();
  } catch (e) {
    say(`cannot reach the server: ${e}`, true);
    return;
  }
  if (!r.ok) {
    say(body.error || `error ${r.status}`, true);
    return;
  }
  jobId = body.id;
  $("images").replaceChildren();
  $("downloads").hidden = true;
  $("card-box").hidden = true;
  running(true);
  show(body);
  source = new EventSource(`/api/jobs/${jobId}/events`);
  source.addEventListener("state", (e) => {
    const state = JSON.parse(e.data);
    show(state);
    if (["done", "failed", "cancelled"].includes(state.status)) {
      source.close();
      source = null;
      running(false);
    }
  });
  source.onerror = () => {
    if (source) {
      source.close();
      source = null;
      running(false);
      say("lost the connection to the server", true);
    }
  };
}

async function cancel() {
  if (!jobId) return;
  await fetch(`/api/jobs/${jobId}/cancel`, { method: "POST" });
}

$("form").addEventListener("submit", generate);
$("cancel").addEventListener("click", cancel);
init();
