// meetvar judges' dashboard: plain JS, no build step. Views are hash routes (#live, #replay/ID, …).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const WS_PATH = document.querySelector('meta[name="meetvar-ws"]').content;
const WS_TOO_SLOW = 4008;  // the server closed a page that fell behind (dashboard/hub.py)

const app = {
  me: null,              // {name, role, lifter}
  lifts: new Map(),      // lift id -> lift
  states: new Map(),     // "meet/platform" -> meet.state
  partial: new Map(),    // attempt id -> explanation text streamed so far
  cursor: null,          // last event seq seen: sent back on reconnect to get exactly what was missed
  ws: null,
  wsDelay: 500,
};
window.meetvar = app;    // for tests and the curious: the page's own state

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch { /* empty body */ }
  if (!res.ok) {
    const err = new Error((data && data.detail && (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail))) || res.statusText);
    err.status = res.status;
    throw err;
  }
  return data;
}

function announce(text) { $("#announce").textContent = text; }
// Signed to one decimal with a real minus sign: "+0.4", "−0.7".
const signed = (v) => { const s = Math.abs(v).toFixed(1); return `${s === "0.0" ? "" : v < 0 ? "−" : "+"}${s}`; };
const fmtCm = (v) => v == null ? "—" : `${signed(v)} cm`;
const verdictWord = (v) => ({ good: "GOOD LIFT", no_lift: "NO LIFT", undecided: "NO CALL" }[v] || "—");
const lightWord = (v) => ({ good: "white", no_lift: "red", bad: "red", undecided: "undecided" }[v] || "not entered");
const can = (...roles) => app.me && roles.includes(app.me.role);

// --- a call's margin, its uncertainty, and calls too close to call ------------------------------------
// Decisions may carry depth.margin_cm_interval ([low, high] cm: where the true margin lies), depth.surface
// and depth.scale (how the margin was measured). Older decisions have none of them: shown as before.

const TOO_CLOSE = /^too close to call\b/i;
const intervalOf = (d) => {
  const iv = d && d.margin_cm_interval;
  return Array.isArray(iv) && iv.length === 2 && iv.every((v) => typeof v === "number" && Number.isFinite(v)) ? iv : null;
};
const crossesZero = (iv) => !!iv && iv[0] <= 0 && iv[1] >= 0;
const fmtInterval = (iv) => `(${signed(iv[0])}…${signed(iv[1])})`;
// "+0.4 cm (−0.7…+1.5)"; without an interval exactly as before: "+0.4 cm".
const fmtMargin = (v, iv) => !iv ? fmtCm(v) : v == null ? `${fmtInterval(iv)} cm` : `${fmtCm(v)} ${fmtInterval(iv)}`;
const fmtConf = (v) => (typeof v === "number" ? v.toFixed(2) : "—");

// Why one camera's attempt goes to the referees: its "too close to call: +0.4 ± 1.1 cm" reason, or, for a
// decision that says undecided with an interval around zero but words it otherwise, the same from its numbers.
function tooCloseReason(a) {
  if (!a || a.verdict !== "undecided") return null;
  const d = a.depth || {};
  const found = [...(a.reasons || []), ...(d.reasons || [])].find((r) => typeof r === "string" && TOO_CLOSE.test(r));
  if (found) return found;
  const iv = intervalOf(d);
  if (d.status !== "undecided" || !crossesZero(iv)) return null;
  const mid = d.margin_cm ?? (iv[0] + iv[1]) / 2;
  return `too close to call: ${signed(mid)} ± ${((iv[1] - iv[0]) / 2).toFixed(1)} cm`;
}

// How the margin was measured, for the small print: "surface: … · scale: … · measured: …".
function methodText(d) {
  if (!d) return "";
  return [["surface", d.surface], ["scale", d.scale], ["measured", d.measured]]
    .filter(([, v]) => typeof v === "string" && v).map(([k, v]) => `${k}: ${v}`).join(" · ");
}
const methodNode = (d, role = "method") => { const t = methodText(d); return t ? el("div", { class: "fine", dataset: { role }, text: t }) : null; };

// The platform's call with what the fused object may lack taken from the camera it rests on: fusion keeps
// the weakest agreeing camera's margin, so its interval, surface and scale are that camera's. An undecided
// platform call goes to the referees when a camera that could see depth found it too close to call.
function systemCall(lift) {
  const f = lift.fused;
  const cam = lift.cameras.find((c) => c.camera === f.camera);
  const refer = f.verdict !== "undecided" ? [] : lift.cameras
    .map((c) => ({ camera: c.camera, depth: c.attempt.depth || {}, reason: tooCloseReason(c.attempt) }))
    .filter((c) => c.reason);
  if (f.verdict === "undecided" && !refer.length) {
    const r = (f.reasons || []).find((x) => TOO_CLOSE.test(x));
    if (r) refer.push({ camera: null, depth: {}, reason: r });
  }
  const src = refer.length === 1 ? refer[0].depth : cam ? cam.attempt.depth || {} : {};
  const depth = {
    margin_cm: f.margin_cm ?? (refer.length === 1 ? src.margin_cm ?? null : null),
    margin_cm_interval: intervalOf(f) || intervalOf(src),
    surface: f.surface ?? src.surface, scale: f.scale ?? src.scale, measured: f.measured ?? src.measured,
  };
  return { ...f, depth, interval: intervalOf(depth), refer };
}
const callWord = (verdict, refer) => (refer ? "REFER" : verdictWord(verdict));

// --- session ------------------------------------------------------------------------------------

async function loadMe() {
  try { app.me = await api("GET", "/api/me"); } catch { app.me = null; }
  $("#who").textContent = app.me ? `${app.me.name} · ${app.me.role.replace("_", " ")}` : "";
  $("#logout").hidden = !app.me || app.me.id === 0;
  $("#login-link").hidden = !!(app.me && app.me.id !== 0);
  $("#nav").hidden = !app.me;
  for (const a of $$("#nav a[data-roles]")) a.hidden = !(app.me && a.dataset.roles.split(" ").includes(app.me.role));
  document.body.dataset.role = app.me ? app.me.role : "";
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#login-error").textContent = "";
  try {
    await api("POST", "/api/login", { name: $("#login-name").value, password: $("#login-password").value });
    $("#login-password").value = "";
    await afterLogin();
  } catch (e) { $("#login-error").textContent = e.message; }
});

