// weir's web UI: the little the server-rendered pages need from a script.
// Live runs (server-sent events update the graph and the step table
// without a reload), arrow-key moves between the graph's steps, checking
// the trigger form before it is sent, and the designer. No framework, no
// inline script (the Content-Security-Policy forbids it), nothing fetched
// from another origin.
"use strict";

const WORDS = { cached: "reused" };
const word = (status) => WORDS[status] || status;

/// The page's main content again from the server, swapped in place.
async function refreshMain() {
  const response = await fetch(location.href, { headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("main");
  const main = document.getElementById("main");
  if (!fresh || !main) return;
  main.replaceChildren(...fresh.childNodes);
  init(main);
}

/// Shows `status` on the graph node and the table row of `step`.
function showStatus(root, step, status, extra) {
  const text = word(status) + (extra || "");
  for (const node of root.querySelectorAll("a.node")) {
    if (node.dataset.step !== step) continue;
    node.setAttribute("class", "node s-" + status);
    node.setAttribute("aria-label", "step " + step + ": " + text);
    const tspan = node.querySelector("tspan.st");
    if (tspan) tspan.textContent = "(" + text + ")";
  }
  const table = root.querySelector("#steps tbody");
  if (!table) return;
  let row = [...table.rows].find((r) => r.dataset.step === step);
  if (!row) {
    row = table.insertRow();
    row.dataset.step = step;
    const name = row.insertCell();
    const link = document.createElement("a");
    link.href = location.pathname.replace(/\/$/, "") + "/steps/" + encodeURIComponent(step);
    link.textContent = step;
    name.append(link);
    row.insertCell().className = "status";
    for (let i = 0; i < 3; i++) row.insertCell();
  }
  const cell = row.querySelector("td.status");
  const badge = document.createElement("span");
  badge.className = "badge s-" + status;
  badge.textContent = text;
  cell.replaceChildren(badge);
}

/// Follows a running run's events until it ends, then refreshes the page.
function followRun(root, element) {
  const source = new EventSource(element.dataset.live);
  const only = element.dataset.step;
  const data = (event) => JSON.parse(event.data);
  source.addEventListener("step_started", (event) => {
    const { step } = data(event);
    if (!only) showStatus(root, step, "running");
    else if (step === only) setBadge(root.querySelector("#step-status"), "running");
  });
  source.addEventListener("progress", (event) => {
    const { step, done, total } = data(event);
    if (!only) showStatus(root, step, "running", " " + done + "/" + total);
  });
  source.addEventListener("log", (event) => {
    const { step, stream, text } = data(event);
    if (only && step === only) {
      const pre = root.querySelector("#" + stream);
      if (pre) pre.append(document.createTextNode(text));
    }
  });
  source.addEventListener("step_finished", (event) => {
    const { step, status } = data(event);
    if (!only) showStatus(root, step, status);
    else if (step === only) {
      source.close();
      refreshMain();
    }
  });
  // A stream the server refused (not one that dropped, which reconnects):
  // the page is fetched again, and follows the run anew if it still runs.
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) setTimeout(refreshMain, 2000);
  });
  source.addEventListener("run_finished", (event) => {
    source.close();
    const status = data(event).status;
    setBadge(root.querySelector("#run-status"), status);
    refreshMain();
  });
}

function setBadge(holder, status) {
  if (!holder) return;
  const badge = document.createElement("span");
  badge.className = "badge s-" + status;
  badge.textContent = word(status);
  holder.replaceChildren(badge);
}

/// Arrow keys move the focus to the nearest step in that direction.
function graphKeys(root) {
  for (const svg of root.querySelectorAll(".graph svg")) {
    svg.addEventListener("keydown", (event) => {
      const dirs = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] };
      const dir = dirs[event.key];
      const from = event.target.closest && event.target.closest("a.node");
      if (!dir || !from) return;
      const centre = (node) => {
        const box = node.getBBox();
        return [box.x + box.width / 2, box.y + box.height / 2];
      };
      const [fx, fy] = centre(from);
      let best = null;
      let bestScore = Infinity;
      for (const node of svg.querySelectorAll("a.node")) {
        if (node === from) continue;
        const [x, y] = centre(node);
        const along = (x - fx) * dir[0] + (y - fy) * dir[1];
        if (along <= 0) continue;
        const across = Math.abs((x - fx) * dir[1]) + Math.abs((y - fy) * dir[0]);
        const score = along + 2 * across;
        if (score < bestScore) {
          bestScore = score;
          best = node;
        }
      }
      if (best) {
        best.focus();
        event.preventDefault();
      }
    });
  }
}

