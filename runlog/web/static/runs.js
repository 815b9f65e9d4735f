// The runs list: filters in the URL, rows from /api/runs, refreshed when the server
// pushes a start/end (or, at most once a second, a token) through /api/stream.
"use strict";

(function () {
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#runs tbody");
  const empty = document.getElementById("empty");
  const moreButton = document.getElementById("more");
  const FIELDS = ["q", "name", "type", "tag", "meta", "status", "all", "since", "until", "sort"];
  const PAGE = 100;
  let offset = 0;             // rows skipped: the page shown
  const picked = new Set();   // runs ticked for the compare view (at most two)
  const newerButton = document.getElementById("newer");
  const compareButton = document.getElementById("compare");
  const pageInfo = document.getElementById("page-info");
  let loading = null;      // the in-flight refresh, if any
  let again = false;       // another refresh was asked for while one was running
  let tokenTimer = null;
  let refreshTimer = null;

  function paramsFromForm() {
    const params = new URLSearchParams();
    for (const name of FIELDS) {
      const input = form.elements[name];
      if (input.type === "checkbox") {
        if (input.checked) params.set(name, "1");
      } else if (input.value.trim() !== "") {
        params.set(name, input.value.trim());
      }
    }
    return params;
  }

  function formFromParams(params) {
    for (const name of FIELDS) {
      const input = form.elements[name];
      if (input.type === "checkbox") input.checked = params.get(name) === "1";
      else input.value = params.get(name) || "";
    }
  }

  // datetime-local fields hold local wall-clock time; the API takes ISO 8601 in UTC.
  function apiParams() {
    const params = paramsFromForm();
    for (const name of ["since", "until"]) {
      const value = params.get(name);
      if (value) params.set(name, new Date(value).toISOString());
    }
    return params;
  }

  function usageText(run) {
    const u = run.usage;
    if (u && u.total_tokens !== undefined) return String(u.total_tokens);
    return run.token_count === null ? "…" : String(run.token_count);
  }

  function usageTitle(run) {
    const u = run.usage;
    const parts = [];
    if (u && !RL.isEmpty(u)) parts.push(`usage reported by the models: ${RL.usageText(u)}`);
    if (run.token_count !== null) parts.push(`${run.token_count} streamed token events`);
    else parts.push("counting…");
    return parts.join("; ");
  }

  function row(run) {
    const tags = RL.el("span", {className: "tags"});
    for (const tag of run.tags) tags.append(RL.el("span", {className: "tag"}, tag));
    const durationCell = RL.el("td", {className: "num duration"}, RL.fmtDuration(run.duration_ms));
    if (run.status === "running") {
      durationCell.dataset.startUs = String(run.start_us);
      tickDuration(durationCell);
    }
    const link = RL.el("a", {href: `/runs/${encodeURIComponent(run.run_id)}`,
                             className: "run-link", title: run.run_id}, run.name);
    const nameCell = RL.el("td", {className: "name"}, link);
    if (run.parent_id) nameCell.append(RL.el("span", {className: "muted child"}, " (child)"));
    if (run.input_preview || run.output_preview) {
      nameCell.append(RL.el("div", {className: "io-preview"},
        RL.el("span", {className: "in", title: "input"}, run.input_preview || ""),
        run.output_preview !== null && run.output_preview !== undefined
          ? RL.el("span", {className: "arrow"}, " → ") : "",
        run.output_preview !== null && run.output_preview !== undefined
          ? RL.el("span", {className: "out", title: "output"}, run.output_preview) : ""));
    }
    if (run.error) {
      nameCell.append(RL.el("div", {className: "error-line"},
                            `${run.error.type}: ${run.error.message}`));
    }
    const statusCell = RL.el("td", {className: "status-cell"}, RL.statusBadge(run.status));
    failedNote(statusCell, run.failed_children);
    const pick = RL.el("input", {type: "checkbox", className: "pick",
                                 checked: picked.has(run.run_id), "aria-label": "pick to compare"});
    pick.addEventListener("change", () => {
      if (pick.checked) picked.add(run.run_id);
      else picked.delete(run.run_id);
      while (picked.size > 2) picked.delete(picked.values().next().value);
      for (const box of tbody.querySelectorAll("input.pick")) {
        box.checked = picked.has(box.closest("tr").dataset.runId);
      }
      compareButton.disabled = picked.size !== 2;
    });
    const tr = RL.el("tr", {"data-run-id": run.run_id, "data-status": run.status},
      RL.el("td", {className: "pick"}, pick),
      nameCell,
      RL.el("td", {className: "type"}, run.run_type),
      statusCell,
      RL.el("td", {className: "time"}, RL.fmtTime(run.start_us)),
      durationCell,
      RL.el("td", {className: "num tokens", title: usageTitle(run)}, usageText(run)),
      RL.el("td", {}, tags));
    tr.addEventListener("click", (event) => {
      if (event.target.closest("a") || event.target.closest("input")) return;
      window.location.href = link.href;
    });
    return tr;
  }

  // A run whose descendants failed says so next to its own status.
  function failedNote(cell, failed) {
    const old = cell.querySelector(".failed-children");
    if (old) old.remove();
    if (failed) {
      cell.append(RL.el("div", {className: "failed-children"},
                        `${failed} child run${failed > 1 ? "s" : ""} failed`));
    }
  }

  // Running rows show the time elapsed so far, redrawn each second from the page's
  // own clock (no request).
  function tickDuration(cell) {
    cell.textContent = `${RL.fmtDuration(Date.now() - Number(cell.dataset.startUs) / 1000)}…`;
  }
  setInterval(() => {
    for (const cell of tbody.querySelectorAll("td.duration[data-start-us]")) tickDuration(cell);
  }, 1000);

  async function refresh() {
    if (loading) {
      again = true;
      return loading;
    }
    loading = (async () => {
      const params = apiParams();
      params.set("limit", String(PAGE));
      params.set("offset", String(offset));
      // Counts of traces the server has not counted yet come as null (counting reads
      // every event of a trace once); the rows show at once and one more request fills
      // those counts in.
      params.set("tokens", "cached");
      try {
        const data = await RL.getJSON(`/api/runs?${params}`);
        RL.showError("");
        tbody.replaceChildren(...data.runs.map(row));
        empty.hidden = data.runs.length > 0;
        moreButton.hidden = !data.more;
        newerButton.hidden = offset === 0;
        pageInfo.textContent = data.runs.length
          ? `runs ${offset + 1}–${offset + data.runs.length}` +
            (data.more ? " · more runs exist" : "") +
            (data.scan_limited ? " · searched the newest runs only" : "")
          : "";
        const uncounted = data.runs.filter((run) => run.token_count === null);
        if (uncounted.length) {
          const query = new URLSearchParams(uncounted.map((run) => ["run", run.run_id]));
          const counted = await RL.getJSON(`/api/tokens?${query}`);
          for (const [id, count] of Object.entries(counted.token_counts)) {
            const tr = tbody.querySelector(`tr[data-run-id="${CSS.escape(id)}"]`);
            if (!tr) continue;
            const run = {token_count: count, usage: (counted.usage || {})[id]};
            const cell = tr.querySelector("td.tokens");
            cell.textContent = usageText(run);
            cell.title = usageTitle(run);
            failedNote(tr.querySelector("td.status-cell"), (counted.failed_children || {})[id]);
          }
        }
        return data;
      } catch (err) {
        RL.showError(err.message);
        return null;
      } finally {
        loading = null;
        if (again) {
          again = false;
          refresh();
        }
      }
    })();
    return loading;
  }

  function scheduleRefresh(delay) {
    if (refreshTimer !== null) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refresh();
    }, delay);
  }

  function follow(afterSeq) {
    // Start and end events change rows; tokens only change counts, so those
    // refresh at most once a second. EventSource reconnects by itself, sending
    // Last-Event-ID, and the server resumes right after it.
    const source = new EventSource(`/api/stream?kinds=start,end,token&after=${afterSeq}`);
    source.onopen = () => RL.setLive("live", "live");
    source.onerror = () => RL.setLive("connecting", "reconnecting…");
    source.onmessage = (message) => {
      const event = RL.parse(message.data);
      if (event.kind === "stream") {
        if (tokenTimer === null) {
          tokenTimer = setTimeout(() => {
            tokenTimer = null;
            refresh();
          }, 1000);
        }
      } else {
        scheduleRefresh(100);
      }
    };
    source.addEventListener("status", () => scheduleRefresh(100));
    // The store failed mid-stream; the browser reconnects and resumes by itself.
    source.addEventListener("unavailable", (message) => {
      RL.showError(RL.parse(message.data).error);
      RL.setLive("connecting", "store unavailable…");
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    offset = 0;
    const params = paramsFromForm();
    history.replaceState(null, "", params.toString() ? `/?${params}` : "/");
    refresh();
  });
  document.getElementById("clear").addEventListener("click", () => {
    formFromParams(new URLSearchParams());
    form.requestSubmit();
  });
  moreButton.addEventListener("click", () => {
    offset += PAGE;
    refresh();
  });
  newerButton.addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE);
    refresh();
  });
  compareButton.addEventListener("click", () => {
    const [a, b] = [...picked];
    if (a && b) window.location.href = `/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`;
  });

  formFromParams(new URLSearchParams(window.location.search));
  RL.loadInfo();
  refresh().then((data) => follow(data ? data.last_seq : -1));
})();