$("#logout").addEventListener("click", async () => {
  await api("POST", "/api/logout").catch(() => {});
  app.me = null;
  if (app.ws) app.ws.close();
  await loadMe();
  location.hash = "#login";
});

async function afterLogin() {
  await loadMe();
  if (!app.me) { location.hash = "#login"; return route(); }
  connect(true);
  if (!location.hash || location.hash.startsWith("#login")) location.hash = "#live";
  route();
}

// --- the live feed ----------------------------------------------------------------------------------

function connect(fresh) {
  if (app.ws) { app.ws.onclose = null; app.ws.close(); }
  const q = !fresh && app.cursor != null ? `?since=${app.cursor}` : "";
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${WS_PATH}${q}`);
  app.ws = ws;
  // "live" only once the server says this page is up to date (snapshot or caught_up), not on open.
  ws.onopen = () => { app.wsDelay = 500; };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    onEvent(m);
    if (m.type === "snapshot" || m.type === "caught_up") {
      $("#conn").textContent = "live"; $("#conn").className = "live";
    }
  };
  // Reconnect with back-off; the cursor makes the server replay exactly what this page missed.
  // Code 4008: the server closed this page for falling behind: reconnect at once and catch up.
  ws.onclose = (ev) => {
    $("#conn").textContent = "reconnecting…"; $("#conn").className = "down";
    if (!app.me) return;
    const delay = ev && ev.code === WS_TOO_SLOW ? 0 : app.wsDelay;
    setTimeout(() => connect(false), delay);
    if (delay) app.wsDelay = Math.min(app.wsDelay * 2, 8000);
  };
}

function findLiftByAttempt(attemptId) {
  for (const lift of app.lifts.values()) if (lift.cameras.some((c) => c.attempt_id === attemptId)) return lift;
  return null;
}

function onEvent(m) {
  if (m.seq != null) app.cursor = m.seq;
  switch (m.type) {
    case "snapshot":
      app.cursor = m.cursor;
      app.lifts.clear();
      for (const l of m.lifts) app.lifts.set(l.id, l);
      for (const s of m.states) app.states.set(`${s.meet}/${s.platform}`, s);
      break;
    case "caught_up": app.cursor = m.cursor; break;
    case "lift": {
      const isNew = !app.lifts.has(m.lift.id);
      app.lifts.set(m.lift.id, m.lift);
      if (isNew && m.lift.hidden) announce("New attempt recorded; the system's call is hidden until the official lights are in.");
      else if (isNew) {
        const sc = systemCall(m.lift);
        announce(sc.refer.length ? `New call: refer to the referees, ${sc.refer.map((r) => r.reason).join("; ")}`
          : `New call: ${verdictWord(sc.verdict)}, margin ${fmtMargin(sc.depth.margin_cm, sc.interval)}`);
      }
      break;
    }
    case "explanation": {
      app.partial.delete(m.attempt_id);
      const lift = findLiftByAttempt(m.attempt_id);
      if (lift) for (const c of lift.cameras) if (c.attempt_id === m.attempt_id) c.explanation = m;
      break;
    }
    case "explanation_delta":
      app.partial.set(m.attempt_id, (app.partial.get(m.attempt_id) || "") + m.text);
      break;
    case "state": app.states.set(`${m.meet}/${m.platform}`, m); break;
    case "appeal": if (currentView() === "appeals") renderAppeals().catch(() => {}); break;
    default: break;
  }
  scheduleRender();
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; if (currentView() === "live") renderLive(); });
}

// --- live view --------------------------------------------------------------------------------------

function renderPlatforms() {
  const box = $("#platforms");
  box.replaceChildren();
  platformsForTablet();  // jury.js: the head referee's tablet shows every platform on record
  for (const s of [...app.states.values()].sort((a, b) => a.platform.localeCompare(b.platform))) {
    box.append(el("div", { class: "platform", "aria-label": `platform ${s.platform}` },
      el("div", { class: "dim", text: `${s.meet} · ${s.platform}` }),
      el("div", { class: "lifter", dataset: { role: "current-lifter" }, text: s.lifter || "—" }),
      el("div", { class: "nums" },
        `${s.lift || "squat"} · attempt `, el("b", { text: s.attempt_number ?? "—" }),
        s.weight_kg != null ? ` · ${s.weight_kg} kg` : "",
        s.command ? el("span", { dataset: { role: "command" } }, ` · referee: “${s.command}”`) : ""),
      signalButtons(s)));  // jury.js: Squat / Rack for the head referee
  }
}

function lightNode(verdict, label, small = false) {
  return el("div", { class: `light ${small ? "small " : ""}${verdict || "none"}`, role: "img", "aria-label": `${label}: ${lightWord(verdict)}`, title: `${label}: ${lightWord(verdict)}` });
}

function explanationText(cam) {
  if (app.partial.has(cam.attempt_id)) return app.partial.get(cam.attempt_id) + " …";
  return cam.explanation ? cam.explanation.text : "";
}

// "Refer to the referees": the system could not call it, and says so as a call of its own, not as an error.
function referNode(refer, interval) {
  if (!refer.length) return null;
  const why = refer.map((r) => `${refer.length > 1 && r.camera ? `${r.camera}: ` : ""}${r.reason}`).join("; ");
  return el("div", { class: "refer", role: "status", dataset: { role: "refer" } },
    el("strong", { text: "Refer to the referees" }),
    el("span", { class: "nums" }, " ", el("b", { dataset: { role: "too-close" }, text: why }),
      interval ? el("span", { dataset: { role: "refer-interval" }, text: ` · margin lies in ${fmtInterval(interval)} cm` }) : null));
}

// Shadow mode: the attempt is on record, but its call waits for the official lights.
function hiddenCard(lift) {
  const who = [lift.lifter, lift.attempt_number ? `attempt ${lift.attempt_number}` : null, lift.weight_kg ? `${lift.weight_kg} kg` : null].filter(Boolean).join(" · ");
  return el("article", { class: "lift", dataset: { liftId: lift.id, verdict: "hidden" }, "aria-label": `lift ${lift.id}` },
    el("div", { class: "lightbox" }, lightNode(null, "system call hidden"), el("div", { class: "lightlabel", dataset: { role: "verdict" }, text: "HIDDEN" })),
    el("div", { class: "stack" },
      el("h3", {}, `Lift ${lift.id}`, who ? ` — ${who}` : ""),
      el("p", { class: "dim", dataset: { role: "hidden" }, text: `System call ${lift.hidden}.` }),
      actionsFor(lift)));
}

function liftCard(lift) {
  if (lift.hidden) return hiddenCard(lift);
  const f = lift.fused;
  const sc = systemCall(lift);
  const cams = lift.cameras.map((c) => {
    const a = c.attempt, d = a.depth || {};
    const close = tooCloseReason(a);
    const why = close ? el("span", { class: "refer-word", text: ` — refer: ${close}` })
      : a.verdict === "undecided" ? el("span", { class: "dim", text: ` — ${a.reasons.join("; ")}` }) : null;
    return el("div", { class: "cam", dataset: { camera: c.camera, attemptId: c.attempt_id } },
      lightNode(a.verdict, `camera ${c.camera}`, true),
      el("div", {},
        el("span", {}, el("b", { text: c.camera }), " ", el("span", { class: "nums" },
          "margin ", el("b", { dataset: { role: "cam-margin" }, text: fmtMargin(d.margin_cm, intervalOf(d)) }), " · conf ", el("b", { text: fmtConf(d.confidence) })), why),
        methodNode(d, "cam-method")));
  });
  const expl = lift.cameras.map(explanationText).filter(Boolean);
  const rack = lift.rack_to_call_ms == null ? null : el("span", {}, " · rack→call ", el("b", { dataset: { role: "rack-to-call" }, text: `${(lift.rack_to_call_ms / 1000).toFixed(2)} s` }));
  const who = [lift.lifter, lift.attempt_number ? `attempt ${lift.attempt_number}` : null, lift.weight_kg ? `${lift.weight_kg} kg` : null].filter(Boolean).join(" · ");
  const refs = lift.lights ? el("div", { class: "refs", "aria-label": "referees' lights" }, "Referees:",
    lightNode(lift.lights.left, "left referee", true), lightNode(lift.lights.head, "head referee", true), lightNode(lift.lights.right, "right referee", true),
    lift.split ? el("span", { class: "badge", text: "2–1" }) : null) : null;
  const result = lift.result && lift.result.verdict ? el("div", {}, "Result: ", el("b", { dataset: { role: "result" }, text: verdictWord(lift.result.verdict) }), ` (by ${lift.result.by})`) : null;
  const appeals = lift.appeals.map((a) => el("span", { class: `badge ${a.status}`, dataset: { role: "appeal-status" }, text: `appeal ${a.status}` }));
  const overrides = lift.overrides.map((o) => el("div", { class: "dim", text: `Override by ${o.by} (${o.role.replace("_", " ")}): ${verdictWord(o.verdict)} — ${o.reason}` }));
  const refer = sc.refer.length > 0;
  return el("article", { class: `lift${refer ? " referred" : ""}`, dataset: { liftId: lift.id, verdict: f.verdict, refer: refer ? "1" : null }, "aria-label": `lift ${lift.id}` },
    el("div", { class: "lightbox" }, lightNode(f.verdict, refer ? "system call: refer to the referees" : "system call"),
      el("div", { class: "lightlabel", dataset: { role: "verdict" }, text: callWord(f.verdict, refer) })),
    el("div", { class: "stack" },
      el("h3", {}, `Lift ${lift.id}`, who ? ` — ${who}` : "", " ", ...appeals),
      referNode(sc.refer, sc.interval),
      el("div", { class: "nums" }, "system: margin ", el("b", { dataset: { role: "margin" }, text: fmtMargin(sc.depth.margin_cm, sc.interval) }),
        // An undecided call has no confidence of its own (fusion reports 0): the interval says how close it is.
        " · confidence ", el("b", { text: f.verdict === "undecided" ? "—" : fmtConf(f.confidence) }),
        ` · votes ${f.votes.good}W/${f.votes.no_lift}R${f.votes.undecided ? `/${f.votes.undecided}?` : ""}`, rack),
      methodNode(sc.depth),
      f.verdict === "undecided" && !refer ? el("div", { class: "dim", dataset: { role: "undecided-reason" }, text: `Undecided: ${f.reasons.join("; ")}` }) : null,
      el("div", { class: "cams" }, cams),
      expl.length ? el("p", { class: "expl", dataset: { role: "explanation" }, text: expl.join(" ") }) : null,
      refs, result, overrides,
      actionsFor(lift)));
}

function actionsFor(lift) {
  const box = el("div", { class: "actions" }, el("a", { href: `#replay/${lift.id}`, text: "Replay" }));
  const msg = el("span", { class: "error", role: "alert" });
  // After an action, show its result from the server at once: the WebSocket's copy of the change may
  // have gone out while this page was still (re)connecting.
  const guarded = (fn) => async (ev) => {
    ev.preventDefault(); msg.textContent = "";
    try {
      await fn(ev);
      if (ev.target.contains(document.activeElement)) document.activeElement.blur();  // done editing
      const fresh = await api("GET", `/api/lifts/${lift.id}`);
      app.lifts.set(fresh.id, fresh);
      scheduleRender();
    } catch (e) { msg.textContent = e.message; }
  };
  const lights = lightsForm(lift, guarded);  // jury.js: entered once, then locked; the organizer corrects
  if (lights) box.append(lights);
  if (can("head_referee", "side_referee")) {
    const form = el("form", { dataset: { role: "override-form" } }, el("fieldset", {}, el("legend", { text: "Override" }),
      el("label", { for: `o-v-${lift.id}`, text: "Call" }),
      el("select", { id: `o-v-${lift.id}`, name: "verdict" }, el("option", { value: "good", text: "good lift" }), el("option", { value: "no_lift", text: "no lift" })),
      el("label", { for: `o-r-${lift.id}`, text: "Reason" }), el("input", { id: `o-r-${lift.id}`, name: "reason", required: true }),
      el("button", { type: "submit", text: "Record override" })));
    form.addEventListener("submit", guarded(async () => {
      await api("POST", `/api/lifts/${lift.id}/override`, { verdict: $("select", form).value, reason: $("input", form).value });
    }));
    box.append(form);
  }
  if (can("lifter", "coach") && lift.lifter && app.me.lifter && lift.lifter.toLowerCase() === app.me.lifter.toLowerCase() && !lift.appeals.length) {
    box.append(appealForm(lift, guarded));  // jury.js: the appeal names a roster lifter
  }
  if (can("organizer")) {
    const form = el("form", { dataset: { role: "assign-form" } }, el("fieldset", {}, el("legend", { text: "Who lifted" }),
      el("label", { for: `s-l-${lift.id}`, text: "Lifter" }), el("input", { id: `s-l-${lift.id}`, name: "lifter", value: lift.lifter || "" }),
      el("label", { for: `s-a-${lift.id}`, text: "Attempt" }),
      el("select", { id: `s-a-${lift.id}`, name: "attempt" }, ["1", "2", "3"].map((n) => el("option", { value: n, text: n }))),
      el("button", { type: "submit", text: "Save" })));
    if (lift.attempt_number) $("select", form).value = String(lift.attempt_number);
    form.addEventListener("submit", guarded(async () => {
      await api("POST", `/api/lifts/${lift.id}/assign`, { lifter: $("input", form).value || null, attempt_number: Number($("select", form).value), lift_name: "squat" });
    }));
    box.append(form);
  }
  box.append(msg);
  return box;
}