/// Checks each parameter against its type before the form is sent (the
/// server checks again and names the field if anything slips through).
function triggerForm(root) {
  const form = root.querySelector("#trigger-form");
  if (!form) return;
  const check = (field) => {
    const input = field.querySelector("input, select, textarea");
    const message = field.querySelector(".field-error");
    if (!input || !message || !input.name.startsWith("param.")) return true;
    const value = input.value.trim();
    let problem = "";
    switch (field.dataset.type) {
      case "integer":
        if (!/^-?\d+$/.test(value)) problem = "`" + value + "` is not an integer";
        break;
      case "number":
        if (value === "" || !Number.isFinite(Number(value))) problem = "`" + value + "` is not a number";
        break;
      case "JSON":
        try { JSON.parse(value); } catch (error) { problem = "not JSON: " + error.message; }
        break;
    }
    message.textContent = problem;
    if (problem) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
    return !problem;
  };
  form.addEventListener("submit", (event) => {
    const fields = [...form.querySelectorAll(".field")];
    const bad = fields.filter((field) => !check(field));
    if (bad.length) {
      event.preventDefault();
      bad[0].querySelector("input, select, textarea").focus();
    }
  });
}

// ---- The designer ------------------------------------------------------
// The manifest's text is the state: each edit goes to the server, which
// makes it on the TOML, has the engine check the result, and answers with
// the new text, the model to draw and the problems found.

const SVG = "http://www.w3.org/2000/svg";
const CARD = { width: 180, head: 44, row: 20, gapX: 56, gapY: 30 };

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
  if (parent) parent.append(el);
  return el;
}

