// matseg app front end: plain JavaScript, no build step. One object per page (explore, data,
// results, annotate), a hash router, and fetch() calls to the JSON API of matseg/app/server.py.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
};
const pct = (v) => (100 * v).toFixed(1) + " %";
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : v == null ? "-" : String(v));

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(url, options = {}) {
  const response = await fetch(url, options);
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

const postJSON = (url, data, method = "POST") =>
  api(url, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });

function decodeBytes(b64) {
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

// Turbo colour map (Mikhailov 2019, polynomial approximation): t in [0, 1] -> [r, g, b] 0-255.
function turbo(t) {
  t = Math.min(1, Math.max(0, t));
  const r = 34.61 + t * (1172.33 - t * (10793.56 - t * (33300.12 - t * (38394.49 - t * 14825.05))));
  const g = 23.31 + t * (557.33 + t * (1225.33 - t * (3574.96 - t * (1073.77 + t * 707.56))));
  const b = 27.2 + t * (3211.1 - t * (15327.97 - t * (27814 - t * (22569.18 - t * 6838.66))));
  return [r, g, b].map((v) => Math.max(0, Math.min(255, Math.round(v))));
}
const TURBO = Array.from({ length: 256 }, (_, i) => turbo(i / 255));

let INFO = null;

// Otsu's threshold of 8-bit values: the level that best splits them into two classes.
function otsuLevel(values) {
  const hist = new Float64Array(256);
  for (const q of values) hist[q]++;
  const n = values.length;
  let sum = 0;
  for (let i = 0; i < 256; i++) sum += i * hist[i];
  let w0 = 0, sum0 = 0, best = 0, level = 128;
  for (let t = 0; t < 255; t++) {
    w0 += hist[t]; sum0 += t * hist[t];
    const w1 = n - w0;
    if (!w0 || !w1) continue;
    const between = w0 * w1 * (sum0 / w0 - (sum - sum0) / w1) ** 2;
    if (between > best) { best = between; level = t + 1; }
  }
  return level;
}

// ---------------------------------------------------------------------------------- explore

const explore = {
  image: null, // {id, name, width, height}
  positives: [], negatives: [],
  map: null, // {width, height, values: Uint8Array}
  labels: null, // {width, height, values, legend}
  showing: "map",
  lastLatencyMs: null,

  init() {
    $("#file-input").addEventListener("change", (e) => e.target.files[0] && this.upload(e.target.files[0]));
    const stage = $("#stage");
    stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("dragover"); });
    stage.addEventListener("dragleave", () => stage.classList.remove("dragover"));
    stage.addEventListener("drop", (e) => {
      e.preventDefault();
      stage.classList.remove("dragover");
      const file = e.dataTransfer.files[0];
      if (file) this.upload(file);
    });
    $("#examples").addEventListener("change", (e) => {
      if (e.target.value !== "") this.loadExample(Number(e.target.value));
    });
    $("#marks").addEventListener("click", (e) => this.click(e));
    $("#clear-btn").addEventListener("click", () => this.clear());
    $("#opacity").addEventListener("input", () => this.draw());
    $("#show-mask").addEventListener("change", () => this.draw());
    $("#threshold").addEventListener("input", () => {
      $("#auto-threshold").checked = false;
      $("#threshold-value").textContent = this.threshold().toFixed(2);
      if ($("#show-mask").checked) this.draw(); else this.updateArea();
    });
    $("#radius").addEventListener("change", () => this.positives.length && this.query());
    $("#segment-btn").addEventListener("click", () => this.segment());
    $("#photo").addEventListener("load", () => this.layout());
    window.addEventListener("resize", () => this.layout());
  },

  threshold() { return Number($("#threshold").value) / 100; },
  setThreshold(t) {
    $("#threshold").value = String(Math.round(t * 100));
    $("#threshold-value").textContent = this.threshold().toFixed(2);
  },
  radius() { return Math.max(0, Number($("#radius").value) || 0); },

  async upload(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    this.status(`uploading ${file.name}…`);
    try {
      this.setImage(await api("/api/images", { method: "POST", body: form }));
    } catch (err) {
      this.status("");
      showError(`${file.name}: ${err.message}`);
    }
  },

  async loadExample(index) {
    try { this.setImage(await api(`/api/examples/${index}`, { method: "POST" })); }
    catch (err) { showError(err.message); }
  },

  async setImage(image) {
    showError("");
    this.image = image;
    this.positives = []; this.negatives = []; this.map = null; this.labels = null; this.showing = "map";
    $("#legend").replaceChildren();
    const stage = $("#stage");
    stage.classList.remove("empty");
    $(".hint", stage).hidden = true;
    for (const id of ["#photo", "#overlay", "#marks"]) $(id).hidden = false;
    $("#photo").src = `/api/images/${image.id}/display.jpg`;
    this.updateDownloads();
    this.status(`${image.name}: ${image.width}×${image.height} px; computing descriptors…`);
    try {
      const r = await api(`/api/images/${image.id}/describe`, { method: "POST" });
      this.status(`${image.name}: ${image.width}×${image.height} px; descriptors ready (${(r.seconds * 1000).toFixed(0)} ms). Click a material.`);
      document.body.dataset.ready = image.id;
    } catch (err) { showError(err.message); }
  },

  layout() {
    const img = $("#photo");
    const marks = $("#marks");
    marks.width = img.clientWidth; marks.height = img.clientHeight;
    this.drawMarks();
  },

  click(e) {
    if (!this.image) return;
    const img = $("#photo");
    const x = (e.offsetX / img.clientWidth) * this.image.width;
    const y = (e.offsetY / img.clientHeight) * this.image.height;
    const mode = e.altKey ? "neg" : e.shiftKey ? "add" : document.querySelector("input[name=click-mode]:checked").value;
    if (mode === "neg") {
      if (!this.positives.length) { showError("click a positive point first (negatives push other materials down)"); return; }
      this.negatives.push([x, y]);
    } else if (mode === "add") this.positives.push([x, y]);
    else { this.positives = [[x, y]]; this.negatives = []; }
    this.query();
  },

  clear() {
    this.positives = []; this.negatives = []; this.map = null;
    this.draw(); this.updateDownloads();
  },

  async query() {
    if (!this.image || !this.positives.length) return;
    const t0 = performance.now();
    try {
      const r = await postJSON(`/api/images/${this.image.id}/map`,
        { positives: this.positives, negatives: this.negatives, radius: this.radius() });
      const values = decodeBytes(r.data);
      let lo = 255, hi = 0;
      for (const q of values) { if (q < lo) lo = q; if (q > hi) hi = q; }
      this.map = { width: r.width, height: r.height, values, lo, hi };
      this.showing = "map";
      if ($("#auto-threshold").checked) this.setThreshold(otsuLevel(values) / 127.5 - 1);
      this.lastLatencyMs = performance.now() - t0;
      showError("");
      this.draw();
      this.updateDownloads();
      this.status(`${this.positives.length} point(s), ${this.negatives.length} negative; map in ${this.lastLatencyMs.toFixed(0)} ms (server ${(r.seconds * 1000).toFixed(0)} ms)`);
      document.body.dataset.maps = String(Number(document.body.dataset.maps || 0) + 1);
    } catch (err) { showError(err.message); }
  },

  async segment() {
    if (!this.image) return;
    const k = $("#k-input").value.trim();
    this.status("segmenting…");
    try {
      const r = await postJSON(`/api/images/${this.image.id}/segment`, { k: k || null });
      this.labels = { width: r.width, height: r.height, values: decodeBytes(r.data), legend: r.legend };
      this.showing = "labels";
      this.draw();
      this.updateDownloads();
      const legend = $("#legend");
      legend.replaceChildren(...r.legend.map((l) => el("span", {},
        el("span", { class: "swatch", style: `background: rgb(${l.colour.join(",")})` }), `material ${l.label + 1}: ${pct(l.fraction)}`)));
      this.status(`${r.legend.length} materials in ${(r.seconds * 1000).toFixed(0)} ms (click to go back to point maps)`);
    } catch (err) { showError(err.message); }
  },

  draw() {
    const canvas = $("#overlay");
    const ctx = canvas.getContext("2d");
    const alpha = Math.round((Number($("#opacity").value) / 100) * 255);
    const src = this.showing === "labels" ? this.labels : this.map;
    if (!src) { ctx.clearRect(0, 0, canvas.width, canvas.height); this.drawMarks(); this.updateArea(); return; }
    canvas.width = src.width; canvas.height = src.height;
    const out = ctx.createImageData(src.width, src.height);
    const px = out.data;
    if (this.showing === "labels") {
      const colours = {};
      for (const l of src.legend) colours[l.label] = l.colour;
      for (let i = 0; i < src.values.length; i++) {
        const c = colours[src.values[i]] || [0, 0, 0];
        px[4 * i] = c[0]; px[4 * i + 1] = c[1]; px[4 * i + 2] = c[2]; px[4 * i + 3] = alpha;
      }
    } else {
      const mask = $("#show-mask").checked;
      const level = Math.round((this.threshold() + 1) * 127.5);
      for (let i = 0; i < src.values.length; i++) {
        const q = src.values[i];
        if (mask) {
          const on = q >= level;
          px[4 * i] = 0; px[4 * i + 1] = 200; px[4 * i + 2] = 255; px[4 * i + 3] = on ? alpha : 0;
        } else {
          // Stretched from the map's lowest to its highest similarity: the model's similarities
          // between different materials are often still high (0.5-0.8), so a fixed scale hides them.
          const c = TURBO[Math.round((255 * (q - src.lo)) / Math.max(1, src.hi - src.lo))];
          px[4 * i] = c[0]; px[4 * i + 1] = c[1]; px[4 * i + 2] = c[2]; px[4 * i + 3] = alpha;
        }
      }
    }
    ctx.putImageData(out, 0, 0);
    this.drawMarks();
    this.updateArea();
  },

  drawMarks() {
    const canvas = $("#marks");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!this.image) return;
    const sx = canvas.width / this.image.width;
    const r = Math.max(4, this.radius() * sx);
    const mark = ([x, y], colour) => {
      ctx.beginPath(); ctx.arc(x * sx, y * sx, r, 0, 2 * Math.PI);
      ctx.lineWidth = 3; ctx.strokeStyle = "#000"; ctx.stroke();
      ctx.lineWidth = 1.5; ctx.strokeStyle = colour; ctx.stroke();
    };
    this.positives.forEach((p) => mark(p, "#fff"));
    this.negatives.forEach((p) => mark(p, "#ff4040"));
  },

  updateArea() {
    const area = $("#area");
    if (!this.map || this.showing !== "map") { area.textContent = ""; return; }
    const level = Math.round((this.threshold() + 1) * 127.5);
    let n = 0;
    for (const q of this.map.values) if (q >= level) n++;
    const fraction = n / this.map.values.length;
    area.textContent = `mask area ${pct(fraction)} (≈ ${Math.round(fraction * this.image.width * this.image.height).toLocaleString()} px)`;
  },

  updateDownloads() {
    const ids = ["#dl-map-png", "#dl-map-npy", "#dl-mask", "#dl-points"];
    const ready = this.image && this.positives.length;
    for (const id of ids) $(id).classList.toggle("disabled", !ready);
    $("#dl-seg").classList.toggle("disabled", !this.image);
    if (!this.image) return;
    const pts = (list) => list.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(";");
    const q = `pos=${pts(this.positives)}&neg=${pts(this.negatives)}&radius=${this.radius()}`;
    const base = `/api/images/${this.image.id}/download`;
    $("#dl-map-png").href = `${base}/map.png?${q}`;
    $("#dl-map-npy").href = `${base}/map.npy?${q}`;
    $("#dl-mask").href = `${base}/mask.png?${q}&threshold=${this.threshold()}`;
    $("#dl-seg").href = `${base}/segmentation.png?k=${encodeURIComponent($("#k-input").value.trim())}`;
    const points = { image: this.image.name, width: this.image.width, height: this.image.height, model: INFO && INFO.model,
      radius: this.radius(), threshold: this.threshold(), positives: this.positives, negatives: this.negatives };
    const link = $("#dl-points");
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([JSON.stringify(points, null, 2)], { type: "application/json" }));
    link.download = `${this.image.name.replace(/\.[^.]*$/, "")}_points.json`;
  },

  status(text) { $("#status").textContent = text; },
};