function renderLive() {
  renderPlatforms();
  const box = $("#lifts");
  // Keep a form the user is typing in: re-render only cards that are not being edited. A focused
  // button is not editing (after "File appeal" the button keeps the focus, and keeping that card
  // would hide the result of the click).
  const focused = document.activeElement;
  const active = focused && focused.matches("input, select, textarea") ? focused.closest(".lift") : null;
  const items = [...app.lifts.values()].sort((a, b) => b.bottom_us - a.bottom_us);
  if (!items.length) return;
  const fresh = el("div", { class: "lifts" }, items.map((l) => (active && Number(active.dataset.liftId) === l.id ? active : liftCard(l))));
  box.replaceChildren(...fresh.childNodes);
}

// --- replay -----------------------------------------------------------------------------------------

const SKELETON = [[11, 12], [11, 23], [12, 24], [23, 24], [11, 13], [13, 15], [12, 14], [14, 16], [23, 25], [25, 27], [27, 29], [29, 31], [27, 31],
  [24, 26], [26, 28], [28, 30], [30, 32], [28, 32], [0, 11], [0, 12]];
const replay = { panes: [], lift: null, bottom: null, playing: false, virtual: null, raf: 0 };
app.replay = replay;

function nearestIndex(list, t) {
  // Binary search on sorted capture times: the frame on screen at capture time t.
  let lo = 0, hi = list.length - 1;
  if (hi < 0) return -1;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (list[mid] < t) lo = mid + 1; else hi = mid; }
  if (lo > 0 && Math.abs(list[lo - 1] - t) <= Math.abs(list[lo] - t)) lo -= 1;
  return lo;
}

