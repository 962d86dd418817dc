// The play page: draw on a canvas with pointer events (mouse, touch, pen), ask the server for
// the ensemble's guesses at each stroke's end and every PACE_MS while a stroke is drawn, and
// play Google's game: name a class, 20 seconds, won when the blend's top guess is that class.
//
// The page sends raw canvas points ({"strokes": [[xs], [ys], [ts]], ...}, CSS pixels and ms);
// the server simplifies them the way Google simplified the dataset and answers with the
// drawing as the models saw it. One request is in flight at a time; a change made meanwhile
// sends a fresh one when it returns, and an answer for an older drawing is never shown.
// <body data-version> counts changes to the drawing and data-answered the version the guesses
// on screen are for (tests wait for them to agree, with data-state="idle").
"use strict";

const PACE_MS = 250; // a guess at this pace while a stroke is drawn
const ROUND_S = 20;
const TOP = 3;

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
const seen = $("seen").getContext("2d");

const state = {
  strokes: [], // [[xs], [ys], [ts]] per stroke, CSS pixels of the pad and ms since the first point
  drawing: null, // the stroke being drawn (one of `strokes`)
  start: null, // timeStamp of the drawing's first point
  version: 0, // bumped on every change to the drawing
  sent: -1, // the version of the request in flight (or last sent)
  busy: false,
  classes: [],
  members: [],
  round: null, // {target, started, timer, over}
  pacer: null,
  answer: null, // the answer on screen
  info: "", // what /api/health said, the status line when all is well
};

// ---------------------------------------------------------------- the drawing pad

function fitPad() {
  const rect = pad.getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  pad.width = Math.round(rect.width * ratio);
  pad.height = Math.round(rect.height * ratio);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  redraw();
}

function redraw() {
  ctx.clearRect(0, 0, pad.width, pad.height);
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.lineWidth = 4;
  ctx.strokeStyle = "#1d2330";
  for (const [xs, ys] of state.strokes) {
    ctx.beginPath();
    ctx.moveTo(xs[0], ys[0]);
    for (let i = 1; i < xs.length; i++) ctx.lineTo(xs[i], ys[i]);
    if (xs.length === 1) ctx.lineTo(xs[0] + 0.1, ys[0]);
    ctx.stroke();
  }
}

function addPoint(event) {
  const rect = pad.getBoundingClientRect();
  const x = event.clientX - rect.left;
  const y = event.clientY - rect.top;
  const [xs, ys, ts] = state.drawing;
  if (xs.length && xs[xs.length - 1] === x && ys[ys.length - 1] === y) return;
  if (state.start === null) state.start = event.timeStamp;
  xs.push(x);
  ys.push(y);
  ts.push(Math.max(0, Math.round(event.timeStamp - state.start)));
  changed();
}

function changed() {
  state.version += 1;
  document.body.dataset.version = String(state.version);
}

pad.addEventListener("pointerdown", (event) => {
  if (event.pointerType === "mouse" && event.button !== 0) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  state.drawing = [[], [], []];
  state.strokes.push(state.drawing);
  addPoint(event);
  redraw();
  clearInterval(state.pacer);
  state.pacer = setInterval(guess, PACE_MS);
});

pad.addEventListener("pointermove", (event) => {
  if (!state.drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) addPoint(e);
  redraw();
});

function endStroke(event) {
  if (!state.drawing) return;
  addPoint(event);
  state.drawing = null;
  clearInterval(state.pacer);
  redraw();
  guess();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function undo() {
  if (state.drawing || !state.strokes.length) return;
  state.strokes.pop();
  if (!state.strokes.length) state.start = null;
  changed();
  redraw();
  guess();
}

function clearPad() {
  state.strokes = [];
  state.drawing = null;
  state.start = null;
  changed();
  redraw();
  guess();
}

$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clearPad);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z") {
    event.preventDefault();
    undo();
  }
});

// ---------------------------------------------------------------- guesses

function guess() {
  if (state.busy || state.sent === state.version) return; // the answer's return sends again
  const version = state.version;
  state.sent = version;
  if (!state.strokes.length) {
    show(null, version);
    return;
  }
  state.busy = true;
  document.body.dataset.state = "busy";
  const body = { strokes: state.strokes.map(([xs, ys, ts]) => [xs, ys, ts]), top: TOP };
  const sentAt = performance.now();
  fetch("/api/predict", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  })
    .then((response) => response.json().then((answer) => [response.ok, answer]))
    .then(([ok, answer]) => {
      if (!ok) throw new Error(answer.error || "the server refused the drawing");
      status(state.info);
      if (version === state.version) show(answer, version, performance.now() - sentAt);
    })
    .catch((err) => status(String(err.message || err), true))
    .finally(() => {
      state.busy = false;
      if (state.sent !== state.version && !state.drawing) guess();
      else if (state.sent !== state.version) document.body.dataset.state = "drawing";
      else document.body.dataset.state = "idle";
    });
}

