// Jupyter messages to DOM, inside the cell's shadow root. Text is set with textContent and
// images as data: URLs; HTML, Markdown, LaTeX and JavaScript go to sandboxed iframes. Nothing a
// kernel sends is ever evaluated in, or parsed as HTML by, the host page.
import { appendAnsi, stripAnsi } from "./ansi.js";
import FRAME_CSS from "./frame.css";

/** Richest first; the first type a bundle has is the one shown. */
export const MIME_ORDER = [
  "text/html", "text/markdown", "text/latex", "image/svg+xml", "image/png", "image/jpeg", "image/gif",
  "application/json", "application/javascript", "text/plain",
];
const MAX_FRAME_HEIGHT = 4000; // px; taller output scrolls inside its frame

const liveFrames = new Set(); // every output frame shown, to match a message to its sender
let listening = false;

/** Start taking the size reports of output frames (once a page). */
export function listen() {
  if (listening) return;
  listening = true;
  window.addEventListener("message", (event) => {
    const data = event.data;
    if (!data || data.singlecell !== "size") return;
    let frame = null;
    for (const f of liveFrames) if (f.contentWindow === event.source) frame = f;
    if (!frame) return;
    const height = Number(data.height);
    if (Number.isFinite(height)) {
      frame.style.height = `${Math.min(Math.max(height, 4), MAX_FRAME_HEIGHT)}px`;
      frame.setAttribute("data-sized", "true");
    }
  });
}

/** A new element; its text, if any, set as text (never parsed as HTML). */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const attr = (s) => String(s).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
const asText = (value) => (Array.isArray(value) ? value.join("") : String(value));

// set by the build: with ?v=, the server lets browsers cache these for good
const FRAME_RUNTIME = `/static/singlecell-frame.js?v=${__BUILD__}`;
const MATHJAX = `/static/mathjax/tex-svg-full.js?v=${__MATHJAX_VERSION__}`;

function frameDocument(kind, payload, server, theme) {
  const runtime = `<script src="${attr(server + FRAME_RUNTIME)}" data-kind="${kind}" ` +
    `data-mathjax="${attr(server + MATHJAX)}"></script>`;
  const head = `<!doctype html><html data-theme="${theme === "dark" ? "dark" : "light"}"><head><meta charset="utf-8">` +
    `<base target="_blank"><style>${FRAME_CSS}</style>`;
  if (kind === "html") return `${head}${runtime}</head><body>${payload}</body></html>`;
  if (kind === "javascript") {
    // as in Jupyter, the code gets `element`, here the frame's body
    const code = payload.replace(/<\/(script)/gi, "<\\/$1");
    return `${head}${runtime}</head><body><script>var element = document.body;\n${code}\n</script></body></html>`;
  }
  const data = JSON.stringify(payload).replace(/</g, "\\u003c");
  return `${head}<script type="application/json" id="sc-data">${data}</script>${runtime}</head><body></body></html>`;
}

function frame(kind, payload, server, theme) {
  listen();
  const f = el("iframe", `sc-frame sc-frame-${kind}`);
  // scripts, but no allow-same-origin: the frame's origin is opaque, so it cannot reach this page
  f.setAttribute("sandbox", "allow-scripts allow-popups allow-popups-to-escape-sandbox");
  f.setAttribute("referrerpolicy", "no-referrer");
  f.setAttribute("title", `${kind === "html" ? "HTML" : kind === "latex" ? "LaTeX" : kind} output`);
  f.srcdoc = frameDocument(kind, payload, server, theme);
  return f;
}

function image(mime, data, metadata) {
  const img = el("img", "sc-image");
  img.alt = mime === "image/svg+xml" ? "SVG image" : "plot";
  img.src = mime === "image/svg+xml"
    ? `data:image/svg+xml;charset=utf-8,${encodeURIComponent(asText(data))}`
    : `data:${mime};base64,${asText(data).replace(/\s/g, "")}`;
  const meta = (metadata && metadata[mime]) || {};
  if (Number(meta.width) > 0) img.width = Number(meta.width);
  if (Number(meta.height) > 0) img.height = Number(meta.height);
  return img;
}

/** One element for a MIME bundle (execute_result / display_data), or null when it has no type we
 * show; frames take the cell's theme ("light" or "dark"). */
export function renderBundle(data, metadata, server, theme) {
  const mime = MIME_ORDER.find((m) => data && data[m] !== undefined && data[m] !== null);
  if (!mime) return null;
  const value = data[mime];
  let node;
  if (mime === "text/html") node = frame("html", asText(value), server, theme);
  else if (mime === "text/markdown") node = frame("markdown", asText(value), server, theme);
  else if (mime === "text/latex") node = frame("latex", asText(value), server, theme);
  else if (mime === "application/javascript") node = frame("javascript", asText(value), server, theme);
  else if (mime.startsWith("image/")) node = image(mime, value, metadata);
  else if (mime === "application/json") node = el("pre", "sc-json", JSON.stringify(value, null, 2));
  else {
    node = el("pre", "sc-text");
    appendAnsi(node, asText(value), theme);
  }
  const box = el("div", "sc-display");
  box.setAttribute("data-mime", mime);
  box.append(node);
  return box;
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} kB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The output area of one run: messages in, DOM out. */
export class Output {
  constructor(area, filesArea, server, theme) {
    this.area = area;
    this.filesArea = filesArea;
    this.server = server;
    this.theme = theme;
    this.clear();
  }

