// camstudy's browser module: no build step, no dependencies.
// Preloads images, times answers with performance.now(), takes keyboard and click answers,
// keeps unsent answers in a localStorage queue (they survive a reload or a lost
// connection) and finishes only once the server has acknowledged every answer.

const app = document.getElementById("app");
const { slug, token } = app.dataset;
const headers = { "Content-Type": "application/json", "X-Participant-Token": token };
const api = (path) => `/api/s/${slug}${path}`;
const QUEUE_KEY = `camstudy:${slug}:${token.slice(-24)}:queue`;
const OFFLINE_TEXT = (n) =>
  `Connection problem: your answers are kept in this browser (${n} waiting) and will be sent when the connection is back. You can go on.`;
const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the answer queue
let queue = readQueue();
let flushing = null;
let failures = 0;
let wake = null; // ends the current retry wait early (connection back, a new answer)

function readQueue() {
  try {
    const q = JSON.parse(localStorage.getItem(QUEUE_KEY));
    return Array.isArray(q) ? q : [];
  } catch { return []; }
}
function saveQueue() {
  // Storage can be full or switched off (private windows): the queue then lives in memory.
  try { localStorage.setItem(QUEUE_KEY, JSON.stringify(queue)); } catch { /* in memory only */ }
}
function setStatus(text) { $("status").textContent = text; }

function enqueue(answer) {
  queue.push(answer);
  saveQueue();
  if (failures) setStatus(OFFLINE_TEXT(queue.length));
  retryNow();
  flush();
}

function retryNow() {
  if (wake && navigator.onLine !== false) wake();
}

function backoff(ms) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    wake = () => { clearTimeout(t); resolve(); };
  }).finally(() => { wake = null; });
}

function flush() {
  if (!flushing) flushing = sendAll().finally(() => { flushing = null; });
  return flushing;
}

const EXPIRED_TEXT = "This page has expired. Please open the study link again; your answers are kept.";
let expired = false;

async function sendAll() {
  while (queue.length) {
    const answer = queue[0];
    let res = null;
    try {
      res = await fetch(api("/answers"), { method: "POST", headers, body: JSON.stringify(answer) });
    } catch {
      res = null; // offline or the server is down: keep the answer, retry later
    }
    if (res?.status === 403) {
      // The token is no longer accepted: keep the answers (they are in localStorage) and
      // say so, rather than drop them or retry forever.
      setStatus(EXPIRED_TEXT);
      expired = true;
      return;
    }
    if (res && (res.ok || (res.status >= 400 && res.status < 500 && ![408, 429].includes(res.status)))) {
      if (!res.ok) console.warn("answer rejected", res.status, await res.text());
      queue.shift();
      saveQueue();
      if (failures) event("retry", { failures }, answer.position);
      failures = 0;
      setStatus(queue.length ? `Sending ${queue.length} answer(s)…` : "");
      continue;
    }
    failures += 1;
    setStatus(OFFLINE_TEXT(queue.length));
    await backoff(Math.min(500 * 2 ** Math.min(failures, 5), 10000));
  }
}

function event(kind, detail, position) {
  const body = { kind, detail };
  if (Number.isInteger(position)) body.position = position;
  fetch(api("/events"), { method: "POST", headers, body: JSON.stringify(body), keepalive: true })
    .catch(() => {});
}

// ---------------------------------------------------------------- trials
let plan = null;
let current = 0;

// What a trial shows and how it is answered come from the server (the study kind's
// display and widget, camstudy.kinds): plan.display names the images ("{n}": the image's
// 1-based place) and the trial's object ("{object}"); plan.widget.type is "options" (one
// button per option of the trial) or "scale" (plan.scale: one row, left to right, anchored
// at both ends and the middle; a stored value keeps its meaning, e.g. +2 is "Model 1 much
// more reliable", -2 "Model 2 much more").
const SPINNER_AFTER_MS = 150; // a spinner only where loading is noticeable

function preload(trial) {
  return Promise.all(sources(trial).map(([src, srcset]) => {
    const img = new Image();
    if (srcset) img.srcset = srcset;
    img.src = src;
    return img.decode().catch(() => {});
  }));
}

function sources(trial) {
  // [src, srcset] per image: the 2x file for screens with more than one pixel per CSS pixel.
  return (trial?.images || []).map((src, i) => {
    const hi = trial.images_2x?.[i];
    return [src, hi ? `${src} 1x, ${hi} 2x` : ""];
  });
}

function noUpscale(img) {
  // Never wider than the stimulus's own size in CSS pixels (naturalWidth counts the 2x file
  // as its display size): an upscaled stimulus is a blurred one.
  if (img.naturalWidth) img.style.maxWidth = `${img.naturalWidth}px`;
}

function image(src, srcset, alt) {
  const img = document.createElement("img");
  if (srcset) img.srcset = srcset;
  img.src = src;
  img.alt = alt;
  return img;
}

