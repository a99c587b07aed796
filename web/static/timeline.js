// The perception timeline: per round, the sampled frame times (ticks), the densely sampled spans (shade) and the
// time segments the round relied on (buttons that seek the player); the last row is the answer's grounding. A video
// with subtitles or captions gets a row of the lines the rounds' prompts carried (buttons that seek to each line);
// their text is untrusted and only ever set as text, never as markup.

export const seconds = (t) => `${Number(t).toFixed(1)} s`;
export const span = ([start, end]) => `${Number(start).toFixed(1)}–${Number(end).toFixed(1)} s`;

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of [].concat(children)) node.append(child);
  return node;
}

const pct = (t, duration) => `${Math.min(100, Math.max(0, (100 * t) / duration)).toFixed(3)}%`;

/** A button that seeks ``player`` to a segment's start. */
export function segmentButton(player, segment, label, className = "seg") {
  const [start] = segment;
  const button = el("button", {
    type: "button", className, textContent: span(segment),
    title: `${label}: ${span(segment)}. Play from ${seconds(start)}.`,
  });
  button.setAttribute("aria-label", `${label}: ${span(segment)}, play from ${seconds(start)}`);
  button.dataset.start = String(start);
  button.addEventListener("click", () => {
    player.currentTime = Number(start);
    document.querySelectorAll(".seg.current").forEach((b) => b.classList.remove("current"));
    button.classList.add("current");
  });
  return button;
}

function track(player, duration, { ticks = [], dense = [], segments = [], label, final = false }) {
  const lane = el("div", { className: "tl-track" });
  for (const [start, end] of dense) {
    lane.append(el("span", { className: "dense", style: `left:${pct(start, duration)};width:${pct(end - start, duration)}` }));
  }
  for (const t of ticks) lane.append(el("span", { className: "tick", style: `left:${pct(t, duration)}` }));
  for (const segment of segments) {
    const button = segmentButton(player, segment, label, final ? "seg final" : "seg");
    button.style.left = pct(segment[0], duration);
    button.style.width = pct(Math.max(segment[1] - segment[0], 0), duration);
    lane.append(button);
  }
  lane.append(el("span", { className: "playhead", ariaHidden: "true" }));
  return lane;
}

/** The distinct subtitle lines any round's prompt carried, in time order. */
export function subtitleLines(transcript) {
  const seen = new Map();
  for (const round of transcript?.rounds || []) {
    for (const line of round.lines || []) seen.set(`${line.start}|${line.end}|${line.text}`, line);
  }
  return [...seen.values()].sort((a, b) => a.start - b.start || a.end - b.end);
}

function lineButton(player, line, duration) {
  const button = el("button", {
    type: "button", className: "sub", textContent: line.text, title: `${span([line.start, line.end])}: ${line.text}`,
  });
  button.setAttribute("aria-label", `Subtitle at ${span([line.start, line.end])}: ${line.text}`);
  button.style.left = pct(line.start, duration);
  button.style.width = pct(Math.max(line.end - line.start, 0), duration);
  button.addEventListener("click", () => { player.currentTime = Number(line.start); });
  return button;
}

/** Draws ``perception`` (the final chunk's field) into ``rows``; returns a function that moves the playheads. */
export function renderTimeline(rows, player, perception) {
  const duration = perception?.video?.duration_s || player.duration || 0;
  rows.replaceChildren();
  if (!duration) return () => {};
  for (const round of perception.rounds || []) {
    const label = `Round ${round.round}`;
    const count = (round.frame_times || []).length;
    rows.append(el("div", { className: "tl-row" }, [
      el("span", { className: "tl-label", textContent: label, title: `${count} frames` }),
      track(player, duration, {
        ticks: round.frame_times, dense: round.dense_segments, segments: round.segments || [], label,
      }),
    ]));
  }
  const lines = subtitleLines(perception.transcript);
  if (lines.length) {
    const lane = el("div", { className: "tl-track subs" });
    for (const line of lines) lane.append(lineButton(player, line, duration));
    lane.append(el("span", { className: "playhead", ariaHidden: "true" }));
    const source = { captions: "the page's captions", asr: "the transcribed speech" }[perception.transcript.source]
      || "the video's subtitles";
    rows.append(el("div", { className: "tl-row" }, [
      el("span", { className: "tl-label", textContent: "Subtitles", title: `Lines from ${source} in the prompts` }),
      lane,
    ]));
  }
  const grounding = perception.segments || [];
  rows.append(el("div", { className: "tl-row final-row" }, [
    el("span", { className: "tl-label", textContent: "Answer" }),
    track(player, duration, { segments: grounding, label: "Answer", final: true }),
  ]));
  rows.append(el("span"), el("div", { className: "tl-axis", ariaHidden: "true" }, [
    el("span", { textContent: "0 s" }), el("span", { textContent: seconds(duration) }),
  ]));
  if (!grounding.length) {
    rows.append(el("p", { className: "hint", textContent: "The answer named no time segments." }));
  }
  const heads = [...rows.querySelectorAll(".playhead")];
  const move = () => {
    const left = pct(player.currentTime || 0, duration);
    for (const head of heads) head.style.left = left;
  };
  move();
  return move;
}