  clear() {
    if (this.area.firstChild) this.track(null, this.area);
    this.area.replaceChildren();
    this.filesArea.replaceChildren();
    this.lastStream = null;
    this.lastError = null;
    this.displays = new Map(); // display_id → elements showing it
    this.clearPending = false;
    this.widgets = null; // the run's WidgetHost, set by the cell
  }

  /** Frames in `node` start reporting their size; those of `old` (replaced or cleared) stop. */
  track(node, old) {
    for (const f of old ? old.querySelectorAll("iframe") : []) liveFrames.delete(f);
    for (const f of node ? node.querySelectorAll("iframe") : []) liveFrames.add(f);
  }

  append(node) {
    this.track(node);
    if (this.clearPending) {
      this.track(null, this.area);
      this.area.replaceChildren();
      this.clearPending = false;
    }
    this.area.append(node);
    this.lastStream = null;
  }

  add(msg) {
    const type = msg.msg_type;
    const c = msg.content || {};
    if (type === "stream") this.stream(c.name, asText(c.text || ""));
    else if (type === "execute_result" || type === "display_data") this.display(c);
    else if (type === "update_display_data") this.update(c);
    else if (type === "clear_output") {
      if (c.wait) this.clearPending = true;
      else { this.track(null, this.area); this.area.replaceChildren(); this.lastStream = null; }
    } else if (type === "error") this.error(c);
    else if (type === "extension" && c.msg_type === "files") this.files(c.content.files || []);
    else if (type === "extension" && c.msg_type === "limit") this.limit(c.content || {});
    else if (type === "extension" && c.msg_type === "session_end") this.sessionEnded(c.content || {});
  }

  /** The session ended: say how, in its words, below what it showed. */
  sessionEnded(c) {
    const note = el("div", "sc-session-end", String(c.message || "The session ended."));
    note.setAttribute("role", "status");
    note.setAttribute("data-reason", String(c.reason || ""));
    this.append(note);
  }

  stream(name, text) {
    if (!text) return;
    if (this.clearPending) this.append(document.createTextNode(""));
    if (!this.lastStream || this.lastStream.name !== name) {
      const pre = el("pre", name === "stderr" ? "sc-stream sc-stderr" : "sc-stream sc-stdout");
      pre.setAttribute("data-stream", name);
      this.append(pre);
      this.lastStream = { name, pre };
    }
    appendAnsi(this.lastStream.pre, text, this.theme);
  }

  display(content) {
    const view = content.data && content.data["application/vnd.jupyter.widget-view+json"];
    if (view && view.model_id && this.widgets) { // a live widget: drawn in the cell's widget frame
      this.widgets.display(view.model_id);
      this.lastStream = null;
      return;
    }
    const node = renderBundle(content.data || {}, content.metadata || {}, this.server, this.theme);
    if (!node) return;
    const id = content.transient && content.transient.display_id;
    if (id) {
      node.setAttribute("data-display-id", id);
      if (!this.displays.has(id)) this.displays.set(id, []);
      this.displays.get(id).push(node);
    }
    this.append(node);
  }

  update(content) {
    const id = content.transient && content.transient.display_id;
    for (const old of (id && this.displays.get(id)) || []) {
      const node = renderBundle(content.data || {}, content.metadata || {}, this.server, this.theme);
      if (!node) continue;
      node.setAttribute("data-display-id", id);
      this.track(node, old);
      old.replaceWith(node);
      const list = this.displays.get(id);
      list[list.indexOf(old)] = node;
    }
  }

  error(c) {
    const pre = el("pre", "sc-error");
    pre.setAttribute("role", "alert");
    const traceback = Array.isArray(c.traceback) && c.traceback.length ? c.traceback.join("\n") : "";
    if (traceback) appendAnsi(pre, traceback, this.theme);
    else pre.textContent = `${c.ename}: ${c.evalue}`;
    this.append(pre);
    this.lastError = { ename: c.ename, pre };
  }

  /** A limit stopped the cell: say which, in place of the bare error the kernel sent. */
  limit(c) {
    const note = el("div", "sc-limit");
    note.setAttribute("role", "alert");
    note.setAttribute("data-limit", c.limit || "");
    note.append(el("strong", null, `${c.ename || "Limit"}: `), stripAnsi(String(c.evalue || "")));
    if (this.lastError && this.lastError.ename === c.ename) this.lastError.pre.replaceWith(note);
    else this.append(note);
    this.lastError = null;
  }

  files(files) {
    if (!files.length) return;
    const list = el("ul", "sc-files-list");
    list.setAttribute("aria-label", "files the cell wrote");
    for (const f of files) {
      const item = el("li", "sc-file");
      const url = this.server + f.url;
      const link = el("a", null, f.name);
      link.href = url;
      link.target = "_blank";
      link.rel = "noopener";
      item.append(link, el("span", "sc-size", ` ${formatSize(f.size)}`));
      if (/^image\/(png|jpeg|gif|svg\+xml|webp)$/.test(f.content_type || "")) {
        const img = el("img", "sc-file-image");
        img.src = url;
        img.alt = f.name;
        img.loading = "lazy";
        item.append(img);
      }
      list.append(item);
    }
    this.filesArea.append(list);
  }
}