// A template's "{name}"s filled from values (one pass: a filled-in value is not read again).
const fill = (template, values) =>
  template.replace(/\{(\w+)\}/g, (m, k) => (Object.hasOwn(values, k) ? String(values[k]) : m));
const onScale = () => plan.widget.type === "scale";

function answerButtons(trial, onAnswer) {
  // Disabled until the trial is on screen; none is focused or highlighted, so no option
  // stands out and Enter or Space cannot answer by accident.
  const box = $("answers");
  const choices = onScale()
    ? plan.scale.points.map((p, i) => ({ text: String(i + 1), aria: `${i + 1}: ${p.label}`, value: p.value }))
    : trial.options.map((o, i) => ({ text: `${i + 1}. ${o}`, aria: null, value: o }));
  const buttons = choices.map((c) => {
    const b = document.createElement("button");
    b.type = "button";
    b.disabled = true;
    b.textContent = c.text;
    if (c.aria) b.setAttribute("aria-label", c.aria);
    b.addEventListener("click", () => onAnswer(c.value, b));
    return b;
  });
  if (onScale()) {
    const row = document.createElement("div");
    row.className = "scale-points";
    row.setAttribute("role", "group");
    row.setAttribute("aria-label", plan.scale.question);
    row.append(...buttons);
    const anchors = document.createElement("div");
    anchors.className = "scale-anchors";
    anchors.setAttribute("aria-hidden", "true");
    for (const text of plan.scale.anchors) {
      const span = document.createElement("span");
      span.textContent = text;
      anchors.append(span);
    }
    const scale = document.createElement("div");
    scale.className = "scale";
    scale.append(row, anchors);
    box.replaceChildren(scale);
  } else {
    box.replaceChildren(...buttons);
  }
  return { choices, buttons };
}

function figures(trial, prefix = "") {
  // Each image described by the display's alt text and captioned by its caption, if any.
  const { alt, caption } = plan.display;
  return sources(trial).map(([src, srcset], i) => {
    const fig = document.createElement("figure");
    // "{option}": the option shown with this image (a choice among images).
    const values = { n: i + 1, option: trial.options?.[i] ?? "" };
    fig.append(image(src, srcset, prefix + fill(alt, values)));
    if (caption) {
      const cap = document.createElement("figcaption");
      cap.textContent = fill(caption, values);
      fig.append(cap);
    }
    return fig;
  });
}

function objectLine(trial) {
  // The display's line naming the trial's object ("" where it has none, or the trial no object).
  const line = plan.display.object_line;
  return line && trial.object ? fill(line, { object: trial.object }) : "";
}

async function showImages(trial) {
  // Decode before showing, so the trial appears whole; a spinner while that takes long.
  const figs = figures(trial);
  const spin = setTimeout(() => { $("spinner").hidden = false; }, SPINNER_AFTER_MS);
  await Promise.all(figs.map((f) => f.querySelector("img").decode().catch(() => {})));
  figs.forEach((f) => noUpscale(f.querySelector("img")));
  clearTimeout(spin);
  $("spinner").hidden = true;
  $("images").replaceChildren(...figs);
  $("images").dataset.count = String(figs.length); // the layout of four images differs (study.css)
  // A trial with an object (e.g. the one both models predicted) names it with its images.
  const line = objectLine(trial);
  $("object").textContent = line;
  $("object").hidden = !line;
}

const nextFrame = () => new Promise((r) => {
  // The frame after the one that paints the trial; a hidden tab waits until it is shown.
  requestAnimationFrame(() => requestAnimationFrame(r));
});

function blank() {
  // Between trials: an empty screen for the study's blank interval, so a double click or a
  // double tap lands on nothing, and every trial is seen before it can be answered.
  $("images").replaceChildren();
  $("answers").replaceChildren();
  $("object").hidden = true;
  return sleep(plan.blank_ms ?? 300);
}

