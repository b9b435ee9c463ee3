// camstudy's browser module: no build step, no dependencies.
// Preloads images, times answers with performance.now(), takes keyboard and click answers,
// keeps unsent answers in a localStorage queue (they survive a reload or a lost
// connection) and finishes only once the server has acknowledged every answer.

const app = document.getElementById("app");
const { slug, task, token } = app.dataset;
const headers = { "Content-Type": "application/json", "X-Participant-Token": token };
const api = (path) => `/api/s/${slug}${path}`;
const QUEUE_KEY = `camstudy:${slug}:${token.slice(-24)}:queue`;
const TRUST_LABELS = [
  "Model 1 clearly less reliable", "Model 1 slightly less reliable", "Equally reliable",
  "Model 1 slightly more reliable", "Model 1 clearly more reliable",
];
const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the answer queue
let queue = readQueue();
let flushing = null;
let failures = 0;

function readQueue() {
  try { return JSON.parse(localStorage.getItem(QUEUE_KEY)) || []; } catch { return []; }
}
function saveQueue() { localStorage.setItem(QUEUE_KEY, JSON.stringify(queue)); }
function setStatus(text) { $("status").textContent = text; }

function flush() {
  if (!flushing) flushing = sendAll().finally(() => { flushing = null; });
  return flushing;
}

async function sendAll() {
  while (queue.length) {
    let res = null;
    try {
      res = await fetch(api("/answers"), { method: "POST", headers, body: JSON.stringify(queue[0]) });
    } catch {
      res = null; // offline or the server is down: keep the answer, retry later
    }
    if (res && (res.ok || (res.status >= 400 && res.status < 500 && ![408, 429].includes(res.status)))) {
      if (!res.ok) console.warn("answer rejected", res.status, await res.text());
      queue.shift();
      saveQueue();
      failures = 0;
      setStatus(queue.length ? `Sending ${queue.length} answer(s)…` : "");
      continue;
    }
    failures += 1;
    setStatus("Connection problem: your answers are kept and will be sent when it is back.");
    await sleep(Math.min(500 * 2 ** Math.min(failures, 5), 10000));
  }
}

function event(kind, detail) {
  fetch(api("/events"), { method: "POST", headers, body: JSON.stringify({ kind, detail }), keepalive: true })
    .catch(() => {});
}

// ---------------------------------------------------------------- trials
let plan = null;
let current = 0;

function preload(trial) {
  return Promise.all((trial?.images || []).map((src) => {
    const img = new Image();
    img.src = src;
    return img.decode().catch(() => {});
  }));
}

function answerButtons(trial, onAnswer) {
  const box = $("answers");
  box.replaceChildren();
  const choices = task === "trust"
    ? TRUST_LABELS.map((label, i) => ({ label: `${i + 1}. ${label}`, value: i - 2 }))
    : trial.options.map((o, i) => ({ label: `${i + 1}. ${o}`, value: o }));
  choices.forEach((c) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = c.label;
    b.addEventListener("click", () => onAnswer(c.value));
    box.append(b);
  });
  box.firstChild?.focus();
  return choices;
}

function showImages(trial) {
  const box = $("images");
  box.replaceChildren();
  trial.images.forEach((src, i) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = src;
    img.alt = task === "trust" ? `Model ${i + 1}'s explanation` : "the highlighted evidence";
    fig.append(img);
    if (task === "trust") {
      const cap = document.createElement("figcaption");
      cap.textContent = `Model ${i + 1}`;
      fig.append(cap);
    }
    box.append(fig);
  });
  return Promise.all([...box.querySelectorAll("img")].map((img) => img.decode().catch(() => {})));
}

function ask(trial) {
  // Resolves with {value, rt_ms, shown_at} once the participant answers.
  return new Promise(async (resolve) => {
    await showImages(trial);
    const shownAt = new Date().toISOString();
    const t0 = performance.now();
    let done = false;
    const choose = (value) => {
      if (done) return;
      done = true;
      document.removeEventListener("keydown", onKey);
      resolve({ value, rt_ms: Math.max(performance.now() - t0, 1), shown_at: shownAt });
    };
    const choices = answerButtons(trial, choose);
    const onKey = (e) => {
      const k = Number(e.key);
      if (Number.isInteger(k) && k >= 1 && k <= choices.length) choose(choices[k - 1].value);
    };
    document.addEventListener("keydown", onKey);
  });
}

async function practice() {
  if (!plan.practice) return;
  $("progress").textContent = "Practice trial (not recorded)";
  const { value } = await ask(plan.practice);
  const right = value === plan.practice.correct;
  $("feedback").textContent = right ? "Correct! Now the real trials start." : plan.practice.explanation;
  await sleep(right ? 1200 : 3500);
  $("feedback").textContent = "";
}

async function run() {
  $("instructions").hidden = true;
  $("trial").hidden = false;
  if (current === 0 && app.dataset.practice === "yes") await practice();
  while (current < plan.trials.length) {
    const trial = plan.trials[current];
    preload(plan.trials[current + 1]);
    $("progress").textContent = `Trial ${current + 1} of ${plan.trials.length}`;
    const a = await ask(trial);
    queue.push({ position: trial.position, answer: a.value, rt_ms: Math.round(a.rt_ms * 10) / 10, shown_at: a.shown_at });
    saveQueue();
    flush();
    current += 1;
  }
  $("images").replaceChildren();
  $("answers").replaceChildren();
  $("progress").textContent = "Saving your answers…";
  await flush(); // no completion until every answer is acknowledged
  while (true) {
    try {
      const res = await fetch(api("/complete"), { method: "POST", headers, body: "{}" });
      if (res.ok) {
        localStorage.removeItem(QUEUE_KEY);
        window.location.assign((await res.json()).next_url);
        return;
      }
    } catch { /* retry */ }
    setStatus("Could not finish yet; retrying…");
    await sleep(2000);
  }
}

async function start() {
  const res = await fetch(api("/plan"), { headers });
  plan = await res.json();
  // Resume: after the answers the server has, and those still waiting in this browser.
  const queued = queue.map((a) => a.position + 1);
  current = Math.max(plan.next, ...queued, 0);
  event("load", { resumed_at: current });
  if (current > 0) {
    $("start").textContent = "Continue";
    app.dataset.practice = "no";
  }
  $("start").addEventListener("click", run, { once: true });
  flush();
}

window.addEventListener("focus", () => event("focus"));
window.addEventListener("blur", () => event("blur"));
window.addEventListener("online", () => flush());
start();