// ---------------------------------------------------------------------------------- datasets

const data = {
  async show(rootId, params) {
    const roots = INFO.data;
    const bar = $("#data-roots");
    bar.replaceChildren(...(roots.length ? roots.map((r) => el("a", { class: "button", href: `#/data/${r.id}`, title: r.path }, r.label))
      : [el("span", { class: "muted" }, "No folders to browse: start the app with --data DIR (a dataset, PBR or texture folder).")]));
    const body = $("#data-body");
    body.replaceChildren();
    if (!rootId) { if (roots.length) location.hash = `#/data/${roots[0].id}`; return; }
    if (params.get("item") !== null) return this.item(rootId, params.get("item"), params.get("kind"));
    const page = Number(params.get("page") || 0);
    const r = await api(`/api/data/${rootId}?page=${page}&per_page=48`);
    const pages = Math.max(1, Math.ceil(r.total / r.per_page));
    const pager = el("div", { class: "toolbar" },
      el("strong", {}, `${r.label}`), el("span", { class: "muted" }, `${r.kind}, ${r.total} item(s)`),
      el("a", { class: "button" + (page > 0 ? "" : " disabled"), href: `#/data/${rootId}?page=${page - 1}` }, "‹ prev"),
      `page ${page + 1} / ${pages}`,
      el("a", { class: "button" + (page + 1 < pages ? "" : " disabled"), href: `#/data/${rootId}?page=${page + 1}` }, "next ›"));
    const grid = el("div", { class: "grid" }, ...r.items.map((item) => {
      const q = encodeURIComponent(item);
      return el("a", { href: `#/data/${rootId}?item=${q}&kind=${r.kind}`, class: "thumb" },
        el("img", { src: `/api/data/${rootId}/thumb?item=${q}`, loading: "lazy", alt: item }), item || r.label);
    }));
    body.replaceChildren(pager, grid);
  },

  async item(rootId, item, kind) {
    const body = $("#data-body");
    const q = encodeURIComponent(item);
    const back = el("a", { class: "button", href: `#/data/${rootId}` }, "‹ back");
    if (kind === "pbr") {
      body.replaceChildren(back, el("h3", {}, item), el("img", { src: `/api/data/${rootId}/layer/card?item=${q}`, alt: item }));
      return;
    }
    if (kind === "textures") {
      body.replaceChildren(back, el("h3", {}, item), el("img", { src: `/api/data/${rootId}/thumb?item=${q}&side=1024`, alt: item }));
      return;
    }
    const s = await api(`/api/data/${rootId}/sample?item=${q}`);
    const layer = (name, caption) => el("figure", {}, el("img", { src: `/api/data/${rootId}/layer/${name}?item=${q}`, alt: caption }), el("figcaption", {}, caption));
    const check = s.check.ok
      ? el("p", { class: s.check.warnings.length ? "warn" : "ok" }, s.check.warnings.length ? `check: passes with ${s.check.warnings.length} warning(s)` : "check: passes")
      : el("p", { class: "bad" }, `check: fails`);
    const findings = el("ul", {}, ...s.check.problems.map((p) => el("li", { class: "bad" }, p)), ...s.check.warnings.map((w) => el("li", { class: "warn" }, w)));
    body.replaceChildren(back,
      el("h3", {}, `${s.name}`), el("p", { class: "muted" }, `${s.source} sample, ${s.size[1]}×${s.size[0]} px, ${s.masks.length} material(s), ROI ${pct(s.roi_fraction)} of the image`),
      check, findings,
      el("div", { class: "layers" }, layer("image", "image"), layer("annotation", "annotation (colour per material)"), layer("roi", "ROI"),
        ...s.masks.map((m) => layer(`mask${m.index}`, `${m.name}: ${pct(m.coverage)} of the image`))),
      el("h4", {}, "meta.json"), el("pre", { id: "sample-meta" }, JSON.stringify(s.meta, null, 2)));
  },
};