function designer(root) {
  const host = root.querySelector("#designer");
  if (!host) return;
  const data = JSON.parse(host.dataset.model);
  const csrf = host.dataset.csrf;
  const base = "/pipelines/" + encodeURIComponent(data.pipeline) + "/designer";
  let state = data.checked;
  let selected = null;
  let armed = null;
  const $ = (selector) => host.querySelector(selector);
  // What was typed into the properties panel and not yet sent, by field, so
  // that the panel redrawn after another edit keeps it. Cleared when a
  // field's own button sends it, or another step is selected.
  const drafts = { step: null, values: new Map() };
  const fieldKey = (el) => el.id || el.getAttribute("aria-label");
  $("#properties").addEventListener("input", (event) => {
    const key = fieldKey(event.target);
    if (key) drafts.values.set(key, event.target.value);
  });

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    let json = {};
    try { json = await response.json(); } catch (error) { json = { detail: "the server sent no JSON" }; }
    return { ok: response.ok, status: response.status, json };
  }

  async function edit(change) {
    const { ok, json } = await post(base + "/check", { version: data.version, manifest: state.manifest, edit: change });
    const error = $("#edit-error");
    if (!ok) {
      error.textContent = json.detail || "the edit was refused";
      error.hidden = false;
      return false;
    }
    error.hidden = true;
    state = json;
    render();
    return true;
  }

  function problemsOf(step) {
    return state.problems.filter((p) => p.step && (p.step === step || p.step.startsWith(step + "/")));
  }

  /// Columns by dependency depth: pipeline inputs first, then each step
  /// one column after the deepest step it reads from.
  function layout(model) {
    const depth = {};
    for (const input of model.inputs) depth["inputs." + input] = 0;
    const steps = model.steps;
    for (let pass = 0; pass <= steps.length; pass++) {
      for (const step of steps) {
        let d = 1;
        for (const source of Object.values(step.inputs)) {
          const from = source.split(".")[0];
          const producer = from === "inputs" ? 0 : depth[from];
          if (producer !== undefined) d = Math.max(d, producer + 1);
        }
        depth[step.name] = d;
      }
    }
    const cards = [];
    const rows = {};
    const y = {};
    const add = (id, kind, ins, outs, d) => {
      const col = d;
      const height = CARD.head + CARD.row * Math.max(ins.length, outs.length, 1) + 8;
      const top = y[col] || 20;
      y[col] = top + height + CARD.gapY;
      rows[col] = (rows[col] || 0) + 1;
      cards.push({ id, kind, ins, outs, x: 20 + col * (CARD.width + CARD.gapX), y: top, height });
    };
    for (const input of model.inputs) add("inputs." + input, "input", [], [input], 0);
    for (const step of steps) {
      add(step.name, "step", [...Object.keys(step.inputs), "+"], Object.keys(step.outputs), depth[step.name] || 1);
    }
    return cards;
  }

  function render() {
    const model = state.model;
    const cards = layout(model);
    const width = Math.max(...cards.map((c) => c.x + CARD.width), 400) + 40;
    const height = Math.max(...cards.map((c) => c.y + c.height), 300) + 40;
    const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, "font-family": "sans-serif", "font-size": "12" });
    const wires = svgEl("g", {}, svg);
    const outAt = {};
    const inAt = {};
    for (const card of cards) {
      const step = model.steps.find((s) => s.name === card.id);
      const problems = step ? problemsOf(step.name) : [];
      const classes = ["card"];
      if (card.id === selected) classes.push("selected");
      if (problems.length) classes.push("invalid");
      const g = svgEl("g", { class: classes.join(" "), "data-card": card.id }, svg);
      svgEl("rect", { class: "body", x: card.x, y: card.y, width: CARD.width, height: card.height, rx: 6 }, g);
      const title = svgEl("text", { x: card.x + 10, y: card.y + 17, "font-weight": "600" }, g);
      title.textContent = card.kind === "input" ? "input " + card.id.slice(7) : card.id;
      const sub = svgEl("text", { x: card.x + 10, y: card.y + 33, fill: "#555", "font-size": "11" }, g);
      sub.textContent = step ? (step.kind + " " + (step.code || "")).slice(0, 28) : "pipeline input";
      if (problems.length) {
        const warn = svgEl("text", { x: card.x + CARD.width - 8, y: card.y + 17, "text-anchor": "end", fill: "#b3261e", "font-weight": "700" }, g);
        warn.textContent = "⚠ " + problems.length;
        svgEl("title", {}, g).textContent = problems.map((p) => (p.field ? p.field + ": " : "") + p.message).join("\n");
      }
      if (step) {
        g.setAttribute("tabindex", "0");
        g.setAttribute("role", "button");
        g.setAttribute("aria-label", "step " + step.name + (problems.length ? ", " + problems.length + " problem(s)" : ""));
      }
      card.ins.forEach((input, i) => {
        const py = card.y + CARD.head + CARD.row * i + 6;
        const port = svgEl("g", { class: "port in" + (input === "+" ? " new" : ""), tabindex: 0, role: "button",
          "data-step": card.id, "data-input": input,
          "aria-label": input === "+" ? "new input of " + card.id : "input " + input + " of " + card.id }, g);
        svgEl("circle", { cx: card.x, cy: py, r: 6 }, port);
        const label = svgEl("text", { x: card.x + 10, y: py + 4 }, port);
        label.textContent = input === "+" ? "+ input" : input;
        inAt[card.id + "|" + input] = [card.x, py];
      });
      card.outs.forEach((output, j) => {
        const py = card.y + CARD.head + CARD.row * j + 6;
        const source = card.kind === "input" ? card.id : card.id + "." + output;
        const port = svgEl("g", { class: "port out", tabindex: 0, role: "button", "data-source": source,
          "aria-label": "output " + output + " of " + card.id }, g);
        svgEl("circle", { cx: card.x + CARD.width, cy: py, r: 6 }, port);
        const label = svgEl("text", { x: card.x + CARD.width - 10, y: py + 4, "text-anchor": "end" }, port);
        label.textContent = output;
        outAt[source] = [card.x + CARD.width, py];
      });
    }
    for (const step of model.steps) {
      for (const [input, source] of Object.entries(step.inputs)) {
        const from = outAt[source];
        const to = inAt[step.name + "|" + input];
        if (!from || !to) continue;
        const mid = (from[0] + to[0]) / 2;
        svgEl("path", { class: "wire", d: `M${from[0]},${from[1]} C${mid},${from[1]} ${mid},${to[1]} ${to[0]},${to[1]}` }, wires);
      }
    }
    const canvas = $("#canvas");
    canvas.replaceChildren(svg);
    wire(svg);
    $("#manifest").value = state.manifest;
    const list = $("#problems");
    list.replaceChildren(...state.problems.map((p) => {
      const li = document.createElement("li");
      li.textContent = (p.step ? "step " + p.step + ": " : "") + (p.field ? p.field + ": " : "") + p.message;
      return li;
    }));
    if (!state.problems.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "None: the engine accepts this pipeline.";
      list.replaceChildren(li);
    }
    properties();
  }

  function connect(source, port) {
    const step = port.dataset.step;
    let input = port.dataset.input;
    if (input === "+") input = source.split(".").pop();
    if (source.split(".")[0] === step) return;
    edit({ op: "connect", step, input, source });
  }

  function wire(svg) {
    let drag = null;
    const point = (event) => {
      const box = svg.getBoundingClientRect();
      return [event.clientX - box.left, event.clientY - box.top];
    };
    svg.addEventListener("pointerdown", (event) => {
      const port = event.target.closest(".port.out");
      if (!port) return;
      event.preventDefault();
      const [x, y] = point(event);
      drag = { source: port.dataset.source, from: [x, y], moved: false,
        line: svgEl("path", { class: "drag", d: `M${x},${y} L${x},${y}` }, svg) };
    });
    svg.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const [x, y] = point(event);
      drag.moved = true;
      drag.line.setAttribute("d", `M${drag.from[0]},${drag.from[1]} L${x},${y}`);
    });
    const finish = (event) => {
      if (!drag) return;
      const ended = drag;
      drag = null;
      ended.line.remove();
      const target = document.elementFromPoint(event.clientX, event.clientY);
      const port = target && target.closest && target.closest(".port.in");
      if (port) connect(ended.source, port);
      else if (!ended.moved) arm(ended.source);
    };
    svg.addEventListener("pointerup", finish);
    svg.addEventListener("pointerleave", (event) => { if (drag) finish(event); });
    svg.addEventListener("click", (event) => {
      const port = event.target.closest(".port");
      if (port) {
        if (port.classList.contains("in") && armed) connect(armed, port);
        return;
      }
      const card = event.target.closest(".card[data-card]");
      if (card && !card.dataset.card.startsWith("inputs.")) select(card.dataset.card);
    });
    svg.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" && event.key !== " ") return;
      const port = event.target.closest(".port");
      if (port && port.classList.contains("out")) arm(port.dataset.source);
      else if (port && armed) connect(armed, port);
      else if (event.target.dataset.card) select(event.target.dataset.card);
      else return;
      event.preventDefault();
    });
  }

  function arm(source) {
    armed = source;
    for (const port of host.querySelectorAll(".port.out")) port.classList.toggle("armed", port.dataset.source === source);
  }

  function select(step) {
    selected = step;
    render();
    const card = host.querySelector(`.card[data-card="${CSS.escape(step)}"]`);
    if (card) card.focus();
  }

  /// The selected step's inputs, outputs, parameters and limits, each editable.
  function properties() {
    const panel = $("#properties");
    const step = state.model.steps.find((s) => s.name === selected);
    const h = (tag, text, attrs) => {
      const el = document.createElement(tag);
      if (text !== undefined) el.textContent = text;
      for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
      return el;
    };
    if (!step) {
      drafts.step = null;
      drafts.values.clear();
      panel.replaceChildren(h("h2", "Step"), h("p", "Select a step on the canvas.", { class: "hint" }));
      return;
    }
    const button = (label, change, attrs) => {
      const b = h("button", label, Object.assign({ type: "button" }, attrs || {}));
      b.addEventListener("click", () => {
        // What this row sends is no longer a draft; the rest of the panel's are.
        for (const field of b.parentElement.querySelectorAll("input, textarea, select")) drafts.values.delete(fieldKey(field));
        edit(change());
      });
      return b;
    };
    const rows = [h("h2", "Step " + step.name), h("p", step.kind + " " + (step.code || ""), { class: "hint" })];
    for (const problem of problemsOf(step.name)) {
      rows.push(h("p", (problem.field ? problem.field + ": " : "") + problem.message, { class: "error", role: "alert" }));
    }
    if (step.kind === "module") {
      rows.push(h("h3", "Arguments"));
      const args = h("textarea", step.args.join("\n"), { id: "step-args", rows: 2, "aria-label": "arguments, one per line" });
      const line = h("div");
      line.append(args, button("Set", () => {
        const list = args.value.split("\n").map((a) => a.trim()).filter((a) => a);
        return { op: "set_args", step: step.name, args: list.length ? list : null };
      }, { id: "set-args" }));
      rows.push(line);
    }
    if (step.kind === "module") {
      rows.push(h("h3", "Natives"));
      const natives = h("input", undefined, { id: "step-natives", value: step.natives.join(", "), placeholder: "e.g. gemm", "aria-label": "native functions, separated by commas" });
      const line = h("div");
      line.append(natives, button("Set", () => ({
        op: "set_natives", step: step.name, natives: natives.value.split(",").map((n) => n.trim()).filter((n) => n),
      }), { id: "set-natives" }));
      rows.push(line);
    }
    rows.push(h("h3", "Inputs"));
    for (const [input, source] of Object.entries(step.inputs)) {
      const line = h("div", input + " ← " + source + " ");
      line.append(button("Disconnect", () => ({ op: "disconnect", step: step.name, input }), { "aria-label": "disconnect " + input }));
      rows.push(line);
    }
    rows.push(h("h3", "Outputs"));
    for (const [output, kind] of Object.entries(step.outputs)) {
      const line = h("div", output + " (" + kind + ") ");
      if (step.kind !== "pipeline") {
        line.append(button("Remove", () => ({ op: "set_output", step: step.name, output, kind: null }), { "aria-label": "remove output " + output }));
      }
      rows.push(line);
    }
    if (step.kind !== "pipeline") {
      const name = h("input", undefined, { id: "new-output-name", placeholder: "name", size: 10, "aria-label": "new output's name" });
      const kind = h("select", undefined, { id: "new-output-kind", "aria-label": "new output's kind" });
      kind.append(h("option", "file"), h("option", "dir"));
      rows.push(h("div"));
      rows[rows.length - 1].append(name, kind, button("Add output", () => ({ op: "set_output", step: step.name, output: name.value.trim(), kind: kind.value }), { id: "add-output" }));
    }
    const editable = (title, op, entries, names) => {
      rows.push(h("h3", title));
      for (const [key, value] of Object.entries(entries)) {
        const input = h("input", undefined, { value, size: 14, "data-key": key, "aria-label": title.toLowerCase() + " " + key });
        const line = h("div", key + " = ");
        line.append(input, button("Set", () => ({ op, step: step.name, name: key, value: input.value })),
          button("Remove", () => ({ op, step: step.name, name: key, value: null }), { "aria-label": "remove " + key }));
        rows.push(line);
      }
      const key = names
        ? h("select", undefined, { "aria-label": "new " + title.toLowerCase() + " name" })
        : h("input", undefined, { placeholder: "name", size: 10, "aria-label": "new " + title.toLowerCase() + " name" });
      if (names) for (const n of names) key.append(h("option", n));
      const value = h("input", undefined, { placeholder: "value", size: 10, "aria-label": "new " + title.toLowerCase() + " value" });
      const line = h("div");
      line.append(key, value, button("Add", () => ({ op, step: step.name, name: key.value.trim(), value: value.value })));
      rows.push(line);
    };
    editable("Parameters", "set_param", step.params);
    editable("Limits", "set_limit", step.limits, ["memory", "timeout", "fuel", "stack", "output", "files", "log"]);
    rows.push(h("h3", ""), button("Remove step", () => ({ op: "remove_step", step: step.name }), { class: "danger", id: "remove-step" }));
    const focused = panel.contains(document.activeElement) ? fieldKey(document.activeElement) : null;
    panel.replaceChildren(...rows);
    if (drafts.step !== step.name) {
      drafts.step = step.name;
      drafts.values.clear();
    }
    for (const field of panel.querySelectorAll("input, textarea, select")) {
      const draft = drafts.values.get(fieldKey(field));
      if (draft !== undefined) field.value = draft;
    }
    const again = focused && [...panel.querySelectorAll("[id], [aria-label]")].find((el) => fieldKey(el) === focused);
    if (again) again.focus();
  }

  $("#add-step-button").addEventListener("click", async () => {
    const step = $("#new-step-name").value.trim();
    if (await edit({ op: "add_step", step, module: $("#new-step-module").value })) {
      $("#new-step-name").value = "";
      select(step);
    }
  });
  $("#save").addEventListener("click", async () => {
    const result = $("#save-result");
    result.textContent = "Saving…";
    const { ok, json } = await post(base, { version: data.version, manifest: state.manifest });
    result.replaceChildren();
    if (!ok) {
      result.textContent = json.detail || "not saved";
      if (json.problems) { state.problems = json.problems; render(); }
      return;
    }
    const link = document.createElement("a");
    link.href = "/pipelines/" + encodeURIComponent(data.pipeline) + "?version=" + encodeURIComponent(json.version);
    link.textContent = "version " + json.version;
    result.append(json.created ? "Saved as " : "Nothing changed: this is ", link,
      json.created ? " (now the default)." : " (the same manifest digest).");
    result.dataset.version = json.version;
    result.dataset.created = json.created;
  });
  render();
}

function init(root) {
  const live = root.querySelector("[data-live]");
  if (live) followRun(root, live);
  graphKeys(root);
  triggerForm(root);
  designer(root);
}

document.addEventListener("DOMContentLoaded", () => init(document));
