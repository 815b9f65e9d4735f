// The runs list: filters in the URL, rows from /api/runs, refreshed when the server
// pushes a start/end (or, at most once a second, a token) through /api/stream.
"use strict";

(function () {
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#runs tbody");
  const empty = document.getElementById("empty");
  const moreButton = document.getElementById("more");
  const FIELDS = ["q", "name", "type", "tag", "meta", "status", "all"];
  let limit = 100;
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
    if (run.error) {
      nameCell.append(RL.el("div", {className: "error-line"},
                            `${run.error.type}: ${run.error.message}`));
    }
    const tr = RL.el("tr", {"data-run-id": run.run_id, "data-status": run.status},
      nameCell,
      RL.el("td", {className: "type"}, run.run_type),
      RL.el("td", {}, RL.statusBadge(run.status)),
      RL.el("td", {className: "time"}, RL.fmtTime(run.start_us)),
      durationCell,
      RL.el("td", {className: "num tokens", title: run.token_count === null ? "counting…" : ""},
            run.token_count === null ? "…" : String(run.token_count)),
      RL.el("td", {}, tags));
    tr.addEventListener("click", (event) => {
      if (event.target.closest("a")) return;
      window.location.href = link.href;
    });
    return tr;
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
      const params = paramsFromForm();
      params.set("limit", String(limit));
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
        const uncounted = data.runs.filter((run) => run.token_count === null);
        if (uncounted.length) {
          const query = new URLSearchParams(uncounted.map((run) => ["run", run.run_id]));
          const counted = await RL.getJSON(`/api/tokens?${query}`);
          for (const [id, count] of Object.entries(counted.token_counts)) {
            const cell = tbody.querySelector(`tr[data-run-id="${CSS.escape(id)}"] td.tokens`);
            if (cell) {
              cell.textContent = String(count);
              cell.title = "";
            }
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
    limit = 100;
    const params = paramsFromForm();
    history.replaceState(null, "", params.toString() ? `/?${params}` : "/");
    refresh();
  });
  document.getElementById("clear").addEventListener("click", () => {
    formFromParams(new URLSearchParams());
    form.requestSubmit();
  });
  moreButton.addEventListener("click", () => {
    limit = Math.min(limit * 2, 1000);
    refresh();
  });

  formFromParams(new URLSearchParams(window.location.search));
  RL.loadInfo();
  refresh().then((data) => follow(data ? data.last_seq : -1));
})();
