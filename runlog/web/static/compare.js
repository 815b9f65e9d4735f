// The compare view: /api/compare (runlog diff of two runs) with both sides' values per
// aligned run (same tree position and name), A on the left, B on the right.
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  const a = params.get("a") || "";
  const b = params.get("b") || "";
  const grid = document.getElementById("compare");
  const onlyChanged = document.getElementById("only-changed");
  let data = null;

  function runLink(id, label) {
    return RL.el("a", {href: `/runs/${encodeURIComponent(id)}`, title: id}, label);
  }

  function side(run, changed, letter) {
    if (!run) return RL.el("div", {className: "cmp-side cmp-missing"}, `not in ${letter}`);
    const mark = (field) => (changed.includes(field) || changed.includes("*") ? " cmp-changed" : "");
    const node = RL.el("div", {className: "cmp-side", "data-side": letter},
      RL.el("div", {className: "msg-head"},
        runLink(run.run_id, run.name), RL.el("span", {className: "run-type"}, run.run_type),
        RL.statusBadge(run.status),
        RL.el("span", {className: "muted"}, RL.fmtDuration(run.duration_ms))));
    if (run.error) {
      node.append(RL.el("pre", {className: "value error-box" + mark("error")},
                        `${run.error.type}: ${run.error.message}`));
    }
    const section = (title, field, body) => RL.el("div", {className: "section" + mark(field)},
                                                   RL.el("h4", {}, title), body);
    node.append(section("Inputs", "inputs", RL.content(run.inputs)));
    if (run.streamed) {
      node.append(section("Streamed", "tokens", RL.el("pre", {className: "value stream"}, run.streamed)));
    }
    if (run.outputs !== null && run.outputs !== undefined) {
      node.append(section("Outputs", "outputs", RL.content(run.outputs)));
    }
    return node;
  }

  function render() {
    if (!data) return;
    const rows = data.runs.filter((r) => !onlyChanged.checked || r.changed.length || !r.a || !r.b);
    grid.replaceChildren(
      RL.el("div", {className: "cmp-row cmp-head"}, RL.el("div", {}, "A ", runLink(data.a, data.a)),
            RL.el("div", {}, "B ", runLink(data.b, data.b))),
      ...rows.map((r) => RL.el("div", {className: "cmp-block", "data-key": r.key},
        RL.el("div", {className: "cmp-key"}, RL.el("code", {}, r.key),
              ...r.changed.map((f) => RL.el("span", {className: "tag cmp-field"}, f === "*" ? "whole run" : f))),
        RL.el("div", {className: "cmp-row"}, side(r.a, r.changed, "A"), side(r.b, r.changed, "B")))));
  }

  async function load() {
    RL.loadInfo();
    if (!a || !b) {
      RL.showError("Pick two runs: /compare?a=RUN_ID&b=RUN_ID (or tick two rows in the runs list).");
      return;
    }
    try {
      data = await RL.getJSON(`/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
    } catch (err) {
      RL.showError(err.message);
      return;
    }
    const summary = document.getElementById("summary");
    const changedRuns = data.runs.filter((r) => r.changed.length || !r.a || !r.b).length;
    summary.replaceChildren(
      RL.el("span", {className: `status ${data.same ? "status-ok" : "status-error"}`, id: "verdict"},
            data.same ? "same" : "different"),
      RL.el("span", {}, `${data.runs.length} aligned runs`),
      RL.el("span", {}, `${changedRuns} differ`),
      data.only_in_a.length ? RL.el("span", {}, `only in A: ${data.only_in_a.join(", ")}`) : "",
      data.only_in_b.length ? RL.el("span", {}, `only in B: ${data.only_in_b.join(", ")}`) : "");
    if (data.first_divergence) {
      document.getElementById("divergence-panel").hidden = false;
      document.getElementById("divergence").textContent = data.first_divergence.description;
    }
    document.getElementById("patch-count").textContent = String(data.patch.length);
    document.getElementById("patch").textContent = RL.show(data.patch);
    render();
  }

  onlyChanged.addEventListener("change", render);
  load();
})();
