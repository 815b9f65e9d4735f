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