function paneCapture(p) {
  // Capture time shown now: video time + the capture time of video time 0.
  if (p.video) return p.data.t0_capture_us + Math.round((p.mediaTime ?? p.video.currentTime) * 1e6);
  return replay.virtual;
}

function drawPane(p) {
  const t = paneCapture(p);
  const idx = nearestIndex(p.frameTimes, t);
  const ctx = p.canvas.getContext("2d");
  ctx.clearRect(0, 0, p.canvas.width, p.canvas.height);
  if (!p.video) { ctx.fillStyle = "#111"; ctx.fillRect(0, 0, p.canvas.width, p.canvas.height); }
  p.canvas.dataset.captureUs = String(t);
  if (idx < 0) { p.canvas.dataset.frameIndex = "-1"; return; }
  const f = p.data.frames[idx];
  const halfFrame = p.frameStep / 2;
  p.canvas.dataset.frameIndex = String(f.frame_index);
  p.canvas.dataset.frameCaptureUs = String(f.capture_us);
  const kp = f.keypoints;
  if (kp && Math.abs(f.capture_us - t) <= Math.max(halfFrame, 1)) {
    const lw = Math.max(2, p.canvas.width / 200);
    ctx.lineWidth = lw; ctx.strokeStyle = "#00e5ff"; ctx.lineCap = "round";
    for (const [a, b] of SKELETON) {
      if (kp[a][2] < 0.3 || kp[b][2] < 0.3) continue;
      ctx.beginPath(); ctx.moveTo(kp[a][0], kp[a][1]); ctx.lineTo(kp[b][0], kp[b][1]); ctx.stroke();
    }
    ctx.fillStyle = "#00e5ff";
    for (const i of [11, 12, 23, 24, 25, 26, 27, 28]) if (kp[i][2] >= 0.3) { ctx.beginPath(); ctx.arc(kp[i][0], kp[i][1], lw * 1.6, 0, 7); ctx.fill(); }
  }
  // The rule's two points and the line between them, at the bottom frame.
  const lm = p.data.depth.landmarks;
  const atBottom = p.data.capture_us.bottom != null && Math.abs(t - p.data.capture_us.bottom) <= halfFrame;
  p.canvas.dataset.atBottom = atBottom ? "1" : "0";
  if (atBottom && lm && lm.hip && lm.knee) {
    const r = Math.max(5, p.canvas.width / 90);
    ctx.lineWidth = Math.max(2, r / 2); ctx.strokeStyle = p.data.depth.status === "below" ? "#ffffff" : "#ff5c61";
    ctx.setLineDash([r, r / 2]);
    ctx.beginPath(); ctx.moveTo(lm.hip[0], lm.hip[1]); ctx.lineTo(lm.knee[0], lm.knee[1]); ctx.stroke();
    ctx.setLineDash([]);
    for (const [pt, c] of [[lm.hip, "#ffb020"], [lm.knee, "#7cff7c"]]) { ctx.fillStyle = c; ctx.beginPath(); ctx.arc(pt[0], pt[1], r, 0, 7); ctx.fill(); }
  }
}

function drawAll() {
  for (const p of replay.panes) drawPane(p);
  const master = replay.panes[0];
  if (!master) return;
  const t = paneCapture(master);
  $("#rp-time").textContent = `t = ${((t - replay.lift.cameras[0].attempt.capture_us.start) / 1e6).toFixed(3)} s from the attempt's start`;
  const cursor = $("#plot-cursor");
  if (cursor && replay.plot) { const x = replay.plot.x(t); cursor.setAttribute("x1", x); cursor.setAttribute("x2", x); }
}