function guessList(guesses, target) {
  const list = document.createElement("ol");
  list.className = "guess-list";
  for (const { word, p } of guesses) {
    const item = document.createElement("li");
    item.dataset.word = word;
    item.dataset.p = String(p);
    if (word === target) item.className = "target";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    const name = document.createElement("span");
    name.textContent = word;
    const value = document.createElement("span");
    value.textContent = `${(100 * p).toFixed(1)}%`;
    item.append(bar, name, value);
    list.append(item);
  }
  return list;
}

function show(answer, version, roundTripMs) {
  state.answer = answer;
  const target = state.round && !state.round.over ? state.round.target : null;
  const top = answer ? answer.top : [];
  $("top").replaceChildren(...guessList(top, target).children);
  const cards = [];
  for (const name of state.members) {
    const card = document.createElement("div");
    card.className = "member";
    card.dataset.member = name;
    const own = answer ? answer.members[name] || [] : [];
    if (own.length && top.length && own[0].word !== top[0].word) card.classList.add("disagrees");
    const title = document.createElement("h4");
    title.textContent = name;
    card.append(title, guessList(own, target));
    cards.push(card);
  }
  $("members").replaceChildren(...cards);
  drawSeen(answer ? answer.drawing : []);
  $("timing").textContent = answer
    ? `server ${answer.ms.toFixed(1)} ms, round trip ${roundTripMs.toFixed(0)} ms`
    : "";
  document.body.dataset.answered = String(version);
  if (answer && target && top.length && top[0].word === target) win();
}

function drawSeen(drawing) {
  const size = seen.canvas.width;
  seen.clearRect(0, 0, size, size);
  seen.strokeStyle = "#1d2330";
  seen.fillStyle = "#2f6fde";
  seen.lineWidth = 2;
  const scale = (size - 1) / 255;
  let points = 0;
  for (const [xs, ys] of drawing) {
    seen.beginPath();
    xs.forEach((x, i) => (i ? seen.lineTo(x * scale, ys[i] * scale) : seen.moveTo(x * scale, ys[i] * scale)));
    seen.stroke();
    xs.forEach((x, i) => seen.fillRect(x * scale - 2, ys[i] * scale - 2, 4, 4));
    points += xs.length;
  }
  seen.canvas.dataset.points = String(points);
  seen.canvas.title = `${drawing.length} strokes, ${points} points`;
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// ---------------------------------------------------------------- the game

function newRound() {
  if (state.round) clearInterval(state.round.timer);
  const choices = state.classes.filter((c) => !state.round || c !== state.round.target);
  const target = choices[Math.floor(Math.random() * choices.length)];
  state.round = { target, started: performance.now(), over: false, timer: null };
  clearPad();
  $("prompt").className = "";
  $("prompt").innerHTML = "Draw ";
  const word = document.createElement("strong");
  word.id = "target";
  word.textContent = target;
  $("prompt").append(word, document.createTextNode(` in ${ROUND_S} seconds`));
  state.round.timer = setInterval(tick, 100);
  tick();
}

function tick() {
  const round = state.round;
  const left = ROUND_S - (performance.now() - round.started) / 1000;
  $("clock").textContent = `${Math.max(left, 0).toFixed(1)} s`;
  if (left <= 0) endRound(false);
}

function win() {
  endRound(true);
}

function endRound(won) {
  const round = state.round;
  if (!round || round.over) return;
  round.over = true;
  clearInterval(round.timer);
  const seconds = ((performance.now() - round.started) / 1000).toFixed(1);
  const best = $("top").querySelector("li");
  $("prompt").className = won ? "won" : "lost";
  $("prompt").textContent = won
    ? `The ensemble saw ${round.target} after ${seconds} s. You won!`
    : `Time's up: no ${round.target} yet` + (best ? ` (best guess: ${best.dataset.word}).` : ".");
  document.body.dataset.round = won ? "won" : "lost";
}

$("new-round").addEventListener("click", newRound);

// ---------------------------------------------------------------- start

fetch("/api/health")
  .then((response) => response.json())
  .then((health) => {
    state.classes = health.classes;
    state.members = health.members;
    state.info =
      `${health.members.length} members (${health.members.join(", ")}), blend: ` +
      `${health.blend}, ${health.classes.length} classes. Draw something.`;
    status(state.info);
    document.body.dataset.state = "idle";
  })
  .catch(() => status("the server did not answer /api/health; is `make serve` running?", true));

window.addEventListener("resize", fitPad);
fitPad();
