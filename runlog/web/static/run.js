// The run page: the run tree with each run's details, the streamed text of model
// runs, and a timeline, all folded from the run's events.
//
// Loading reads /api/runs/{id} (statuses, including "abandoned", which no event
// carries) and every event through /api/runs/{id}/events; then /api/stream pushes
// new events as they are committed. The page applies each event exactly once: the
// cursor is the last seq applied, the stream starts after it, and EventSource resumes
// after the last id it saw (Last-Event-ID) when it reconnects.
"use strict";

(function () {
  // The id as typed (a unique prefix or suffix works); the full id once loaded.
  let runId = decodeURIComponent(window.location.pathname.split("/").pop());
  const runs = new Map();      // run id -> record (see newRecord)
  const order = [];            // run ids in start order
  const treeRoot = document.getElementById("tree");
  const timeline = document.getElementById("timeline");
  const dirty = new Set();
  let cursor = 0;              // last seq applied
  let liveFrom = Infinity;     // events with a larger seq arrived live
  let frame = null;
  let source = null;
  let ticker = null;
  // Readable inputs/outputs (view nodes from /api/runs/{id}/content), per run id; the
  // events keep the stored form, which the "stored JSON" toggle shows instead.
  const views = new Map();
  let contentTimer = null;
  const rawToggle = document.getElementById("raw");
  const scrubEvents = [];      // {seq, time, kind, channel, runId} of every applied event
  let loaded = false;          // the first load (events and content) is done
  const scrub = document.getElementById("scrub");
  const statePanel = document.getElementById("state");
  let scrubAt = null;          // index into scrubEvents shown; null: follow the latest
  let scrubTimer = null;
  let scrubAsked = 0;          // answers to older requests are dropped

  function newRecord(id) {
    return {
      id, parentId: null, name: "", type: "", tags: [], metadata: {},
      startUs: null, endUs: null, ended: false, abandoned: false, error: null, cycle: false,
      inputs: undefined, outputs: undefined, text: "", textShown: 0, chunks: [],
      tokens: 0, firstTokenUs: null, firstChunkUs: null, custom: [], events: 0,
      node: null, parts: {}, row: null,
    };
  }

  function record(id) {
    let rec = runs.get(id);
    if (!rec) {
      rec = newRecord(id);
      runs.set(id, rec);
      order.push(id);
    }
    return rec;
  }

  function status(rec) {
    if (rec.ended) return rec.error ? "error" : "ok";
    return rec.abandoned ? "abandoned" : "running";
  }

  // ------------------------------------------------------------------ state

  function fromInfo(info) {
    const rec = record(info.run_id);
    rec.parentId = info.parent_id;
    rec.name = info.name;
    rec.type = info.run_type;
    rec.tags = info.tags;
    rec.metadata = info.metadata;
    rec.abandoned = info.status === "abandoned";
    rec.cycle = Boolean(info.parent_cycle);
    dirty.add(rec.id);
  }

  // Counters for whoever debugs the page (and the browser tests).
  const stats = {applied: 0, duplicates: 0};
  window.runlogStats = stats;

  function apply(event) {
    if (event.seq <= cursor) {  // never twice (the server guarantees it too)
      stats.duplicates += 1;
      return;
    }
    stats.applied += 1;
    cursor = event.seq;
    scrubEvents.push({seq: event.seq, time: RL.num(event.time), kind: event.kind,
                      channel: event.channel || null, runId: event.run_id});
    if (event.kind !== "stream") scheduleContent(event.run_id);
    const rec = record(event.run_id);
    rec.events += 1;
    if (event.seq > liveFrom && rec.abandoned && !rec.ended) rec.abandoned = false;
    if (event.kind === "start") {
      rec.parentId = event.parent_id;
      rec.name = event.name;
      rec.type = event.run_type;
      rec.tags = event.tags;
      rec.metadata = event.metadata;
      rec.startUs = RL.num(event.time);
      rec.inputs = event.data;
    } else if (event.kind === "stream") {
      const channel = event.channel || "output";
      if (channel === "token") {
        rec.tokens += 1;
        if (rec.firstTokenUs === null) rec.firstTokenUs = RL.num(event.time);
        const token = event.data && event.data.token;
        if (typeof token === "string") rec.text += token;
      } else if (channel === "custom") {
        rec.custom.push({time: RL.num(event.time), name: event.data && event.data.name,
                         data: event.data && event.data.data});
      } else {
        if (rec.firstChunkUs === null) rec.firstChunkUs = RL.num(event.time);
        if (typeof event.data === "string") rec.text += event.data;
        else rec.chunks.push(event.data);
      }
    } else if (event.kind === "end") {
      rec.ended = true;
      rec.abandoned = false;
      rec.endUs = RL.num(event.time);
      rec.outputs = event.data;
      rec.error = event.error || null;
      if ("inputs" in event) rec.inputs = event.inputs;
    }
    dirty.add(rec.id);
  }

  // True when the run's chain of parents loops back (only a damaged or forged store
  // has such runs; the server marks those it knows of as parent_cycle). Such a run is
  // shown at the top of the tree, marked, and no walk up its parents follows the loop.
  function inCycle(rec) {
    if (rec.cycle) return true;
    const seen = new Set();
    let cur = rec;
    while (cur && cur.parentId && cur.id !== runId) {
      if (seen.has(cur.id)) return true;
      seen.add(cur.id);
      cur = runs.get(cur.parentId);
    }
    return false;
  }

  // Time to first token: the first token event, else the first output chunk.
  function firstOutputUs(rec) {
    return rec.firstTokenUs !== null ? rec.firstTokenUs : rec.firstChunkUs;
  }

  function durationMs(rec, nowUs) {
    if (rec.startUs === null) return null;
    const end = rec.ended ? rec.endUs : (rec.abandoned ? null : nowUs);
    return end === null ? null : (end - rec.startUs) / 1000;
  }

  // ------------------------------------------------------------------ tree

  // One labelled box inside a run's body; hidden while it has nothing to show.
  function box(key, title, preClass) {
    const body = RL.el("pre", {className: `value ${preClass || ""}`});
    const node = RL.el("div", {className: `section section-${key}`, hidden: true},
                       RL.el("h4", {}, title), body);
    return {node, body, title: node.firstChild};
  }

  function fill(part, value) {
    part.node.hidden = RL.isEmpty(value);
    if (!part.node.hidden) part.body.textContent = RL.show(value);
  }

  // Inputs and outputs: readable (messages, prompts, documents) once the server has
  // sent their view, the stored JSON until then or with the toggle on.
  function fillValue(part, stored, view) {
    part.node.hidden = RL.isEmpty(stored);
    if (part.node.hidden) return;
    const readable = view !== undefined && !rawToggle.checked;
    const key = readable ? view : stored;
    if (part.shown === key && part.readable === readable) return;
    part.shown = key;
    part.readable = readable;
    part.body.replaceChildren(readable ? RL.content(view)
      : RL.el("pre", {className: "value"}, RL.show(stored)));
  }

  function contentBox(key, title) {
    const body = RL.el("div", {className: "content"});
    const node = RL.el("div", {className: `section section-${key}`, hidden: true},
                       RL.el("h4", {}, title), body);
    return {node, body, title: node.firstChild};
  }

  // The first load asks for the whole subtree; later, only for the runs that started
  // or ended since (each read by its two events on the server, whatever it streamed).
  const contentWanted = new Set();

  async function loadContent() {
    contentTimer = null;
    const only = new URLSearchParams([...contentWanted].map((id) => ["run", id]));
    contentWanted.clear();
    try {
      const data = await RL.getJSON(
        `/api/runs/${encodeURIComponent(runId)}/content${loaded ? `?${only}` : ""}`);
      for (const [id, view] of Object.entries(data.runs)) {
        views.set(id, view);
        dirty.add(id);
      }
      schedule();
    } catch (err) {
      RL.showError(err.message);
    }
  }

  // Starts and ends change what is readable; ask once for a burst of them.
  function scheduleContent(id) {
    if (!loaded) return;
    contentWanted.add(id);
    if (contentTimer === null) contentTimer = setTimeout(loadContent, 250);
  }

  function buildNode(rec) {
    const name = RL.el("span", {className: "run-name"});
    const type = RL.el("span", {className: "run-type"});
    const badge = RL.el("span", {className: "status"});
    const meta = RL.el("span", {className: "run-meta"});
    const summary = RL.el("summary", {}, name, type, badge, meta);
    const parts = {
      stream: box("stream", "Streamed output", "stream"),
      chunks: box("chunks", "Output chunks"),
      error: box("error", "Error", "error-box"),
      inputs: contentBox("inputs", "Inputs"),
      outputs: contentBox("outputs", "Outputs"),
      custom: box("custom", "Custom events"),
    };
    const metaBody = RL.el("pre", {className: "value"});
    const metaBox = RL.el("details", {className: "metadata", hidden: true},
                          RL.el("summary", {}, "metadata"), metaBody);
    const tags = RL.el("span", {className: "tags"});
    const facts = RL.el("div", {className: "facts"});
    const body = RL.el("div", {className: "run-body"},
      parts.stream.node, parts.chunks.node, parts.error.node,
      RL.el("div", {className: "io"}, parts.inputs.node, parts.outputs.node),
      parts.custom.node, facts, metaBox);
    const children = RL.el("div", {className: "children"});
    const details = RL.el("details", {className: "run", "data-run-id": rec.id},
                          summary, body, children);
    // Open the run the page is about and the model runs; the rest start collapsed.
    const isModel = rec.type === "llm" || rec.type === "chat_model";
    details.open = rec.id === runId || isModel;
    rec.node = {details, name, type, badge, meta, body, children, parts, metaBox, metaBody,
                tags, facts};
    const parent = rec.parentId && runs.get(rec.parentId);
    const looped = inCycle(rec);
    if (looped) {
      rec.cycle = true;
      summary.append(RL.el("span", {className: "cycle-mark",
                                    title: "its chain of parent runs loops back"},
                           "parent cycle"));
    }
    const nested = parent && parent.node && parent !== rec && rec.id !== runId && !looped;
    (nested ? parent.node.children : treeRoot).append(details);
  }

  function fact(label, value) {
    return RL.el("span", {className: "fact"}, RL.el("span", {className: "muted"}, label), value);
  }

  function updateNode(rec, nowUs) {
    if (!rec.node) buildNode(rec);
    const n = rec.node;
    const st = status(rec);
    n.details.dataset.status = st;
    n.name.textContent = rec.name;
    n.type.textContent = rec.type;
    n.badge.textContent = st;
    n.badge.className = `status status-${st}`;
    const ms = durationMs(rec, nowUs);
    const first = firstOutputUs(rec);
    const ttft = first !== null && rec.startUs !== null
      ? RL.fmtDuration((first - rec.startUs) / 1000) : null;
    const bits = [];
    if (ms !== null) bits.push(RL.fmtDuration(ms) + (st === "running" ? "…" : ""));
    if (rec.tokens) bits.push(`${rec.tokens} tokens`);
    if (ttft !== null) bits.push(`TTFT ${ttft}`);
    const used = (views.get(rec.id) || {}).usage;
    if (used && !RL.isEmpty(used)) bits.push(`usage ${RL.usageText(used)}`);
    if (rec.error && !n.details.open) bits.push(`${rec.error.type}: ${rec.error.message}`);
    n.meta.textContent = bits.join(" · ");

    // Streamed text grows by appending only what is new.
    const stream = n.parts.stream;
    if (rec.text.length > rec.textShown) {
      stream.node.hidden = false;
      stream.body.append(document.createTextNode(rec.text.slice(rec.textShown)));
      rec.textShown = rec.text.length;
    }
    stream.body.classList.toggle("growing", st === "running");
    n.parts.chunks.title.textContent = `Output chunks (${rec.chunks.length})`;
    fill(n.parts.chunks, rec.chunks.length ? rec.chunks : null);
    fill(n.parts.error, rec.error ? (rec.error.traceback
      ? `${rec.error.type}: ${rec.error.message}\n\n${rec.error.traceback}`
      : `${rec.error.type}: ${rec.error.message}`) : null);
    const view = views.get(rec.id) || {};
    fillValue(n.parts.inputs, rec.inputs, view.inputs);
    fillValue(n.parts.outputs, rec.ended ? rec.outputs : null, view.outputs);
    fill(n.parts.custom, rec.custom.length ? rec.custom : null);

    n.tags.replaceChildren(...rec.tags.map((t) => RL.el("span", {className: "tag"}, t)));
    n.facts.replaceChildren(
      fact("started ", RL.fmtTime(rec.startUs)),
      rec.ended ? fact("ended ", RL.fmtTime(rec.endUs)) : fact("", st),
      ms === null ? "" : fact("duration ", RL.fmtDuration(ms)),
      ttft === null ? "" : fact("time to first token ", ttft),
      fact("events ", String(rec.events)),
      rec.tags.length ? n.tags : "",
      RL.el("code", {className: "muted run-id"}, rec.id));
    const hasMeta = !RL.isEmpty(rec.metadata);
    n.metaBox.hidden = !hasMeta;
    if (hasMeta) {
      n.metaBox.firstChild.textContent = `metadata (${Object.keys(rec.metadata).length})`;
      n.metaBody.textContent = RL.show(rec.metadata);
    }
  }

  // ------------------------------------------------------------------ timeline

  function depthOf(rec) {
    if (rec.cycle) return 0;
    let depth = 0;
    let cur = rec;
    const seen = new Set();
    while (cur && cur.parentId && cur.id !== runId && runs.has(cur.parentId)) {
      if (seen.has(cur.id)) return 0;
      seen.add(cur.id);
      depth += 1;
      cur = runs.get(cur.parentId);
    }
    return depth;
  }

  function treeOrder() {
    const children = new Map();
    for (const id of order) {
      const rec = runs.get(id);
      const parent = id === runId ? null : rec.parentId;
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(id);
    }
    const out = [];
    const seen = new Set();
    const visit = (id) => {
      if (seen.has(id)) return;
      out.push(id);
      seen.add(id);
      for (const child of children.get(id) || []) visit(child);
    };
    if (runs.has(runId)) visit(runId);
    for (const id of order) if (!seen.has(id)) out.push(id);
    return out;
  }

  function renderTimeline(nowUs) {
    const shown = treeOrder().map((id) => runs.get(id)).filter((r) => r.startUs !== null);
    if (!shown.length) return;
    const t0 = Math.min(...shown.map((r) => r.startUs));
    let t1 = Math.max(...shown.map((r) => (r.ended ? r.endUs : nowUs)));
    if (t1 <= t0) t1 = t0 + 1;
    const span = t1 - t0;
    const pct = (us) => `${(((us - t0) / span) * 100).toFixed(3)}%`;

    if (!timeline.axis) {
      timeline.axis = RL.el("div", {className: "tl-axis"});
      timeline.rows = RL.el("div", {className: "tl-rows"});
      timeline.append(timeline.axis, timeline.rows);
    }
    const ticks = [];
    for (let i = 0; i <= 4; i += 1) {
      const tick = RL.el("span", {className: "tl-tick"},
                         i === 0 ? "0" : RL.fmtDuration((span * i) / 4 / 1000));
      tick.style.left = `${i * 25}%`;
      ticks.push(tick);
    }
    timeline.axis.replaceChildren(RL.el("span", {className: "tl-label"}, ""),
                                  RL.el("span", {className: "tl-track"}, ...ticks));
    timeline.t0 = t0;
    timeline.span = span;
    drawCursor();

    shown.forEach((rec, index) => {
      if (!rec.row) {
        const label = RL.el("a", {className: "tl-label", href: "#"});
        const bar = RL.el("span", {className: "tl-bar"});
        const ttft = RL.el("span", {className: "tl-ttft"});
        const text = RL.el("span", {className: "tl-text"});
        const track = RL.el("span", {className: "tl-track"}, bar, ttft, text);
        const row = RL.el("div", {className: "tl-row"}, label, track);
        label.addEventListener("click", (event) => {
          event.preventDefault();
          reveal(rec);
        });
        rec.row = {row, label, bar, ttft, text};
      }
      const r = rec.row;
      if (timeline.rows.children[index] !== r.row) {
        timeline.rows.insertBefore(r.row, timeline.rows.children[index] || null);
      }
      const st = status(rec);
      r.label.textContent = rec.name;
      r.label.style.paddingLeft = `${depthOf(rec) * 14 + 4}px`;
      r.label.title = `${rec.name} (${rec.type})`;
      const end = rec.ended ? rec.endUs : nowUs;
      r.bar.style.left = pct(rec.startUs);
      r.bar.style.width = `max(2px, ${(((end - rec.startUs) / span) * 100).toFixed(3)}%)`;
      r.bar.className = `tl-bar tl-${st} tl-type-${rec.type}`;
      const ms = durationMs(rec, nowUs);
      const first = firstOutputUs(rec);
      const ttftText = first !== null ? `TTFT ${RL.fmtDuration((first - rec.startUs) / 1000)}` : "";
      r.text.textContent = (ms === null ? st : RL.fmtDuration(ms)) +
        (ttftText ? ` · ${ttftText}` : "");
      const startFraction = (rec.startUs - t0) / span;
      const endFraction = (end - t0) / span;
      // The label goes after the bar; near the right edge, inside a bar wide enough to
      // hold it (light text on the bar's colour), else before the bar's start (dark
      // text on the page): never light text on the white track.
      const place = endFraction <= 0.8 ? "after"
        : (endFraction - startFraction >= 0.35 ? "inside" : "before");
      r.text.className = `tl-text tl-text-${place}`;
      r.text.style.left = place === "after" ? `calc(${pct(end)} + 4px)` : "";
      r.text.style.right = place === "inside"
        ? `calc(${(100 - endFraction * 100).toFixed(3)}% + 4px)`
        : (place === "before" ? `calc(${(100 - startFraction * 100).toFixed(3)}% + 4px)` : "");
      if (first !== null) {
        r.ttft.hidden = false;
        r.ttft.style.left = pct(first);
        r.ttft.title = `time to first token: ${RL.fmtDuration((first - rec.startUs) / 1000)}`;
      } else {
        r.ttft.hidden = true;
      }
    });
  }

  function reveal(rec) {
    let cur = rec;
    const seen = new Set();
    while (cur && cur.node && !seen.has(cur.id)) {
      seen.add(cur.id);
      cur.node.details.open = true;
      cur = cur.parentId ? runs.get(cur.parentId) : null;
    }
    rec.node.details.scrollIntoView({behavior: "smooth", block: "start"});
  }

  // ------------------------------------------------------------------ time travel
  //
  // The slider walks the run's events; at each position the server answers the run's
  // RunState as of that seq (store.state_at, which keeps checkpoints so a move reads
  // only the events in between), and the timeline shows where that event happened.

  function drawCursor() {
    let line = timeline.cursorLine;
    if (!line) {
      line = timeline.cursorLine = RL.el("div", {className: "tl-cursor", hidden: true});
      timeline.append(line);
    }
    const ev = scrubAt === null ? null : scrubEvents[scrubAt];
    const track = timeline.axis && timeline.axis.lastChild;
    if (!ev || !track || !timeline.span) {
      line.hidden = true;
      return;
    }
    line.hidden = false;
    const x = track.offsetLeft + ((ev.time - timeline.t0) / timeline.span) * track.offsetWidth;
    line.style.left = `${Math.max(track.offsetLeft, x)}px`;
  }

  function updateScrubber() {
    scrub.max = String(Math.max(scrubEvents.length - 1, 0));
    if (scrubAt === null) scrub.value = scrub.max;
    const i = scrubAt === null ? scrubEvents.length - 1 : scrubAt;
    const ev = scrubEvents[i];
    const label = document.getElementById("scrub-label");
    if (!ev) {
      label.textContent = "";
      return;
    }
    const rec = runs.get(ev.runId);
    const root = runs.get(runId);
    const offset = root && root.startUs !== null ? RL.fmtDuration((ev.time - root.startUs) / 1000) : "";
    label.textContent = `event ${i + 1} of ${scrubEvents.length} · seq ${ev.seq} · ` +
      `${ev.kind}${ev.channel ? ` ${ev.channel}` : ""} of ${rec ? rec.name : ev.runId}` +
      (offset ? ` · +${offset}` : "") + (scrubAt === null ? " (latest)" : "");
  }

  function stateRow(name, entry) {
    const e = entry && typeof entry === "object" ? entry : {};
    const st = e.end_time ? "ok" : "running";
    const streamed = Array.isArray(e.streamed_output_str) ? e.streamed_output_str.join("") : "";
    return RL.el("div", {className: "state-run", "data-name": name},
      RL.el("div", {className: "msg-head"}, RL.el("span", {className: "run-name"}, name),
            RL.el("span", {className: "run-type"}, RL.inline(e.type)),
            RL.statusBadge(st)),
      streamed ? RL.el("pre", {className: "value stream"}, streamed) : "",
      e.final_output !== null && e.final_output !== undefined
        ? RL.content(e.final_output) : "");
  }

  function showState(data) {
    const state = data.state;
    if (!state) {
      statePanel.replaceChildren(RL.el("p", {className: "muted"}, "Nothing yet at this point."));
      return;
    }
    const out = state.final_output;
    const logs = state.logs && typeof state.logs === "object" ? Object.entries(state.logs) : [];
    statePanel.replaceChildren(
      RL.el("h4", {}, "Output so far"),
      out === null || out === undefined ? RL.el("p", {className: "muted"}, "(none yet)")
        : RL.content(out),
      RL.el("h4", {}, `Runs so far (${logs.length})`),
      RL.el("div", {className: "state-runs"}, ...logs.map(([k, v]) => stateRow(k, v))));
    statePanel.dataset.seq = String(data.seq);
  }

  async function askState() {
    scrubTimer = null;
    const ev = scrubEvents[scrubAt === null ? scrubEvents.length - 1 : scrubAt];
    if (!ev) return;
    const ask = ++scrubAsked;
    try {
      const data = await RL.getJSON(
        `/api/runs/${encodeURIComponent(runId)}/state?seq=${ev.seq}`);
      if (ask === scrubAsked) showState(data);
    } catch (err) {
      RL.showError(err.message);
    }
  }

  function moveScrubber(index) {
    const last = scrubEvents.length - 1;
    scrubAt = index >= last ? null : Math.max(0, index);
    updateScrubber();
    drawCursor();
    if (scrubTimer !== null) clearTimeout(scrubTimer);
    scrubTimer = setTimeout(askState, 120);
  }

  scrub.addEventListener("input", () => moveScrubber(Number(scrub.value)));
  document.getElementById("scrub-prev").addEventListener("click", () =>
    moveScrubber((scrubAt === null ? scrubEvents.length - 1 : scrubAt) - 1));
  document.getElementById("scrub-next").addEventListener("click", () =>
    moveScrubber((scrubAt === null ? scrubEvents.length - 1 : scrubAt) + 1));
  document.getElementById("scrub-end").addEventListener("click", () =>
    moveScrubber(scrubEvents.length - 1));

  // ------------------------------------------------------------------ header

  function renderHead(nowUs) {
    const root = runs.get(runId);
    if (!root) return;
    document.title = `runlog · ${root.name}`;
    document.getElementById("title").textContent = root.name;
    const st = status(root);
    const ms = durationMs(root, nowUs);
    // Like the runs list: the models' reported usage when any reported it, else the
    // streamed token events (a model that does not stream reports usage only).
    const streamed = order.reduce((sum, id) => sum + runs.get(id).tokens, 0);
    const reported = order.reduce((sum, id) => {
      const used = (views.get(id) || {}).usage;
      return sum + (used && used.total_tokens !== undefined ? used.total_tokens : 0);
    }, 0);
    const tokens = reported ? `${reported} tokens` : `${streamed} tokens`;
    const summary = document.getElementById("summary");
    summary.replaceChildren(
      RL.statusBadge(st),
      RL.el("span", {className: "type"}, root.type),
      RL.el("span", {}, `started ${RL.fmtTime(root.startUs)}`),
      ms === null ? "" : RL.el("span", {}, `${RL.fmtDuration(ms)}${st === "running" ? "…" : ""}`),
      RL.el("span", {}, `${order.length} runs`),
      RL.el("span", {title: reported ? `usage reported by the models; ${streamed} streamed token events` : "streamed token events"}, tokens),
      RL.el("code", {className: "muted", title: "run id"}, runId));
  }

  function render() {
    frame = null;
    const nowUs = Date.now() * 1000;
    // Running runs' durations move with the clock: redraw them with everything else.
    for (const id of order) if (status(runs.get(id)) === "running") dirty.add(id);
    for (const id of order) if (dirty.has(id)) updateNode(runs.get(id), nowUs);
    dirty.clear();
    renderTimeline(nowUs);
    renderHead(nowUs);
    updateScrubber();
    const anyRunning = order.some((id) => status(runs.get(id)) === "running");
    // While something runs, redraw durations and bars twice a second (local only;
    // the data itself arrives pushed by the server).
    if (anyRunning && ticker === null) {
      ticker = setInterval(schedule, 500);
    } else if (!anyRunning && ticker !== null) {
      clearInterval(ticker);
      ticker = null;
    }
  }

  function schedule() {
    if (frame === null) frame = requestAnimationFrame(render);
  }

  // ------------------------------------------------------------------ loading

  function downloads(formats) {
    const box = document.getElementById("downloads");
    const labels = {jsonl: "JSONL", otlp: "OTLP JSON", chrome: "Chrome trace"};
    box.replaceChildren(RL.el("span", {className: "muted"}, "Download:"));
    for (const fmt of formats) {
      box.append(RL.el("a", {
        href: `/api/runs/${encodeURIComponent(runId)}/export?format=${fmt}`,
        className: "download", download: ""}, labels[fmt] || fmt));
    }
    box.hidden = formats.length === 0;
  }

  function follow() {
    // No until_end: the page closes the stream itself when the run ends, and keeps
    // following a run reported abandoned (its writer may only have been paused).
    const url = `/api/stream?run=${encodeURIComponent(runId)}&after=${cursor}`;
    source = new EventSource(url);
    source.onopen = () => {
      RL.setLive("live", "live");
      RL.showError("");
    };
    // The store failed mid-stream; the browser reconnects and resumes by itself.
    source.addEventListener("unavailable", (message) => {
      RL.showError(RL.parse(message.data).error);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) RL.setLive("closed", "disconnected");
      else RL.setLive("connecting", "reconnecting…");
    };
    source.onmessage = (message) => {
      apply(RL.parse(message.data));
      const root = runs.get(runId);
      if (root && root.ended) {
        source.close();
        RL.setLive("closed", "finished");
      }
      schedule();
    };
    source.addEventListener("status", (message) => {
      // The notice names the run whose writer died; its open descendants share it.
      const change = RL.parse(message.data);
      if (change.status !== "abandoned") return;
      const hit = new Set([change.run_id]);
      for (const id of order) {
        const rec = runs.get(id);
        if (!hit.has(id) && !hit.has(rec.parentId)) continue;
        hit.add(id);
        if (!rec.ended) {
          rec.abandoned = true;
          dirty.add(id);
        }
      }
      schedule();
    });
  }

  async function load() {
    RL.loadInfo();
    let detail;
    try {
      detail = await RL.getJSON(`/api/runs/${encodeURIComponent(runId)}`);
    } catch (err) {
      RL.showError(err.message);
      RL.setLive("closed", "");
      return;
    }
    if (detail.run.run_id !== runId) {
      runId = detail.run.run_id;
      history.replaceState(null, "", `/runs/${encodeURIComponent(runId)}`);
    }
    liveFrom = detail.last_seq;  // statuses were read at this seq
    for (const info of detail.runs) fromInfo(info);
    if (detail.run.parent_id) {
      const up = document.getElementById("up");
      up.href = `/runs/${encodeURIComponent(detail.run.trace_id)}`;
      up.hidden = false;
    }
    downloads(detail.export_formats || []);
    let after = 0;
    for (;;) {
      const page = await RL.getJSON(
        `/api/runs/${encodeURIComponent(runId)}/events?after=${after}`);
      for (const event of page.events) apply(event);
      after = page.next;
      if (!page.more) break;
    }
    await loadContent();
    loaded = true;
    render();
    const root = runs.get(runId);
    if (root && root.ended) {
      RL.setLive("closed", "finished");
    } else {
      follow();
    }
  }

  rawToggle.addEventListener("click", () => {
    for (const id of order) dirty.add(id);
    schedule();
  });
  const compareId = document.getElementById("compare-id");
  document.getElementById("compare").addEventListener("click", () => {
    const other = compareId.value.trim();
    if (other) {
      window.location.href = `/compare?a=${encodeURIComponent(runId)}&b=${encodeURIComponent(other)}`;
    }
  });
  compareId.addEventListener("keydown", (event) => {
    if (event.key === "Enter") document.getElementById("compare").click();
  });
  window.addEventListener("resize", drawCursor);

  document.getElementById("expand").addEventListener("click", () => {
    for (const node of treeRoot.querySelectorAll("details.run")) node.open = true;
  });
  document.getElementById("collapse").addEventListener("click", () => {
    for (const node of treeRoot.querySelectorAll("details.run")) node.open = false;
  });

  load();
})();