function seekAll(captureUs) {
  for (const p of replay.panes) {
    if (p.video) { p.mediaTime = null; p.video.currentTime = Math.max(0, (captureUs - p.data.t0_capture_us) / 1e6 + 0.0005); }
  }
  replay.virtual = captureUs;
  drawAll();
}

function stepFrames(n) {
  pauseAll();
  const master = replay.panes[0];
  if (!master) return;
  const times = master.video ? master.data.video_capture_us : master.frameTimes;
  const i = nearestIndex(times, paneCapture(master));
  const j = Math.max(0, Math.min(times.length - 1, i + n));
  seekAll(times[j]);
}

function pauseAll() {
  replay.playing = false;
  cancelAnimationFrame(replay.raf);
  for (const p of replay.panes) if (p.video) p.video.pause();
  $("#rp-play").textContent = "Play";
}

function playAll() {
  replay.playing = true;
  $("#rp-play").textContent = "Pause";
  const rate = Number($("#rp-speed").value);
  const videos = replay.panes.filter((p) => p.video);
  if (videos.length) { for (const p of videos) { p.video.playbackRate = rate; p.video.play().catch(() => {}); } return; }
  // No archived video: step the skeleton on a virtual clock.
  let last = performance.now();
  const master = replay.panes[0];
  const end = master.frameTimes[master.frameTimes.length - 1];
  const tick = (now) => {
    if (!replay.playing) return;
    replay.virtual += (now - last) * 1000 * rate; last = now;
    if (replay.virtual >= end) { replay.virtual = end; drawAll(); pauseAll(); return; }
    drawAll(); replay.raf = requestAnimationFrame(tick);
  };
  replay.raf = requestAnimationFrame(tick);
}

$("#rp-play").addEventListener("click", () => (replay.playing ? pauseAll() : playAll()));
$("#rp-prev").addEventListener("click", () => stepFrames(-1));
$("#rp-next").addEventListener("click", () => stepFrames(1));
$("#rp-bottom").addEventListener("click", () => { pauseAll(); if (replay.bottom != null) seekAll(replay.bottom); });
$("#rp-speed").addEventListener("change", () => { for (const p of replay.panes) if (p.video) p.video.playbackRate = Number($("#rp-speed").value); });
document.addEventListener("keydown", (ev) => {
  if (currentView() !== "replay" || ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)) return;
  if (ev.key === "ArrowLeft" || ev.key === ",") { ev.preventDefault(); stepFrames(-1); }
  if (ev.key === "ArrowRight" || ev.key === ".") { ev.preventDefault(); stepFrames(1); }
  if (ev.key === " ") { ev.preventDefault(); replay.playing ? pauseAll() : playAll(); }
});

function makePane(data) {
  const canvas = el("canvas", { width: data.width || 640, height: data.height || 360, "aria-label": `skeleton overlay, camera ${data.camera}`, role: "img" });
  const pane = { data, canvas, video: null, mediaTime: null, frameTimes: data.frames.map((f) => f.capture_us) };
  const diffs = pane.frameTimes.slice(1).map((t, i) => t - pane.frameTimes[i]).sort((a, b) => a - b);
  pane.frameStep = diffs.length ? diffs[diffs.length >> 1] : 33367;
  const stage = el("div", { class: "stage" });
  // Fit the camera's aspect into 70 % of the screen height, so portrait and landscape both fit.
  stage.style.maxWidth = `calc(70vh * ${(data.width || 16) / (data.height || 9)})`;
  if (data.clip_url) {
    const video = el("video", { src: data.clip_url, muted: true, playsinline: true, preload: "auto", "aria-label": `video, camera ${data.camera}` });
    video.muted = true;
    pane.video = video;
    // requestVideoFrameCallback gives the exact media time of the frame being presented. While a seek is
    // under way the frame it reports is the one from before the seek (on opening, frame 0 arrives after the
    // jump to the bottom): drawing it would put the overlay back at the old frame, so it is skipped and the
    // seek's own frame draws.
    const onFrame = (_now, meta) => {
      if (!video.seeking) { pane.mediaTime = meta.mediaTime; drawPane(pane); if (pane === replay.panes[0]) drawAll(); }
      video.requestVideoFrameCallback(onFrame);
    };
    if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(onFrame);
    video.addEventListener("seeked", () => { pane.mediaTime = null; drawAll(); });
    video.addEventListener("timeupdate", () => { if (!("requestVideoFrameCallback" in video)) drawAll(); });
    video.addEventListener("loadeddata", () => { pane.canvas.dataset.ready = "1"; if (replay.bottom != null && pane === replay.panes[0]) seekAll(replay.bottom); });
    video.addEventListener("ended", () => pauseAll());
    stage.append(video, canvas);
  } else {
    stage.classList.add("novideo");
    canvas.dataset.ready = "1";
    stage.append(canvas);
  }
  const d = data.depth || {};
  const close = tooCloseReason({ verdict: data.verdict, depth: d, reasons: data.reasons });
  const el2 = el("section", { class: "pane", dataset: { camera: data.camera }, "aria-label": `camera ${data.camera}` },
    el("h3", {}, `${data.camera} — `, el("span", { class: close ? "refer-word" : null, dataset: { role: "pane-verdict" }, text: close ? "Refer to the referees" : verdictWord(data.verdict) }),
      el("span", { class: "nums" }, " margin ", el("span", { dataset: { role: "pane-margin" }, text: fmtMargin(d.margin_cm, intervalOf(d)) }), ` · conf ${fmtConf(d.confidence)}`)),
    close ? el("div", { class: "refer-word nums", dataset: { role: "pane-too-close" }, text: close }) : null,
    methodNode(d, "pane-method"),
    stage,
    data.clip_error ? el("p", { class: "dim", text: `No video: ${data.clip_error}. Showing the skeleton alone.` }) : null);
  pane.root = el2;
  return pane;
}

