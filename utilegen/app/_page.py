"""The web app's single page (HTML, CSS and plain JavaScript, no build step).

Kept in a Python module so it ships inside the package with any kind of install. Every
value from the server or from a file name is put on the page with ``textContent`` (never
as HTML), so no upload can inject markup.
"""

INDEX_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>utilegen · particle size and shape</title>
<link rel="icon" href="data:,">
<style>
  :root { --fg: #1d2330; --muted: #5b6475; --line: #d9dee7; --accent: #2158d1; --bad: #b3261e; }
  * { box-sizing: border-box; }
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
         margin: 0; background: #f6f7fa; }
  header { background: #1d2330; color: #fff; padding: 14px 24px; }
  header h1 { font-size: 20px; margin: 0; }
  header p { margin: 2px 0 0; color: #c5cbd8; font-size: 13px; }
  main { max-width: 1200px; margin: 0 auto; padding: 20px 24px 60px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
            margin-bottom: 18px; }
  h2 { font-size: 17px; margin: 0 0 12px; }
  #dropzone { border: 2px dashed #9aa6bd; border-radius: 8px; padding: 28px; text-align: center;
              color: var(--muted); cursor: pointer; background: #fbfcfe; }
  #dropzone.over { border-color: var(--accent); background: #eef3ff; color: var(--accent); }
  #file-list { list-style: none; padding: 0; margin: 10px 0 0; font-size: 14px; }
  #file-list li { display: flex; justify-content: space-between; gap: 8px; padding: 3px 0;
                  border-bottom: 1px solid #eef0f4; }
  #file-list li.bad { color: var(--bad); }
  #file-list button { border: none; background: none; color: var(--muted); cursor: pointer; }
  .controls { display: flex; flex-wrap: wrap; gap: 16px; align-items: end; margin-top: 14px; }
  label { display: flex; flex-direction: column; font-size: 13px; color: var(--muted); gap: 3px; }
  input[type=number], select { font: inherit; padding: 5px 8px; border: 1px solid #b9c1d0;
                               border-radius: 5px; min-width: 130px; }
  button.primary { font: inherit; background: var(--accent); color: #fff; border: none;
                   border-radius: 5px; padding: 8px 20px; cursor: pointer; }
  button.primary:disabled { background: #9aa6bd; cursor: default; }
  #status { margin-top: 12px; min-height: 1.4em; }
  #status.error, .error { color: var(--bad); }
  progress { width: 260px; vertical-align: middle; }
  .hint { color: var(--muted); font-size: 13px; }
  table { border-collapse: collapse; font-size: 13px; }
  th, td { border-bottom: 1px solid #e6e9ef; padding: 3px 10px; text-align: right; white-space: nowrap; }
  th { background: #f2f4f8; position: sticky; top: 0; }
  td:first-child, th:first-child { text-align: left; }
  .batch { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 20px; }
  .batch img { width: 100%; border: 1px solid var(--line); }
  .downloads a { display: inline-block; margin: 0 14px 8px 0; }
  .card { border-top: 1px solid var(--line); padding: 14px 0; }
  .card h3 { font-size: 15px; margin: 0 0 8px; word-break: break-all; }
  .card .body { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 18px; }
  .card img { width: 100%; border: 1px solid var(--line); }
  .scroll { max-height: 420px; overflow: auto; border: 1px solid var(--line); }
  @media (max-width: 800px) { .batch, .card .body { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1>utilegen</h1>
  <p>Particle size distributions and shape statistics from electron micrographs</p>
</header>
<main>
  <section id="upload">
    <h2>1 · Micrographs</h2>
    <div id="dropzone" tabindex="0" role="button" aria-label="Choose or drop micrographs">
      Drop micrographs here, or click to choose files
      <div class="hint" id="limits"></div>
    </div>
    <input id="file-input" type="file" multiple accept=".png,.tif,.tiff,.jpg,.jpeg,.bmp,image/*" hidden>
    <ul id="file-list"></ul>
    <div class="controls">
      <label>Pixel size <input id="pixel-size" type="number" min="0" step="any" placeholder="e.g. 0.5"></label>
      <label>Unit
        <select id="unit"><option>nm</option><option>µm</option><option>Å</option><option value="px">px (uncalibrated)</option></select>
      </label>
      <button id="analyze" class="primary" disabled>Analyze</button>
      <span class="hint">Leave it empty to use each file's calibration or its scale bar (the
      result says which); images with neither are measured in pixels.</span>
    </div>
    <div id="status" role="status" aria-live="polite"></div>
  </section>

  <section id="results" hidden>
    <h2>2 · Batch results</h2>
    <div id="messages"></div>
    <div class="downloads">
      <a id="download-csv" download="particles.csv">Particle table (CSV)</a>
      <a id="download-summary" download="summary.csv">Summary (CSV)</a>
      <a id="download-zip" download="utilegen-report.zip">Full report (ZIP: overlays, label TIFFs)</a>
    </div>
    <div class="batch">
      <div><img id="psd" alt="Particle size distribution: histogram, KDE and log-normal fit"></div>
      <div>
        <table id="stats"><thead><tr><th>statistic (equivalent diameter)</th><th>value</th></tr></thead><tbody></tbody></table>
      </div>
    </div>
    <h2 style="margin-top:18px">Per image</h2>
    <div class="scroll" style="max-height:260px"><table id="per-image"></table></div>
  </section>

  <section id="images-section" hidden>
    <h2>3 · Images</h2>
    <div id="images"></div>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let limits = {max_files: 20, max_bytes: 25 * 1024 * 1024, types: ["PNG", "TIFF", "JPEG", "BMP"]};
let selected = [];
const OK_EXT = /\.(png|tif|tiff|jpe?g|bmp)$/i;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function mb(n) { return (n / 1024 / 1024).toFixed(n < 1024 * 1024 ? 2 : 1) + " MB"; }
function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(+v.toPrecision(4));
  return String(v);
}
function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

fetch("/api/config").then((r) => r.json()).then((c) => {
  limits = c;
  $("limits").textContent = `${c.types.join(", ")} · up to ${c.max_files} files · ${mb(c.max_bytes)} each`;
}).catch(() => {});

function problem(file) {
  if (!OK_EXT.test(file.name)) return "not a PNG, TIFF, JPEG or BMP file";
  if (file.size === 0) return "empty file";
  if (file.size > limits.max_bytes) return `too large (${mb(file.size)}; limit ${mb(limits.max_bytes)})`;
  return null;
}

function addFiles(files) {
  for (const f of files) {
    if (!selected.some((s) => s.name === f.name && s.size === f.size)) selected.push(f);
  }
  renderFileList();
}

function renderFileList() {
  const list = $("file-list");
  list.replaceChildren();
  selected.forEach((f, i) => {
    const bad = problem(f);
    const li = el("li", null, bad ? "bad" : "");
    li.append(el("span", f.name), el("span", bad ? bad : mb(f.size)));
    const rm = el("button", "✕");
    rm.title = "remove";
    rm.onclick = (ev) => { ev.stopPropagation(); selected.splice(i, 1); renderFileList(); };
    li.append(rm);
    list.append(li);
  });
  const good = selected.filter((f) => !problem(f));
  let msg = "";
  if (good.length > limits.max_files) msg = `Too many files: at most ${limits.max_files} per upload.`;
  $("analyze").disabled = good.length === 0 || good.length > limits.max_files;
  setStatus(msg, !!msg);
}

const dz = $("dropzone");
dz.addEventListener("click", () => $("file-input").click());
dz.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file-input").click(); });
$("file-input").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
["dragenter", "dragover"].forEach((t) => dz.addEventListener(t, (e) => { e.preventDefault(); dz.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => dz.addEventListener(t, (e) => { e.preventDefault(); dz.classList.remove("over"); }));
dz.addEventListener("drop", (e) => { if (e.dataTransfer && e.dataTransfer.files) addFiles(e.dataTransfer.files); });
$("unit").addEventListener("change", () => { $("pixel-size").disabled = $("unit").value === "px"; });

$("analyze").addEventListener("click", async () => {
  const good = selected.filter((f) => !problem(f));
  const form = new FormData();
  good.forEach((f) => form.append("files", f, f.name));
  form.append("pixel_size", $("pixel-size").value);
  form.append("unit", $("unit").value);
  $("analyze").disabled = true;
  setStatus(`Uploading ${good.length} image(s)…`);
  let job;
  try {
    const r = await fetch("/api/jobs", {method: "POST", body: form});
    const body = await r.json().catch(() => ({detail: `server error ${r.status}`}));
    if (!r.ok) {
      let text = body.detail || `upload failed (${r.status})`;
      if (body.rejected) text += ": " + body.rejected.map((x) => `${x.name} — ${x.reason}`).join("; ");
      setStatus(text, true);
      $("analyze").disabled = false;
      return;
    }
    job = body;
  } catch (err) {
    setStatus("The upload failed: " + err, true);
    $("analyze").disabled = false;
    return;
  }
  poll(job);
});

async function poll(job) {
  let state;
  try {
    const r = await fetch(job.url, {cache: "no-store"});
    state = await r.json();
    if (!r.ok) throw new Error(state.detail || r.status);
  } catch (err) {
    setStatus("Lost contact with the server: " + err, true);
    $("analyze").disabled = false;
    return;
  }
  if (state.status === "queued" || state.status === "running") {
    const s = $("status");
    s.className = "";
    s.replaceChildren(el("span", `Analyzing ${state.done} / ${state.total} image(s)… `));
    const p = el("progress");
    p.max = state.total; p.value = state.done;
    s.append(p);
    setTimeout(() => poll(job), 400);
    return;
  }
  $("analyze").disabled = false;
  if (state.status === "failed") { setStatus(state.error || "The analysis failed.", true); return; }
  render(state);
}

function table(columns, rows) {
  const t = el("table");
  const tr = el("tr");
  columns.forEach((c) => tr.append(el("th", c.replace(/_/g, " "))));
  t.append(el("thead")); t.tHead.append(tr);
  const tb = el("tbody");
  rows.forEach((row) => {
    const r = el("tr");
    row.forEach((v) => r.append(el("td", fmt(v))));
    tb.append(r);
  });
  t.append(tb);
  return t;
}

function render(state) {
  const res = state.result;
  setStatus(`Done: ${res.particles} particles in ${res.images.length} image(s).`);
  $("results").hidden = false;
  $("images-section").hidden = false;
  const msgs = $("messages");
  msgs.replaceChildren();
  const skipped = (state.rejected || []).concat(res.errors || []);
  if (skipped.length) {
    const ul = el("ul", null, "error");
    ul.id = "rejected";
    skipped.forEach((x) => ul.append(el("li", `${x.name} was skipped: ${x.reason}`)));
    msgs.append(ul);
  }
  (res.warnings || []).forEach((w) => msgs.append(el("p", w, "hint")));
  $("download-csv").href = res.csv_url;
  $("download-summary").href = res.summary_csv_url;
  $("download-zip").href = res.zip_url;
  $("psd").src = res.psd_url;
  const sb = $("stats").tBodies[0];
  sb.replaceChildren();
  res.stats.forEach((s) => {
    const r = el("tr");
    r.append(el("td", s.name), el("td", fmt(s.value) + (s.unit && s.value !== null ? " " + s.unit : "")));
    sb.append(r);
  });
  $("per-image").replaceWith(Object.assign(table(res.per_image_columns, res.per_image), {id: "per-image"}));
  const box = $("images");
  box.replaceChildren();
  res.images.forEach((im) => {
    const card = el("div", null, "card");
    card.dataset.index = im.index;
    const cls = im.image_class ? ` · class: ${im.image_class}` : "";
    card.append(el("h3", `${im.name} — ${im.particles} particles measured (${im.width} × ${im.height} px)${cls}`));
    const cal = el("p", `Calibration: ${im.calibration}. Wrong? Type the pixel size above and analyze again.`, "hint calibration");
    card.append(cal);
    const body = el("div", null, "body");
    const a = el("a");
    a.href = im.overlay_url; a.target = "_blank"; a.rel = "noopener";
    const img = el("img", null, "overlay");
    img.alt = `Overlay of ${im.name}: particle outlines and ids`;
    img.src = im.overlay_url;
    img.loading = "lazy";
    a.append(img);
    const scroll = el("div", null, "scroll");
    const t = table(im.columns, im.rows);
    t.className = "particles";
    scroll.append(t);
    body.append(a, scroll);
    card.append(body);
    box.append(card);
  });
}
</script>
</body>
</html>
"""
