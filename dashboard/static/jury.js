// The rulebook's officials in the page (loaded after app.js; uses its el, api, can, app, $, $$):
// the head referee's Squat / Rack buttons, lights that lock once official (the organizer corrects,
// with a reason), appeals that name a roster lifter, the jury's votes, and the organizer's roster.
"use strict";

const jury = {
  rosters: new Map(),     // meet -> [{name, division, source}] (null while loading)
  sent: new Map(),        // "meet/platform" -> {signal, at} the head referee's last signal from this tablet
  platformsLoaded: false,
};
app.jury = jury;

const lightsComplete = (l) => !!l && ["left", "head", "right"].every((k) => l[k] === "good" || l[k] === "bad");
const hhmmss = (us) => new Date(us / 1000).toLocaleTimeString();

// --- the head referee's signals ---------------------------------------------------------------------

// Platforms on record get a box on the tablet before their first meet.state.
function platformsForTablet() {
  if (jury.platformsLoaded || !can("head_referee")) return;
  jury.platformsLoaded = true;
  api("GET", "/api/platforms").then((list) => {
    for (const p of list) {
      const key = `${p.meet}/${p.name}`;
      if (!app.states.has(key)) app.states.set(key, { meet: p.meet, platform: p.name });
    }
    scheduleRender();
  }).catch(() => { jury.platformsLoaded = false; });
}

function signalButtons(s) {
  if (!can("head_referee")) return null;
  const key = `${s.meet}/${s.platform}`;
  const last = jury.sent.get(key);
  const status = el("span", { class: "nums", role: "status", dataset: { role: "signal-status" },
    text: last ? (last.error ? "" : `${last.signal === "squat" ? "Squat" : "Rack"} sent ${hhmmss(last.at)}`) : "" });
  const error = el("span", { class: "error", role: "alert", dataset: { role: "signal-error" }, text: last && last.error ? last.error : "" });
  const send = (signal) => async () => {
    try {
      const r = await api("POST", `/api/platforms/${encodeURIComponent(s.meet)}/${encodeURIComponent(s.platform)}/signal`, { signal });
      jury.sent.set(key, { signal, at: r.at_us });
      announce(`${signal === "squat" ? "Squat" : "Rack"} signal sent`);
    } catch (e) { jury.sent.set(key, { signal, error: e.message }); }
    renderPlatforms();
  };
  return el("div", { class: "signals", role: "group", "aria-label": `head referee's signals, ${s.platform}` },
    el("button", { type: "button", class: "signal squat", dataset: { role: "signal-squat" }, onclick: send("squat"), text: "Squat" }),
    el("button", { type: "button", class: "signal rack", dataset: { role: "signal-rack" }, onclick: send("rack"), text: "Rack" }),
    status, error);
}

// --- lights: entered once, then locked; the organizer corrects with a reason ----------------------------

function lightsForm(lift, guarded) {
  const sel = (prefix, name) => el("select", { name, id: `${prefix}-${name}-${lift.id}`, "aria-label": `${name} light` },
    el("option", { value: "", text: "—" }), el("option", { value: "good", text: "white" }), el("option", { value: "bad", text: "red" }));
  const official = lightsComplete(lift.lights);
  if (!official && can("head_referee", "side_referee", "organizer")) {
    // Lights still empty can be filled; a light once given is shown and fixed.
    const form = el("form", { class: "lights-form", dataset: { role: "lights-form" } }, el("fieldset", {}, el("legend", { text: "Referees' lights" }),
      el("label", { for: `l-left-${lift.id}`, text: "L" }), sel("l", "left"), el("label", { for: `l-head-${lift.id}`, text: "H" }), sel("l", "head"),
      el("label", { for: `l-right-${lift.id}`, text: "R" }), sel("l", "right"), el("button", { type: "submit", text: "Save lights" })));
    for (const k of ["left", "head", "right"]) if (lift.lights && lift.lights[k]) { const s = $(`select[name=${k}]`, form); s.value = lift.lights[k]; s.disabled = true; }
    form.addEventListener("submit", guarded(async () => {
      const v = (k) => { const s = $(`select[name=${k}]`, form); return s.disabled ? null : s.value || null; };
      await api("POST", `/api/lifts/${lift.id}/lights`, { left: v("left"), head: v("head"), right: v("right") });
    }));
    return form;
  }
  if (official && can("organizer")) {
    const reason = el("input", { id: `lc-r-${lift.id}`, name: "reason", required: true });
    const form = el("form", { class: "lights-form", dataset: { role: "correction-form" } }, el("fieldset", {}, el("legend", { text: "Correct official lights" }),
      el("label", { for: `lc-left-${lift.id}`, text: "L" }), sel("lc", "left"), el("label", { for: `lc-head-${lift.id}`, text: "H" }), sel("lc", "head"),
      el("label", { for: `lc-right-${lift.id}`, text: "R" }), sel("lc", "right"),
      el("label", { for: `lc-r-${lift.id}`, text: "Reason" }), reason, el("button", { type: "submit", text: "Correct lights" })));
    for (const k of ["left", "head", "right"]) $(`select[name=${k}]`, form).value = lift.lights[k];
    form.addEventListener("submit", guarded(async () => {
      const v = (k) => $(`select[name=${k}]`, form).value || null;
      await api("POST", `/api/lifts/${lift.id}/lights/correction`, { left: v("left"), head: v("head"), right: v("right"), reason: reason.value });
    }));
    return form;
  }
  if (official && can("head_referee", "side_referee")) {
    return el("span", { class: "dim", dataset: { role: "lights-locked" }, text: "Lights official: locked (the organizer corrects)" });
  }
  return null;
}