function drawPlot(panes) {
  const svg = $("#plot");
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const svgEl = (tag, attrs, parent = svg) => { const n = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) if (v != null) n.setAttribute(k, v); parent.append(n); return n; };
  const colours = ["#7cc4ff", "#ffb020", "#7cff7c", "#ff9ad5"];
  // Each pane's series, and the uncertainty interval of its call at the bottom frame (when the decision has one).
  const series = panes.map((p, i) => ({ p, colour: colours[i % colours.length], iv: intervalOf(p.data.depth), b: p.data.capture_us.bottom }))
    .filter((s) => s.p.data.margins.length || (s.iv && s.b != null));
  if (!series.length) { replay.plot = null; return; }
  const withIv = series.filter((s) => s.iv && s.b != null);
  const all = series.flatMap((s) => s.p.data.margins);
  const times = [...all.map((m) => m.capture_us), ...withIv.flatMap((s) => [s.b, ...(s.p.data.window_us || [])])];
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const values = [...all.map((m) => m.margin_cm), ...withIv.flatMap((s) => s.iv)];
  const lo = Math.min(-5, ...values) - 0.5, hi = Math.max(5, ...values) + 0.5;
  // A whole squat spans tens of cm, so an interval of a cm or two is a sliver on the curve: each interval
  // is drawn again on the right, magnified around zero, where a crossing cannot be missed.
  const W = 800, H = 200, pad = 6, COL = 70, insetW = withIv.length ? withIv.length * COL + 2 * pad : 0;
  const x = (t) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (W - insetW - 2 * pad);
  const y = (v) => pad + ((hi - v) / (hi - lo)) * (H - 2 * pad);
  replay.plot = { x, y };
  const line = (x1, y1, x2, y2, attrs, parent = svg) => svgEl("line", { x1, y1, x2, y2, "vector-effect": "non-scaling-stroke", ...attrs }, parent);
  // The interval as a shaded band with an error bar, caps and a tick at the central margin. Amber when it
  // crosses zero (too close to call), the camera's colour when it lies wholly on one side of it.
  const intervalMark = (g, cx, half, yv, iv, mc, colour) => {
    const c = crossesZero(iv) ? "#ffb020" : colour;
    svgEl("rect", { class: "plot-interval-band", x: cx - half, y: yv(iv[1]), width: 2 * half, height: Math.max(1, yv(iv[0]) - yv(iv[1])),
      fill: c, "fill-opacity": 0.3, stroke: c, "stroke-opacity": 0.7, "vector-effect": "non-scaling-stroke" }, g);
    line(cx, yv(iv[0]), cx, yv(iv[1]), { class: "plot-interval-bar", stroke: c, "stroke-width": 3 }, g);
    for (const v of iv) line(cx - half, yv(v), cx + half, yv(v), { stroke: c, "stroke-width": 3 }, g);
    if (mc != null) line(cx - half * 1.4, yv(mc), cx + half * 1.4, yv(mc), { class: "plot-interval-margin", stroke: colour, "stroke-width": 3 }, g);
  };
  const intervalGroup = (cls, p, iv, mc) => {
    const cross = crossesZero(iv);
    const g = svgEl("g", { class: cls, "data-camera": p.data.camera, "data-low": iv[0], "data-high": iv[1], "data-crosses-zero": cross ? "1" : "0" });
    svgEl("title", {}, g).textContent = `camera ${p.data.camera}: margin ${fmtMargin(mc, iv)} cm${cross ? " — the interval crosses zero: too close to call" : ""}`;
    return g;
  };
  // Parallel (margin 0): solid and bright, so whether an interval crosses it is plain at a glance.
  line(0, y(0), W - insetW, y(0), { id: "plot-zero", class: "zero", stroke: "#eef1f5", "stroke-width": 2 });
  series.forEach(({ p, colour, iv, b }) => {
    if (p.data.margins.length) {
      const pl = svgEl("polyline", {
        points: p.data.margins.map((m) => `${x(m.capture_us).toFixed(1)},${y(m.margin_cm).toFixed(1)}`).join(" "),
        fill: "none", stroke: colour, "stroke-width": 2, "vector-effect": "non-scaling-stroke",
      });
      svgEl("title", {}, pl).textContent = `camera ${p.data.camera}`;
    }
    const mc = p.data.depth.margin_cm;
    if (b != null && mc != null) svgEl("circle", { cx: x(b), cy: y(mc), r: 4, fill: colour });
    if (iv && b != null) intervalMark(intervalGroup("plot-interval-main", p, iv, mc), x(b), 8, y, iv, mc, colour);
  });
  if (withIv.length) {
    // The magnified inset: its own zero line, ±3 cm at least, each camera's interval in its own column.
    const ext = Math.max(3, ...withIv.flatMap((s) => s.iv.map(Math.abs))) * 1.25;
    const yz = (v) => pad + ((ext - v) / (2 * ext)) * (H - 2 * pad);
    const left = W - insetW;
    const inset = svgEl("g", { id: "plot-inset" });
    svgEl("rect", { x: left, y: 0, width: insetW, height: H, fill: "#10141a" }, inset);
    line(left, 0, left, H, { stroke: "#323a46", "stroke-width": 1 }, inset);
    line(left, yz(0), W, yz(0), { id: "plot-zero-inset", class: "zero", stroke: "#eef1f5", "stroke-width": 2 }, inset);
    withIv.forEach(({ p, colour, iv }, i) => {
      const g = intervalGroup("plot-interval", p, iv, p.data.depth.margin_cm);
      inset.append(g);
      intervalMark(g, left + pad + COL * (i + 0.5), 16, yz, iv, p.data.depth.margin_cm, colour);
    });
  }
  line(0, 0, 0, H, { id: "plot-cursor", stroke: "#ffffff", "stroke-width": 1 });
}

