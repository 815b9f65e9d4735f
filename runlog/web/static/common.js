// Helpers shared by the runs list and the run page.
//
// Rule for every value that came from a recording (names, tags, inputs, outputs,
// tokens, errors): it enters the page as a text node (`textContent`, `el(...)`
// children), never as HTML. Nothing here uses innerHTML.
"use strict";

const RL = {};

// el("span", {className: "x", title: "y"}, "text", otherNode) -> element.
// Attributes are set as properties (or data-*/aria-* attributes); children that are
// strings or numbers become text nodes.
RL.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

RL.pad = (n, width = 2) => String(n).padStart(width, "0");

// Epoch microseconds -> local "YYYY-MM-DD HH:MM:SS".
RL.fmtTime = function (us) {
  if (us === null || us === undefined) return "";
  const d = new Date(RL.num(us) / 1000);
  return `${d.getFullYear()}-${RL.pad(d.getMonth() + 1)}-${RL.pad(d.getDate())} ` +
    `${RL.pad(d.getHours())}:${RL.pad(d.getMinutes())}:${RL.pad(d.getSeconds())}`;
};

// Milliseconds -> "850 µs", "12.3 ms", "4.56 s", "3 min 05 s".
RL.fmtDuration = function (value) {
  const ms = RL.num(value);
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${RL.pad(s % 60)} s`;
};

// Exact integers. A JS number holds integers exactly only up to ±2^53, and JSON.parse
// rounds anything larger (2^53 + 1 would show as 9007199254740992). The API sends
// every number as the store holds it, digit for digit; the pages parse with a reviver
// that reads the number's source text (JSON.parse source text access: Chromium 114+,
// Firefox 135+) and keeps larger integers as BigInt, which RL.show writes back with
// JSON.rawJSON. A browser without it shows such integers rounded, marked "≈".
RL.exactInts = (function () {
  try {
    let seen = null;
    JSON.parse("[9007199254740993]", (key, value, context) => {
      if (key === "0") seen = context && context.source;
      return value;
    });
    return seen === "9007199254740993" && typeof JSON.rawJSON === "function";
  } catch (err) {
    return false;
  }
})();

const INTEGER_SOURCE = /^-?[0-9]+$/;

RL.reviveInts = function (key, value, context) {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context &&
      INTEGER_SOURCE.test(context.source)) {
    return BigInt(context.source);
  }
  return value;
};

// JSON.parse, keeping integers beyond ±2^53 exact (as BigInt) where the browser can.
RL.parse = function (text) {
  return RL.exactInts ? JSON.parse(text, RL.reviveInts) : JSON.parse(text);
};

// A number for arithmetic (times, durations): BigInt -> Number.
RL.num = (value) => (typeof value === "bigint" ? Number(value) : value);

function showInts(key, value) {
  if (typeof value === "bigint") return JSON.rawJSON(value.toString());
  if (typeof value === "number" && Number.isInteger(value) && !Number.isSafeInteger(value)) {
    return `≈${value}`;  // only without source text access: the digits were rounded
  }
  return value;
}

// A value for a <pre>: strings as they are, anything else as indented JSON.
RL.show = function (value) {
  if (typeof value === "string") return value;
  if (typeof value === "bigint") return value.toString();
  try {
    return JSON.stringify(value, showInts, 2);
  } catch (err) {
    return String(value);
  }
};

RL.isEmpty = function (value) {
  if (value === null || value === undefined) return true;
  if (typeof value === "object" && !Array.isArray(value)) return Object.keys(value).length === 0;
  return false;
};

RL.statusBadge = function (status) {
  return RL.el("span", {className: `status status-${status}`, "data-status": status}, status);
};

// fetch + JSON with the server's error message on failure.
RL.getJSON = async function (url) {
  const response = await fetch(url, {headers: {Accept: "application/json"}});
  const text = await response.text();
  let body = null;
  try {
    body = RL.parse(text);
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
};

RL.showError = function (message) {
  const node = document.getElementById("error");
  if (!node) return;
  node.textContent = message || "";
  node.hidden = !message;
};

// The header's connection indicator; state is "live", "connecting" or "closed".
RL.setLive = function (state, text) {
  const node = document.getElementById("live");
  if (!node) return;
  node.dataset.state = state;
  node.textContent = text;
};

RL.loadInfo = async function () {
  try {
    const info = await RL.getJSON("/api/info");
    const node = document.getElementById("store");
    if (node) {
      node.textContent = info.location;
      node.title = `runlog ${info.version}`;
    }
    return info;
  } catch (err) {
    RL.showError(`Cannot reach the server: ${err.message}`);
    return null;
  }
};

// ---------------------------------------------------------------- readable content
//
// The server turns stored values into view nodes (runlog/content.py): a node is an
// object whose "$rl:view" key names its kind (message, document, prompt, generation,
// generations, object, secret, tag, dict); every other object is plain stored data.
// RL.content draws a node as what it is (a chat message with its role, tool calls
// and usage; a document with its metadata) with text nodes only.

RL.VIEW = "$rl:view";

RL.kind = function (v) {
  return v && typeof v === "object" && !Array.isArray(v) && typeof v[RL.VIEW] === "string"
    ? v[RL.VIEW] : null;
};

RL.hasNodes = function (v, depth = 0) {
  if (depth > 60 || !v || typeof v !== "object") return false;
  if (RL.kind(v)) return true;
  return (Array.isArray(v) ? v : Object.values(v)).some((x) => RL.hasNodes(x, depth + 1));
};

RL.inline = function (v) {
  if (v === undefined) return "";
  return typeof v === "string" ? v : String(RL.show(v)).replace(/\n\s*/g, " ");
};

RL.usageText = function (u) {
  if (!u || typeof u !== "object") return "";
  const parts = [];
  if (u.input_tokens !== undefined) parts.push(`${u.input_tokens} in`);
  if (u.output_tokens !== undefined) parts.push(`${u.output_tokens} out`);
  if (u.total_tokens !== undefined) parts.push(`${u.total_tokens} total`);
  return parts.join(" · ");
};

function contentText(content, depth) {
  if (typeof content === "string") return RL.el("div", {className: "msg-text"}, content);
  if (Array.isArray(content)) {
    return RL.el("div", {className: "msg-blocks"}, ...content.map((b) => {
      if (typeof b === "string") return RL.el("div", {className: "msg-text"}, b);
      if (b && b.type === "text" && typeof b.text === "string") {
        return RL.el("div", {className: "msg-text"}, b.text);
      }
      return RL.el("div", {className: "msg-block"},
                   RL.el("span", {className: "block-type"}, b && b.type ? String(b.type) : "block"),
                   RL.content(b, depth + 1));
    }));
  }
  return RL.content(content, depth + 1);
}

RL.content = function (v, depth = 0) {
  if (depth > 60) return RL.el("pre", {className: "value"}, RL.show(v));
  const kind = RL.kind(v);
  if (kind === "message") {
    const head = RL.el("div", {className: "msg-head"},
      RL.el("span", {className: "role"}, RL.inline(v.role)),
      v.name !== undefined ? RL.el("span", {className: "muted"}, RL.inline(v.name)) : "",
      v.tool_call_id !== undefined
        ? RL.el("span", {className: "call-ref"}, `result of ${RL.inline(v.tool_call_id)}`) : "",
      v.status !== undefined && v.status !== "success"
        ? RL.el("span", {className: "status status-error"}, RL.inline(v.status)) : "",
      v.chunk ? RL.el("span", {className: "muted"}, "chunk") : "",
      v.usage !== undefined
        ? RL.el("span", {className: "usage", title: "usage_metadata"}, RL.usageText(v.usage)) : "",
      v.id !== undefined ? RL.el("code", {className: "muted msg-id"}, RL.inline(v.id)) : "");
    const node = RL.el("div", {className: "msg", "data-role": RL.inline(v.role)}, head,
                       contentText(v.content, depth));
    const calls = [...(v.tool_calls || []), ...(v.invalid_tool_calls || [])];
    if (Array.isArray(v.tool_calls) || Array.isArray(v.invalid_tool_calls)) {
      node.append(RL.el("div", {className: "tool-calls"}, ...calls.map((c, i) => RL.el(
        "div", {className: "tool-call" + (i >= (v.tool_calls || []).length ? " invalid" : "")},
        RL.el("span", {className: "muted"}, i >= (v.tool_calls || []).length
          ? "invalid tool call " : "tool call "),
        RL.el("code", {className: "call-name"}, RL.inline(c && c.name)),
        c && c.id !== undefined && c.id !== null
          ? RL.el("code", {className: "muted call-id"}, RL.inline(c.id)) : "",
        RL.el("pre", {className: "value call-args"}, RL.show(c ? c.args : c)),
        c && c.error ? RL.el("div", {className: "error-line"}, RL.inline(c.error)) : ""))));
    }
    if (v.artifact !== undefined) {
      node.append(RL.el("details", {}, RL.el("summary", {}, "artifact"), RL.content(v.artifact, depth + 1)));
    }
    return node;
  }
  if (kind === "document") {
    const meta = v.metadata && !RL.isEmpty(v.metadata)
      ? RL.el("code", {className: "muted doc-meta"}, RL.inline(v.metadata)) : "";
    return RL.el("div", {className: "doc"},
      RL.el("div", {className: "msg-head"}, RL.el("span", {className: "role"}, "document"),
            v.id !== undefined && v.id !== null ? RL.el("code", {}, RL.inline(v.id)) : "", meta),
      contentText(v.content, depth));
  }
  if (kind === "prompt") {
    const body = "text" in v ? contentText(v.text, depth)
      : RL.el("div", {}, ...(Array.isArray(v.messages) ? v.messages : [v.messages])
          .map((m) => RL.content(m, depth + 1)));
    return RL.el("div", {className: "prompt"},
                 RL.el("div", {className: "kind-label"}, "prompt"), body);
  }
  if (kind === "generations") {
    const gens = [];
    for (const batch of Array.isArray(v.generations) ? v.generations : []) {
      for (const g of Array.isArray(batch) ? batch : [batch]) gens.push(g);
    }
    const node = RL.el("div", {className: "generations"}, ...gens.map((g) => RL.content(g, depth + 1)));
    if (v.llm_output !== null && v.llm_output !== undefined) {
      node.append(RL.el("details", {}, RL.el("summary", {}, "llm_output"),
                        RL.content(v.llm_output, depth + 1)));
    }
    if (v.extra !== undefined) node.append(RL.content(v.extra, depth + 1));
    return node;
  }
  if (kind === "generation") {
    const node = RL.kind(v.message) ? RL.content(v.message, depth + 1)
      : RL.el("div", {className: "msg"}, RL.el("div", {className: "msg-head"},
          RL.el("span", {className: "role"}, "generation")), contentText(v.text, depth));
    if (v.info !== undefined) {
      node.append(RL.el("details", {}, RL.el("summary", {}, "generation info"),
                        RL.content(v.info, depth + 1)));
    }
    return node;
  }
  if (kind === "object") {
    return RL.el("div", {className: "obj"}, RL.el("code", {className: "kind-label"}, RL.inline(v.class)),
                 RL.content(v.kwargs, depth + 1));
  }
  if (kind === "secret") return RL.el("code", {className: "secret"}, `secret ${RL.inline(v.id)}`);
  if (kind === "dict") {
    return RL.el("div", {className: "kv"}, ...(Array.isArray(v.pairs) ? v.pairs : []).map((p) =>
      RL.el("div", {className: "kv-row"}, RL.content(Array.isArray(p) ? p[0] : p, depth + 1),
            RL.content(Array.isArray(p) ? p[1] : null, depth + 1))));
  }
  if (kind !== null) {  // a codec tag kept as stored (kind "tag", or one this page does not know)
    const shown = kind === "tag" ? {[`$rl:${v.tag}`]: v.payload} : v;
    return RL.el("pre", {className: "value tag-value"}, RL.show(shown));
  }
  if (Array.isArray(v) && RL.hasNodes(v)) {
    return RL.el("div", {className: "list"}, ...v.map((x) => RL.content(x, depth + 1)));
  }
  if (v && typeof v === "object" && !Array.isArray(v) && RL.hasNodes(v)) {
    return RL.el("div", {className: "kv"}, ...Object.entries(v).map(([k, x]) =>
      RL.el("div", {className: "kv-row"}, RL.el("span", {className: "kv-key"}, k),
            RL.content(x, depth + 1))));
  }
  return RL.el("pre", {className: "value"}, RL.show(v));
};