// --- appeals name a roster lifter ---------------------------------------------------------------------------

function rosterOf(meet) {
  if (!jury.rosters.has(meet)) {
    jury.rosters.set(meet, null);
    api("GET", `/api/meets/${encodeURIComponent(meet)}/roster`)
      .then((list) => { jury.rosters.set(meet, list); scheduleRender(); })
      .catch(() => jury.rosters.delete(meet));
  }
  return jury.rosters.get(meet);
}

function appealForm(lift, guarded) {
  const roster = rosterOf(lift.meet) || [];
  const mine = (app.me.lifter || "").toLowerCase();
  const select = el("select", { id: `a-l-${lift.id}`, name: "lifter", dataset: { role: "appeal-lifter" }, required: true },
    el("option", { value: "", text: roster.length ? "— lifter —" : "no roster yet" }),
    roster.map((r) => el("option", { value: r.name, text: r.division ? `${r.name} (${r.division})` : r.name })));
  const own = roster.find((r) => r.name.toLowerCase() === mine);
  if (own) select.value = own.name;
  const form = el("form", { dataset: { role: "appeal-form" } }, el("fieldset", {}, el("legend", { text: "Video appeal" }),
    el("label", { for: `a-l-${lift.id}`, text: "Lifter" }), select,
    el("label", { for: `a-r-${lift.id}`, text: "Reason" }), el("input", { id: `a-r-${lift.id}`, name: "reason" }),
    el("button", { type: "submit", text: "File appeal" })));
  form.addEventListener("submit", guarded(async () => {
    await api("POST", "/api/appeals", { lift_id: lift.id, lifter: select.value || null, reason: $("input[name=reason]", form).value });
  }));
  return form;
}

// --- the jury of three: a vote and a reason each; two that agree decide -------------------------------------

function juryVotes(a, lift, msg) {
  const votes = a.votes || [];
  const list = el("ul", { class: "votes", dataset: { role: "votes" } },
    votes.map((v) => el("li", { dataset: { juror: v.juror, vote: v.vote } }, el("b", { text: v.juror }), ` votes ${v.vote}: ${v.reason}`)));
  const box = el("div", { class: "stack" }, el("div", { class: "dim", text: `Jury votes (${votes.length} of 3; two that agree decide)` }), list);
  const voted = app.me && votes.some((v) => v.juror === app.me.name);
  if (a.status === "pending" && can("jury") && !voted) {
    const reason = el("input", { id: `j-reason-${a.id}`, name: "reason", required: true });
    const vote = (v) => async () => {
      msg.textContent = "";
      try { await api("POST", `/api/appeals/${a.id}/vote`, { vote: v, reason: reason.value }); renderAppeals(); } catch (e) { msg.textContent = e.message; }
    };
    const reversible = lift && lift.split;
    box.append(el("div", { class: "actions" }, el("label", { for: `j-reason-${a.id}`, text: "Reason for your vote" }), reason,
      el("button", { type: "button", dataset: { role: "reverse" }, disabled: !reversible, title: reversible ? null : "only a 2–1 decision can be reversed", onclick: vote("reverse"), text: "Vote reverse" }),
      el("button", { type: "button", dataset: { role: "uphold" }, onclick: vote("uphold"), text: "Vote uphold" })));
  } else if (a.status === "pending" && voted) {
    box.append(el("div", { class: "dim", dataset: { role: "voted" }, text: "You have voted; waiting for the other jury members." }));
  }
  return box;
}

// --- the organizer's roster ------------------------------------------------------------------------------------

function rosterMessage(text, error) { $("#roster-msg").textContent = text; $("#roster-msg").className = error ? "error" : ""; }

$("#f-roster").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const meet = $("#r-meet").value.trim();
  const names = $("#r-names").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const file = $("#r-file").files[0];
  try {
    let r;
    if (file) {
      const body = new FormData();
      body.append("file", file);
      const res = await fetch(`/api/meets/${encodeURIComponent(meet)}/roster/openlifter`, { method: "POST", body, credentials: "same-origin" });
      r = await res.json();
      if (!res.ok) throw new Error(typeof r.detail === "string" ? r.detail : JSON.stringify(r.detail));
    }
    if (names.length) r = await api("POST", `/api/meets/${encodeURIComponent(meet)}/roster`, { lifters: names });
    if (!r) throw new Error("give names (one a line) or an OpenLifter file");
    jury.rosters.delete(meet);
    rosterMessage(`Roster of ${meet}: ${r.lifters.length} lifters (${r.added} new).`, false);
    $("#roster-list").replaceChildren(...r.lifters.map((l) => el("li", { text: `${l.name}${l.division ? ` (${l.division})` : ""} · ${l.source}` })));
    ev.target.reset(); $("#r-meet").value = meet;
  } catch (e) { rosterMessage(e.message, true); }
});