async function openReplay(liftId) {
  pauseAll();
  replay.panes = [];
  $("#panes").replaceChildren(el("p", { class: "dim", text: "Loading the replay…" }));
  let data;
  try { data = await api("GET", `/api/lifts/${liftId}/replay`); } catch (e) { $("#panes").replaceChildren(el("p", { class: "error", text: e.message })); return; }
  replay.lift = data.lift;
  const f = data.lift.fused || {};
  $("#replay-title").textContent = `Replay — lift ${data.lift.id}${data.lift.lifter ? ` · ${data.lift.lifter}` : ""}`;
  const sc = data.lift.hidden ? { refer: [], interval: null } : systemCall(data.lift);
  $("#replay-summary").replaceChildren(...(data.lift.hidden ? [`System call ${data.lift.hidden}.`] : sc.refer.length
    ? [el("strong", { class: "refer-word", text: "Refer to the referees" }),
      ` — ${sc.refer.map((r) => r.reason).join("; ")}${sc.interval ? `; margin ${fmtMargin(sc.depth.margin_cm, sc.interval)}` : ""}.`]
    : [`System call ${verdictWord(f.verdict)}, margin ${fmtMargin(sc.depth.margin_cm, sc.interval)}, confidence ${fmtConf(f.confidence)}.`]),
    sc.interval ? el("span", { class: "fine", text: " The interval is where the true margin lies; the plot below shows it at the bottom frame." }) : "");
  replay.panes = data.panes.map(makePane);
  replay.bottom = data.panes.find((p) => p.capture_us.bottom != null)?.capture_us.bottom ?? null;
  replay.virtual = replay.bottom ?? (replay.panes[0] && replay.panes[0].frameTimes[0]);
  $("#panes").replaceChildren(...replay.panes.map((p) => p.root));
  drawPlot(replay.panes);
  drawAll();
  const actions = $("#replay-actions");
  actions.replaceChildren(actionsFor(data.lift));
  document.body.dataset.replayReady = String(liftId);
}

// --- history, appeals, audit, admin -----------------------------------------------------------------

async function renderHistory() {
  const form = $("#history-form");
  const params = new URLSearchParams();
  for (const k of ["lifter", "attempt", "call"]) { const v = form.elements[k].value; if (v) params.set(k, v); }
  $("#h-csv").href = `/api/history.csv?${params}`;
  const [rows, agree] = await Promise.all([api("GET", `/api/lifts?${params}`), api("GET", "/api/agreement")]);
  $("#agreement").textContent = agree.compared
    ? `Shadow mode: the system agreed with the referees on ${agree.agree} of ${agree.compared} lifts (${(agree.rate * 100).toFixed(0)} %); ${agree.system_undecided} undecided.`
    : "Shadow mode: no lift has both a system call and the referees' lights yet.";
  $("#history-table tbody").replaceChildren(...rows.map((l) => el("tr", { dataset: { liftId: l.id } },
    el("td", { text: l.id }), el("td", { text: l.lifter || "—" }), el("td", { text: l.attempt_number ?? "—" }),
    ...(l.hidden ? [el("td", { text: "hidden (shadow mode)" }), el("td", { text: "—" })] : ((sc) => [el("td", { text: sc.refer.length ? "REFER (too close to call)" : verdictWord(sc.verdict) }),
      el("td", { class: "nums", text: fmtMargin(sc.depth.margin_cm, sc.interval) })])(systemCall(l))),
    el("td", { text: l.lights_majority ? verdictWord(l.lights_majority) : "—" }),
    el("td", { text: l.appeals.length ? l.appeals[l.appeals.length - 1].status : "" }),
    el("td", { text: l.result.verdict ? `${verdictWord(l.result.verdict)} (${l.result.by})` : "—" }),
    el("td", {}, el("a", { href: `#replay/${l.id}`, text: "replay" })))));
}
$("#history-form").addEventListener("submit", (ev) => { ev.preventDefault(); renderHistory(); });

async function renderAppeals() {
  const list = await api("GET", "/api/appeals");
  const box = $("#appeals");
  if (!list.length) { box.replaceChildren(el("p", { class: "empty", text: "No appeals." })); return; }
  const lifts = await Promise.all(list.map((a) => api("GET", `/api/lifts/${a.lift_id}`).catch(() => null)));
  box.replaceChildren(...list.map((a, i) => {
    const lift = lifts[i] && lifts[i].hidden ? null : lifts[i];  // shadow mode: no call to show yet
    const msg = el("span", { class: "error", role: "alert" });
    const row = el("article", { class: "lift", dataset: { appealId: a.id, status: a.status } },
      el("div", { class: "lightbox" }, lift ? lightNode(lift.fused.verdict, "system call") : null, el("span", { class: `badge ${a.status}`, text: a.status })),
      el("div", { class: "stack" },
        el("h3", { text: `Appeal ${a.id} — ${a.lifter}, lift ${a.lift_id}` }),
        el("div", { text: `Filed by ${a.filed_by}: ${a.reason || "(no reason given)"}` }),
        lift ? el("div", { class: "nums" }, ((sc) => `System: ${sc.refer.length ? "refer to the referees (too close to call)" : verdictWord(sc.verdict)}, margin ${fmtMargin(sc.depth.margin_cm, sc.interval)}, confidence ${fmtConf(sc.confidence)} · referees: `)(systemCall(lift)),
          lift.lights ? `${lightWord(lift.lights.left)} / ${lightWord(lift.lights.head)} / ${lightWord(lift.lights.right)}${lift.split ? " (2–1)" : ""}` : "not entered") : null,
        el("a", { href: `#replay/${a.lift_id}`, text: "Open replay" }),
        a.status !== "pending" ? el("div", { text: `Decided by ${a.decided_by}: ${a.status}${a.note ? ` — ${a.note}` : ""}` }) : null,
        juryVotes(a, lift, msg),  // jury.js: each member's vote and reason; two that agree decide
        msg));
    return row;
  }));
}

$("#audit-verify").addEventListener("click", async () => {
  const res = await fetch("/api/audit/verify", { credentials: "same-origin" });
  const r = await res.json();
  $("#audit-result").textContent = r.ok ? `Chain intact: ${r.entries} entries verified.` : `TAMPERING DETECTED at entry ${r.first_bad_id}: ${r.problem}`;
  $("#audit-result").className = r.ok ? "" : "error";
});

async function renderAudit() {
  const rows = await api("GET", "/api/audit?limit=1000");
  $("#audit-table tbody").replaceChildren(...rows.reverse().map((r) => el("tr", {},
    el("td", { text: r.id }), el("td", { text: new Date(r.at_us / 1000).toLocaleString() }), el("td", { text: `${r.actor} (${r.role})` }),
    el("td", { text: r.action }), el("td", { text: r.target }), el("td", { class: "nums", text: JSON.stringify(r.details) }))));
}

