// The graph steps of a LangGraph run on the run page (GET /api/runs/{id}/graph, served
// by runlog/web/protocol.py): step number, the nodes that ran with what they returned,
// the state diff (the stored JSON Patch ops), interrupts. Hidden for other runs.
// Values from the recording enter the page as text nodes only (see common.js).
"use strict";

(function () {
  const runId = decodeURIComponent(window.location.pathname.split("/").pop());
  const section = document.getElementById("graph-steps");
  const list = document.getElementById("graph-steps-list");
  if (!section || !list) return;

  function opLine(op) {
    const value = "value" in op ? " " + RL.show(op.value) : "";
    return `${op.op} ${op.path || "/"}${value}`;
  }

  function render(steps) {
    list.replaceChildren();
    for (const step of steps) {
      const nodes = step.updates.map((u) => u[0]).join(", ") || "(input)";
      const body = RL.el("div", {className: "graph-step-body"});
      for (const [node, update] of step.updates) {
        body.append(RL.el("div", {className: "graph-update"},
          RL.el("strong", {}, node), RL.el("pre", {}, RL.show(update))));
      }
      if (step.diff.length) {
        body.append(RL.el("div", {className: "graph-diff"}, RL.el("strong", {}, "state diff"),
          RL.el("pre", {}, step.diff.map(opLine).join("\n"))));
      }
      for (const i of step.interrupts) {
        body.append(RL.el("div", {className: "graph-interrupt"},
          RL.el("strong", {}, "interrupt"), RL.el("pre", {}, RL.show(i))));
      }
      list.append(RL.el("details", {className: "graph-step", "data-step": String(step.step)},
        RL.el("summary", {}, `step ${step.step}: ${nodes}`), body));
    }
    section.hidden = steps.length === 0;
  }

  RL.getJSON(`/api/runs/${encodeURIComponent(runId)}/graph`)
    .then((steps) => { if (Array.isArray(steps)) render(steps); })
    .catch(() => { section.hidden = true; });  // not a graph run, or no store: no panel
})();