// ---------------------------------------------------------------------------------- results

const results = {
  runs: [],

  async show() {
    const body = $("#results-body");
    if (!INFO.results.length) {
      body.replaceChildren(el("p", { class: "muted" }, "No results: start the app with --results DIR (a `matseg eval` output folder, or a folder of them)."));
      return;
    }
    this.runs = [];
    for (const root of INFO.results) {
      const r = await api(`/api/results/${root.id}`);
      for (const run of r.runs) this.runs.push({ ...run, root: root.id, key: `${root.id}/${run.name}` });
    }
    const options = this.runs.map((run, i) => el("option", { value: String(i) }, `${run.key} — ${run.task}, ${run.predictor}`));
    const a = $("#run-a"), b = $("#run-b");
    const keepA = a.value, keepB = b.value;
    a.replaceChildren(...options.map((o) => o.cloneNode(true)));
    b.replaceChildren(el("option", { value: "" }, "(none)"), ...options.map((o) => o.cloneNode(true)));
    if (keepA) a.value = keepA;
    if (keepB) b.value = keepB;
    a.onchange = b.onchange = () => this.render();
    this.render();
  },

  render() {
    const picked = [$("#run-a").value, $("#run-b").value].filter((v) => v !== "").map((v) => this.runs[Number(v)]);
    $("#results-body").replaceChildren(...picked.map((run) => this.column(run)));
  },

  column(run) {
    const col = el("div", { class: "run" }, el("h3", {}, run.key), el("p", { class: "muted" }, `${run.task} · ${run.predictor} · ${run.created || ""}`));
    col.append(this.aggregateTable(run));
    const table = el("table", { class: "per-image" });
    let sortKey = run.columns[0], ascending = true;
    const fill = () => {
      const rows = [...run.rows].sort((x, y) => {
        const a = x[sortKey], b = y[sortKey];
        const c = typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b), undefined, { numeric: true });
        return ascending ? c : -c;
      });
      table.replaceChildren(
        el("tr", {}, ...run.columns.map((c) => el("th", { onclick: () => { ascending = sortKey === c ? !ascending : true; sortKey = c; fill(); } },
          c + (c === sortKey ? (ascending ? " ▲" : " ▼") : "")))),
        ...rows.map((row) => el("tr", {}, ...run.columns.map((c) => el("td", {}, fmt(row[c]))))));
    };
    fill();
    col.append(el("h4", {}, "Per image (click a column to sort)"), table, el("h4", {}, "Panels"),
      el("div", { class: "panels" }, ...run.panels.map((p) => el("img", { src: `/files/${run.root}/${p.split("/").map(encodeURIComponent).join("/")}`, loading: "lazy", alt: p }))));
    return col;
  },

  aggregateTable(run) {
    const agg = run.aggregate;
    if (run.task === "masks") {
      return el("table", { class: "aggregate" }, el("tr", {}, el("th", {}, "mIoU segments"), el("th", {}, "mIoU images"), el("th", {}, "segments"), el("th", {}, "images")),
        el("tr", {}, el("td", {}, fmt(agg.miou_segments)), el("td", {}, fmt(agg.miou_images)), el("td", {}, fmt(agg.segments)), el("td", {}, fmt(agg.images))));
    }
    const rows = [];
    for (const [mode, variants] of Object.entries(agg)) {
      for (const [variant, s] of Object.entries(variants || {})) {
        rows.push(el("tr", {}, el("td", {}, `${mode} / ${variant}`), el("td", {}, fmt(s.triplet_point)), el("td", {}, fmt(s.triplet_material)),
          el("td", {}, fmt(s.top1_point)), el("td", {}, fmt(s.images)), el("td", {}, fmt(s.anchors))));
      }
    }
    return el("table", { class: "aggregate" },
      el("tr", {}, ...["mode / variant", "triplet point", "triplet material", "top-1 point", "images", "points"].map((h) => el("th", {}, h))), ...rows);
  },
};