function formJson(form) {
  const out = {};
  for (const e of form.elements) if (e.name) out[e.name] = e.type === "number" ? Number(e.value) : (e.value === "" ? null : e.value);
  return out;
}
for (const [id, path] of [["#f-meet", "/api/meets"], ["#f-platform", "/api/platforms"], ["#f-camera", "/api/cameras"], ["#f-user", "/api/users"]]) {
  $(id).addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { const r = await api("POST", path, formJson(ev.target)); $("#admin-msg").textContent = `Saved: ${JSON.stringify(r)}`; $("#admin-msg").className = ""; if (id === "#f-user") ev.target.reset(); renderAdmin(); }
    catch (e) { $("#admin-msg").textContent = e.message; $("#admin-msg").className = "error"; }
  });
}

async function renderAdmin() {
  const [users, config] = await Promise.all([api("GET", "/api/users"), api("GET", "/api/config")]);
  $("#users").replaceChildren(...users.map((u) => el("li", {}, `${u.name} — ${u.role.replace("_", " ")}${u.lifter ? ` (for ${u.lifter})` : ""} `,
    u.name !== app.me.name ? el("button", { type: "button", onclick: async () => { await api("POST", `/api/users/${encodeURIComponent(u.name)}/disable`); renderAdmin(); }, text: "disable" }) : null)));
  $("#config").textContent = JSON.stringify(config, null, 2);
  $("#shadow-meets").replaceChildren(...config.meets.map((m) => {
    const box = el("input", { type: "checkbox", id: `shadow-${m.name}`, checked: Boolean(m.shadow), dataset: { meet: m.name } });
    box.addEventListener("change", async () => {
      try { await api("PATCH", `/api/meets/${encodeURIComponent(m.name)}`, { shadow: box.checked }); renderAdmin(); }
      catch (e) { $("#admin-msg").textContent = e.message; $("#admin-msg").className = "error"; }
    });
    return el("li", {}, box, el("label", { for: `shadow-${m.name}`, text: ` ${m.name}: shadow mode (calls hidden from all but the organizer until the official lights)` }));
  }));
  await renderAgreement();
  await renderServices();
}

// The supervisor's view of each service (under `meetvar demo`): a restart is healed, but the organizer
// should see it happened, and a failed service (e.g. a refused meet-software password) needs a person.
async function renderServices() {
  const h = await api("GET", "/api/health");
  const services = Object.entries(h.services || {});
  $("#services-note").textContent = h.services == null ? "Not run under meetvar demo's supervisor: see your orchestrator (compose, Kubernetes) for restarts."
    : `${services.reduce((n, [, s]) => n + s.restarts, 0)} restart(s) in all; refreshed every 5 s.`;
  const exitText = (code) => code == null ? "" : code < 0 ? `killed by signal ${-code}` : `exit ${code}`;
  $("#services tbody").replaceChildren(...services.map(([name, s]) => el("tr", { dataset: { service: name, state: s.state }, class: s.state === "failed" || s.state === "backoff" ? "warn" : "" },
    el("th", { scope: "row", text: name }), el("td", { text: s.state }), el("td", { class: "nums", text: String(s.restarts) }),
    el("td", { text: s.up_since || "" }), el("td", { text: `${exitText(s.last_exit)}${s.last_exit_at ? ` at ${s.last_exit_at}` : ""}` }))));
}
setInterval(() => { if (currentView() === "admin" && app.me) renderServices().catch(() => {}); }, 5000);

// The agreement report of shadow mode: the system's calls against the official lights.
async function renderAgreement() {
  const r = await api("GET", "/api/agreement");
  const k = r.kappa;
  $("#agreement-kappa").textContent = k.value == null ? `Cohen's κ: not defined yet (${k.n} lifts with both a call and the official lights).`
    : `Cohen's κ = ${k.value.toFixed(3)} (${k.ci95 ? `95% CI ${k.ci95[0].toFixed(3)} to ${k.ci95[1].toFixed(3)}` : "no interval: one side gave one answer throughout"}, n = ${k.n}); agreed on ${r.agree} of ${r.compared}; ${r.system_undecided} undecided; ${r.pending} awaiting lights.`;
  const word = { good: "good", no_lift: "no lift", undecided: "undecided" };
  $("#agreement-table tbody").replaceChildren(...["good", "no_lift", "undecided"].map((s) => el("tr", {},
    el("th", { scope: "row", text: `system ${word[s]}` }),
    ...["good", "no_lift"].map((o) => el("td", { class: "nums", dataset: { cell: `${s}/${o}` }, text: String(r.confusion[s][o]) })))));
  $("#agreement-disagreements").replaceChildren(...(r.disagreements.length ? r.disagreements.map((d) => el("li", {},
    `Lift ${d.lift_id}${d.lifter ? ` — ${d.lifter}` : ""}: system ${word[d.system]}, referees ${word[d.official]} `, el("a", { href: `#replay/${d.lift_id}`, text: "replay" })))
    : [el("li", { text: "No disagreements." })]));
}

// --- routing -----------------------------------------------------------------------------------------

function currentView() { return (location.hash.slice(1).split("/")[0] || "live").split("=")[0]; }

async function route() {
  let view = currentView();
  if (view === "login" && location.hash.startsWith("#login=")) {
    // A one-time login link (printed by `meetvar demo` / `meetvar users login-link`): the token sits in the
    // fragment, so it never reaches a server log or a Referer; it is posted once and removed from the address.
    const token = location.hash.slice("#login=".length);
    history.replaceState(null, "", "/#live");
    try { await api("POST", "/api/login/token", { token }); } catch (e) { $("#login-error").textContent = e.message; }
    return afterLogin();
  }
  if (!app.me && view !== "login") view = "login";
  if (app.me && app.me.id !== 0 && view === "login") view = "live";
  for (const s of $$(".view")) s.hidden = s.id !== `view-${view}`;
  for (const a of $$("#nav a")) a.classList.toggle("active", a.dataset.view === view);
  try {
    if (view === "live") renderLive();
    else if (view === "replay") await openReplay(Number(location.hash.split("/")[1]));
    else if (view === "history") await renderHistory();
    else if (view === "appeals") await renderAppeals();
    else if (view === "audit") await renderAudit();
    else if (view === "admin") await renderAdmin();
  } catch (e) {
    if (e.status === 401) { app.me = null; location.hash = "#login"; }
    else announce(e.message);
  }
  document.body.dataset.view = view;
}

window.addEventListener("hashchange", () => { if (currentView() !== "replay") pauseAll(); route(); });

(async function start() {
  if (location.hash.startsWith("#login=")) return route();
  await loadMe();
  if (app.me) connect(true);
  route();
})();