async function ask(trial) {
  // Resolves with {value, rt_ms, shown_at} once the participant answers. Input is taken
  // only once the images and the buttons have painted, and the clock starts there.
  $("answers").replaceChildren(); // no stale buttons while the next images load
  await showImages(trial);
  let resolveAnswer;
  const answered = new Promise((r) => { resolveAnswer = r; });
  let t0 = null;
  let shownAt = null;
  const choose = (value, button) => {
    if (t0 === null) return;
    const rt = performance.now() - t0;
    t0 = null;
    document.removeEventListener("keydown", onKey);
    buttons.forEach((b) => { b.disabled = true; });
    button.setAttribute("aria-pressed", "true");
    resolveAnswer({ value, rt_ms: Math.max(rt, 1), shown_at: shownAt });
  };
  const { choices, buttons } = answerButtons(trial, choose);
  const onKey = (e) => {
    // Digits only, typed on purpose: no held-down repeats, no browser shortcuts (Ctrl+1).
    if (e.repeat || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    const k = Number(e.key);
    if (!Number.isInteger(k) || k < 1 || k > choices.length) return;
    e.preventDefault();
    choose(choices[k - 1].value, buttons[k - 1]);
  };
  await nextFrame(); // the clock starts once the images and the buttons are on screen
  shownAt = new Date().toISOString();
  t0 = performance.now();
  buttons.forEach((b) => { b.disabled = false; });
  document.addEventListener("keydown", onKey);
  return answered;
}

function setProgress(done, total, text) {
  $("bar").max = Math.max(total, 1);
  $("bar").value = done;
  $("progress").textContent = text;
}

async function practice() {
  if (!plan.practice) return;
  setProgress(0, plan.trials.length, "Practice trial (not recorded)");
  const { value } = await ask(plan.practice);
  const p = plan.practice;
  const right = p.correct === null || p.correct === undefined || value === p.correct;
  $("feedback").textContent = right ? p.right : p.wrong;
  // The participant reads the feedback at their own pace, then goes on.
  const go = $("go-on");
  go.hidden = false;
  go.focus({ preventScroll: true });
  await new Promise((r) => go.addEventListener("click", r, { once: true }));
  go.hidden = true;
  $("feedback").textContent = "";
  $("trial").focus({ preventScroll: true });
}

async function run() {
  $("instructions").hidden = true;
  $("trial").hidden = false;
  $("question").textContent = plan.question;
  $("trial").focus({ preventScroll: true });
  if (current === 0 && app.dataset.practice === "yes") {
    await practice();
    await blank();
  }
  while (current < plan.trials.length) {
    const trial = plan.trials[current];
    preload(plan.trials[current + 1]);
    setProgress(current, plan.trials.length, `Trial ${current + 1} of ${plan.trials.length}`);
    const a = await ask(trial);
    enqueue({ position: trial.position, answer: a.value, rt_ms: Math.round(a.rt_ms * 10) / 10, shown_at: a.shown_at });
    current += 1;
    await blank();
  }
  $("images").replaceChildren();
  $("answers").replaceChildren();
  $("question").textContent = "";
  setProgress(plan.trials.length, plan.trials.length, "Saving your answers…");
  await flush(); // no completion until every answer is acknowledged
  while (true) {
    let res = null;
    try {
      res = await fetch(api("/complete"), { method: "POST", headers, body: "{}" });
    } catch { /* offline: retry */ }
    if (res?.ok) {
      try { localStorage.removeItem(QUEUE_KEY); } catch { /* nothing stored */ }
      window.location.assign((await res.json()).next_url);
      return;
    }
    if (expired || res?.status === 403) {
      setStatus(EXPIRED_TEXT);
      return;
    }
    if (res?.status === 409) {
      // The server lacks an answer (one was rejected): start again at the first it lacks.
      window.location.reload();
      return;
    }
    setStatus("Could not finish yet; retrying…");
    await sleep(2000);
  }
}

function showExample(example) {
  // The instructions' worked example: a real item of the participant's method (never one
  // of their trials), with its answer explained.
  const figs = figures(example, "example: ");
  figs.forEach((f) => {
    const img = f.querySelector("img");
    img.decode().then(() => noUpscale(img)).catch(() => {});
  });
  $("example-images").replaceChildren(...figs);
  $("example-images").dataset.count = String(figs.length);
  $("example-answer").textContent = plan.display.object_line
    ? fill(plan.display.object_line, { object: example.object })
    : `Options: ${example.options.map((o, i) => `${i + 1}. ${o}`).join("   ")}. The answer: ${example.answer}.`;
  $("example-explanation").textContent = example.explanation;
  $("example").hidden = false;
}

async function loadPlan() {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const res = await fetch(api("/plan"), { headers });
      if (res.ok) return await res.json();
      if (res.status >= 400 && res.status < 500 && ![408, 429].includes(res.status)) {
        setStatus("This page has expired. Please open the study link again.");
        return null;
      }
    } catch { /* offline: retry */ }
    setStatus("Cannot reach the study server; retrying…");
    await sleep(Math.min(1000 * attempt, 5000));
  }
}

async function start() {
  plan = await loadPlan();
  if (!plan) return;
  setStatus("");
  // Resume: after the answers the server has, and those still waiting in this browser.
  const queued = queue.map((a) => a.position + 1);
  current = Math.max(plan.next, ...queued, 0);
  event("load", { resumed_at: current });
  if (plan.example && current === 0) showExample(plan.example);
  const button = $("start");
  if (current > 0) {
    button.textContent = "Continue";
    app.dataset.practice = "no";
  } else if (!plan.practice) {
    button.textContent = "Start";
    app.dataset.practice = "no";
  }
  button.addEventListener("click", run, { once: true });
  button.disabled = false;
  button.focus();
  flush();
}

window.addEventListener("focus", () => event("focus"));
window.addEventListener("blur", () => event("blur"));
document.addEventListener("visibilitychange", () => event("visibility", { state: document.visibilityState }));
window.addEventListener("online", () => { retryNow(); flush(); });
start();