// ---------------------------------------------------------------------------------- annotate

const GROUP_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

const annotate = {
  root: null, doc: null, current: null, history: [], dirty: false,

  async show(rootId, stem) {
    const roots = INFO.bench;
    $("#bench-roots").replaceChildren(...(roots.length ? roots.map((r) => el("a", { class: "button", href: `#/annotate/${r.id}`, title: r.path }, r.label))
      : [el("span", { class: "muted" }, "No benchmark folder: start the app with --bench DIR (DIR/images/ holds the photos; annotations go to DIR/data/).")]));
    const body = $("#annotate-body");
    if (!rootId) { body.replaceChildren(); if (roots.length) location.hash = `#/annotate/${roots[0].id}`; return; }
    this.root = rootId;
    if (!stem) {
      const r = await api(`/api/bench/${rootId}`);
      body.replaceChildren(el("ul", { id: "bench-images" }, ...r.images.map((img) => el("li", {},
        el("a", { href: `#/annotate/${rootId}/${encodeURIComponent(img.stem)}` }, img.image), " ",
        el("span", { class: img.annotated ? "ok" : "muted" }, img.annotated ? "annotated" : "not annotated"),
        img.problem ? el("span", { class: "bad" }, ` ${img.problem}`) : ""))));
      return;
    }
    this.doc = await api(`/api/bench/${rootId}/annotation/${encodeURIComponent(stem)}`);
    this.history = [];
    this.dirty = false;
    const keys = Object.keys(this.doc.groups);
    this.current = keys[0] || null;
    if (!this.current) this.addGroup();
    this.render();
  },

  snapshot() {
    this.history.push(JSON.stringify({ groups: this.doc.groups, relations: this.doc.relations, current: this.current }));
    if (this.history.length > 200) this.history.shift();
    this.dirty = true;
  },

  undo() {
    const last = this.history.pop();
    if (!last) return;
    const s = JSON.parse(last);
    this.doc.groups = s.groups; this.doc.relations = s.relations; this.current = s.current;
    this.render();
  },

  addGroup() {
    this.snapshot();
    const keys = Object.keys(this.doc.groups);
    let n = keys.length + 1;
    while (String(n) in this.doc.groups) n++;
    this.doc.groups[String(n)] = [];
    this.current = String(n);
  },

  render() {
    const doc = this.doc;
    const stage = el("div", { class: "stage", id: "annotate-stage" });
    const img = el("img", { id: "annotate-photo", src: `/api/bench/${this.root}/display/${encodeURIComponent(doc.stem)}`, alt: doc.image });
    const canvas = el("canvas", { id: "annotate-marks" });
    stage.append(img, canvas);
    const radius = el("input", { id: "annotate-radius", type: "number", min: "1", max: "500", value: String(this.radiusValue || Math.max(4, Math.round(Math.max(doc.width, doc.height) / 150))) });
    radius.addEventListener("change", () => { this.radiusValue = Number(radius.value); });
    const draw = () => {
      canvas.width = img.clientWidth; canvas.height = img.clientHeight;
      const ctx = canvas.getContext("2d");
      const s = canvas.width / doc.width;
      Object.entries(doc.groups).forEach(([key, pts], gi) => {
        const colour = GROUP_COLOURS[gi % GROUP_COLOURS.length];
        for (const [x, y, r] of pts) {
          ctx.beginPath(); ctx.arc(x * s, y * s, Math.max(2, r * s), 0, 2 * Math.PI);
          ctx.fillStyle = colour + "88"; ctx.fill();
          ctx.lineWidth = key === this.current ? 2.5 : 1; ctx.strokeStyle = "#fff"; ctx.stroke();
        }
      });
    };
    img.addEventListener("load", draw);
    canvas.addEventListener("click", (e) => {
      if (!this.current) return;
      this.snapshot();
      const s = doc.width / img.clientWidth;
      this.doc.groups[this.current].push([Math.round(e.offsetX * s), Math.round(e.offsetY * s), Number(radius.value) || 1]);
      this.renderSide(); draw();
    });
    canvas.addEventListener("contextmenu", (e) => { // right-click removes the nearest point
      e.preventDefault();
      const s = doc.width / img.clientWidth;
      const x = e.offsetX * s, y = e.offsetY * s;
      let best = null;
      for (const [key, pts] of Object.entries(doc.groups)) {
        pts.forEach(([px, py, r], i) => {
          const d = Math.hypot(px - x, py - y);
          if (d <= Math.max(r, 8 * s) && (!best || d < best.d)) best = { key, i, d };
        });
      }
      if (!best) return;
      this.snapshot();
      doc.groups[best.key].splice(best.i, 1);
      this.renderSide(); draw();
    });
    this.redraw = draw;
    const side = el("div", { class: "side", id: "annotate-side" });
    const editor = el("div", { class: "editor" }, stage, side);
    $("#annotate-body").replaceChildren(
      el("div", { class: "toolbar" }, el("a", { class: "button", href: `#/annotate/${this.root}` }, "‹ images"),
        el("strong", {}, doc.image), el("span", { class: "muted" }, `${doc.width}×${doc.height} px`),
        el("label", {}, "Disc radius ", radius, " px"),
        el("button", { id: "undo-btn", type: "button", onclick: () => this.undo() }, "Undo"),
        el("button", { id: "save-btn", type: "button", onclick: () => this.save() }, "Save"),
        el("span", { id: "save-status", class: "muted" }, ""),
        el("span", { class: "muted" }, "click: add a point to the current group · right-click: remove one · Ctrl+Z: undo")),
      ...doc.warnings.map((w) => el("p", { class: "warn" }, w)), editor);
    this.renderSide();
    if (img.complete) draw();
  },

  renderSide() {
    const doc = this.doc;
    const side = $("#annotate-side");
    const groups = el("div", { class: "groups", id: "groups" }, ...Object.entries(doc.groups).map(([key, pts], gi) =>
      el("div", { class: key === this.current ? "current" : "", "data-group": key, onclick: () => { this.current = key; this.renderSide(); this.redraw(); } },
        el("span", { class: "swatch", style: `display:inline-block;width:1em;height:1em;background:${GROUP_COLOURS[gi % GROUP_COLOURS.length]}` }),
        ` group ${key}: ${pts.length} point(s)`)));
    const checks = Object.keys(doc.groups).map((key) => el("label", {}, el("input", { type: "checkbox", value: key, class: "rel-key" }), ` ${key} `));
    const addRelation = (kind) => {
      const keys = [...side.querySelectorAll(".rel-key:checked")].map((c) => c.value);
      if (keys.length < 2) { showError("tick at least two groups for a partial-similarity relation"); return; }
      this.snapshot();
      doc.relations.push({ kind, keys });
      showError("");
      this.renderSide();
    };
    side.replaceChildren(
      el("h4", {}, "Material groups"), groups,
      el("button", { id: "add-group-btn", type: "button", onclick: () => { this.addGroup(); this.renderSide(); this.redraw(); } }, "Add group"),
      el("button", { type: "button", onclick: () => { if (!this.current) return; this.snapshot(); doc.groups[this.current] = []; this.renderSide(); this.redraw(); } }, "Clear group"),
      el("h4", {}, "Partial similarity"), el("div", {}, ...checks),
      el("button", { id: "rel-square-btn", type: "button", onclick: () => addRelation("[") }, "[a,b] similar (0.6)"),
      el("button", { id: "rel-round-btn", type: "button", onclick: () => addRelation("(") }, "(a,b) weakly (0.3)"),
      el("ul", { class: "relations", id: "relations" }, ...doc.relations.map((rel, i) => el("li", {},
        `${rel.kind}${rel.keys.join(",")}${rel.kind === "[" ? "]" : ")"} `,
        el("button", { type: "button", onclick: () => { this.snapshot(); doc.relations.splice(i, 1); this.renderSide(); } }, "remove")))));
  },

  async save() {
    try {
      const r = await postJSON(`/api/bench/${this.root}/annotation/${encodeURIComponent(this.doc.stem)}`,
        { groups: this.doc.groups, relations: this.doc.relations }, "PUT");
      this.dirty = false;
      showError("");
      $("#save-status").textContent = `saved ${r.points} points in ${r.groups} groups (${r.files.join(", ")})`;
    } catch (err) { showError(err.message); }
  },
};

// ---------------------------------------------------------------------------------- router

async function route() {
  const [path, query] = (location.hash.slice(1) || "/explore").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const view = ["explore", "data", "results", "annotate"].includes(parts[0]) ? parts[0] : "explore";
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${view}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === view);
  showError("");
  try {
    if (view === "data") await data.show(parts[1], new URLSearchParams(query || ""));
    else if (view === "results") await results.show();
    else if (view === "annotate") await annotate.show(parts[1], parts[2]);
    else if (explore.image) explore.layout();
  } catch (err) { showError(err.message); }
  document.body.dataset.view = view;
}

async function start() {
  explore.init();
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "z" && document.body.dataset.view === "annotate") { e.preventDefault(); annotate.undo(); }
  });
  window.addEventListener("beforeunload", (e) => { if (annotate.dirty) { e.preventDefault(); e.returnValue = ""; } });
  try {
    INFO = await api("/api/info");
    $("#model-info").textContent = `model: ${INFO.model} · matseg ${INFO.version}`;
    $("#examples").append(...INFO.examples.map((name, i) => el("option", { value: String(i) }, name)));
  } catch (err) { showError(err.message); return; }
  window.addEventListener("hashchange", route);
  await route();
  document.body.dataset.started = "1";
}

start();
