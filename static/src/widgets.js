// The runtime of one widget frame: live ipywidgets of one cell, in a sandboxed iframe (scripts,
// but an opaque origin: nothing in it can reach the page around it, and it has no storage). Its
// document is only <script src=".../singlecell-widgets.js">; all it knows of the kernel is what
// the cell posts to it, and all it says goes back to the cell by postMessage (the frame does no
// networking at all). One widget manager (html-manager's HTMLManager, ipywidgets 8) holds every
// widget of the cell.
//
// Protocol (every object carries singlecell: "widgets", except the size report):
//   cell → frame  {kind: "msg", msg}         a Jupyter message (comm_open/comm_msg/comm_close,
//                                            status, and outputs captured by an Output widget);
//                                            its buffers as base64 strings
//                 {kind: "display", model_id} show a view of that model, after those shown before
//                 {kind: "ended", text}       the session is over: controls off, `text` shown
//   frame → cell  {kind: "ready"}             once, when it listens (the cell queues until then)
//                 {kind: "send", msg}         a message for the kernel: comm_open/comm_msg/comm_close
//                                            (widget updates and events; comm_close for a
//                                            comm_open of a target other than jupyter.widget)
//                 {singlecell: "size", height} the content's height, whenever it changes
// The cell must pass on the kernel's status messages whose parent is a message sent from here:
// ipywidgets keeps one update of a model in flight until its idle comes.
import { HTMLManager } from "@jupyter-widgets/html-manager/lib/htmlmanager.js";
import * as outputWidgets from "@jupyter-widgets/html-manager/lib/output.js";
import * as base from "@jupyter-widgets/base";
import * as controls from "@jupyter-widgets/controls";
import { marked } from "marked";
import { readable } from "./ansi.js";
import { sizeReporter } from "./size.js";
import CSS from "./widgets.css";

const theme = document.documentElement.dataset.theme === "dark" ? "dark" : "light";

// ---- talking to the cell ----------------------------------------------------------------------

let ended = false; // after "ended" nothing more is posted

function post(obj) {
  if (!ended) parent.postMessage(obj, "*");
}

// Random ids from getRandomValues: crypto.randomUUID needs a secure context, which a frame of an
// http: page is not.
function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const SESSION = uuid(); // one Jupyter session id per frame

function toBase64(buffer) {
  const bytes = ArrayBuffer.isView(buffer)
    ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
    : new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(buffer) {
  // (a buffer posted as binary, not base64, is taken as it is)
  if (buffer instanceof ArrayBuffer) return new DataView(buffer);
  if (ArrayBuffer.isView(buffer)) return new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const s = atob(String(buffer));
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return new DataView(bytes.buffer); // what @jupyterlab/services hands a widget manager
}

// Callbacks of the messages sent, by msg_id, until the kernel's idle status for them: the widget
// models count their updates in flight with them (ipywidgets sends one update of a dragged slider
// at a time, the next when the previous one's idle came).
const pending = new Map();

/** Post a comm message for the kernel; returns its msg_id. */
function sendToKernel(msgType, content, callbacks, metadata, buffers) {
  const msgId = uuid();
  if (ended) return msgId;
  const msg = {
    header: {
      msg_id: msgId, msg_type: msgType, session: SESSION, username: "singlecell",
      date: new Date().toISOString(), version: "5.3",
    },
    parent_header: {},
    // ipywidgets' own metadata is kept: a comm_open from here carries {version: "2.1.0"}, which
    // the kernel side checks
    metadata: metadata || {},
    content,
  };
  if (buffers && buffers.length) msg.buffers = Array.from(buffers, toBase64);
  if (callbacks) pending.set(msgId, callbacks);
  post({ singlecell: "widgets", kind: "send", msg });
  return msgId;
}

// The comm of one widget, as @jupyter-widgets/base's IClassicComm (what its services shim gives a
// manager in JupyterLab), over postMessage.
const comms = new Map(); // comm_id → Comm

class Comm {
  constructor(commId, targetName) {
    this.comm_id = commId;
    this.target_name = targetName;
    this._onMsg = null;
    this._onClose = null;
    comms.set(commId, this);
  }

  open(data, callbacks, metadata, buffers) {
    return sendToKernel("comm_open", { comm_id: this.comm_id, target_name: this.target_name, data }, callbacks, metadata, buffers);
  }

  send(data, callbacks, metadata, buffers) {
    return sendToKernel("comm_msg", { comm_id: this.comm_id, data }, callbacks, metadata, buffers);
  }

  close(data, callbacks, metadata, buffers) {
    comms.delete(this.comm_id);
    return sendToKernel("comm_close", { comm_id: this.comm_id, data: data || {} }, callbacks, metadata, buffers);
  }

  on_msg(callback) { this._onMsg = callback; }

  on_close(callback) { this._onClose = callback; }
}

// ---- the manager ------------------------------------------------------------------------------

// The Output widget as JupyterLab's: it captures the outputs whose parent is the request its
// msg_id names (ipywidgets' `with out:` sets it to the request being handled, and clears it on
// leaving). Unlike JupyterLab it does not sync them back to the kernel: every captured plot
// would go back as one more input of tens of kB per slider move (past the server's 64 KiB input
// limit for a large figure), and only code reading Output.outputs in Python would see it.
const captures = new Map(); // msg_id → Output models capturing it, the latest last

class OutputModel extends outputWidgets.OutputModel {
  initialize(attributes, options) {
    super.initialize(attributes, options);
    this._displays = new Map(); // display_id → output items showing it, for update_display_data
    this.listenTo(this, "change:msg_id", this._capture);
    this.once("comm:close destroy", () => this._uncapture(this.get("msg_id")));
    this._capture();
  }

  _capture() {
    this._uncapture(this.previous("msg_id"));
    const id = this.get("msg_id");
    if (!id) return;
    const list = captures.get(id) || [];
    list.push(this);
    captures.set(id, list);
  }

  _uncapture(id) {
    const list = id && captures.get(id);
    if (!list) return;
    const i = list.indexOf(this);
    if (i >= 0) list.splice(i, 1);
    if (!list.length) captures.delete(id);
  }

  /** One output message (stream, display_data, update_display_data, execute_result, error,
   * clear_output) into this widget. */
  add(msg) {
    const type = msg.header.msg_type;
    const content = msg.content || {};
    const outputs = this.outputs;
    if (type === "clear_output") {
      this.clear_output(Boolean(content.wait)); // wait: cleared when the next output comes
    } else if (type === "update_display_data") {
      const id = content.transient && content.transient.display_id;
      const items = (id && this._displays.get(id)) || [];
      const output = { output_type: "display_data", data: content.data, metadata: content.metadata || {} };
      const now = [];
      for (const item of items) {
        for (let i = 0; i < outputs.length; i++) {
          if (outputs.get(i) !== item) continue;
          outputs.set(i, output);
          now.push(outputs.get(i));
        }
      }
      if (id) this._displays.set(id, now);
    } else if (["stream", "display_data", "execute_result", "error"].includes(type)) {
      const output = { ...content, output_type: type };
      delete output.transient;
      outputs.add(output);
      const id = type === "display_data" && content.transient && content.transient.display_id;
      if (id) this._displays.set(id, [...(this._displays.get(id) || []), outputs.get(outputs.length - 1)]);
    }
  }

  clear_output(wait = false) {
    if (!wait && this._displays) this._displays.clear(); // (also called by initialize, before it is set)
    super.clear_output(wait);
  }
}

const OUTPUT_MODULE = { ...outputWidgets, OutputModel };

// Why a widget cannot be shown, as one line of text (base's ErrorWidgetView shows an icon and
// hides the message behind a click).
class ErrorView extends base.DOMWidgetView {
  render() {
    const error = this.model.get("error");
    const why = error && error.message ? error.message : String(error || "");
    this.el.classList.add("jupyter-widgets", "sc-widget-error");
    this.el.textContent = `${this.model.get("msg") || "This widget cannot be shown"}${why ? `: ${why}` : ""}`;
  }
}
const BASE_MODULE = { ...base, ErrorWidgetView: ErrorView };

const MODULES = {
  // the module, and the major version of ipywidgets 8's (base 2.0.0, controls 2.0.0, output 1.0.0)
  "@jupyter-widgets/base": [BASE_MODULE, "2"],
  "@jupyter-widgets/controls": [controls, "2"],
  "@jupyter-widgets/output": [OUTPUT_MODULE, "1"],
};

class FrameManager extends HTMLManager {
  constructor() {
    super();
    // Markdown in Output widgets through marked (rendermime has no parser of its own)
    this.renderMime = this.renderMime.clone({
      markdownParser: { render: (text) => Promise.resolve(marked.parse(text)) },
    });
  }

  // Only the widgets bundled here: html-manager would hand any other module to a loader (its
  // embedding code fetches them from a CDN); here there is none, and an unknown module is an
  // error shown where the widget would be.
  async loadClass(className, moduleName, moduleVersion) {
    const entry = MODULES[moduleName];
    const major = String(moduleVersion || "").replace(/^[\^~=v]+/, "").split(".")[0];
    if (!entry) throw new Error(`${moduleName} is not available here (only ipywidgets' own widgets are)`);
    if (major !== entry[1]) throw new Error(`${moduleName} ${moduleVersion} is not the version here (ipywidgets 8)`);
    const cls = entry[0][className];
    if (!cls) throw new Error(`${className} is not in ${moduleName}`);
    return cls;
  }

  // Frontend-created widgets (rare: e.g. a widget made in JavaScript) open their comm from here
  async _create_comm(targetName, modelId, data, metadata, buffers) {
    const comm = new Comm(modelId || uuid(), targetName);
    comm.open(data, undefined, metadata, buffers);
    return comm;
  }

  _get_comm_info() {
    return Promise.resolve({});
  }
}

const manager = new FrameManager();

// ---- messages from the kernel -----------------------------------------------------------------

// Messages are handled one at a time, each after the previous one's work (a comm_open's model, a
// comm_msg's state change) is done, as JupyterLab's kernel connection does: an update setting an
// Output widget's msg_id must be in effect before the outputs it captures are routed.
let chain = Promise.resolve();

function iopubCallbacks(msg) {
  const parentId = msg.parent_header && msg.parent_header.msg_id;
  return parentId ? pending.get(parentId) : undefined;
}

async function handle(msg) {
  const type = msg.header && msg.header.msg_type ? msg.header.msg_type : msg.msg_type;
  if (!msg.header) msg.header = { msg_type: type };
  if (!msg.header.msg_type) msg.header.msg_type = type;
  msg.buffers = Array.isArray(msg.buffers) ? msg.buffers.map(fromBase64) : [];
  const content = msg.content || {};
  if (type === "comm_open") {
    const comm = new Comm(content.comm_id, content.target_name);
    if (content.target_name !== manager.comm_target_name) {
      comm.close(); // a target this frontend does not have: closed at once, as Jupyter frontends do
      return;
    }
    await manager.handle_comm_open(comm, msg).catch((error) => console.error("singlecell widgets:", error));
  } else if (type === "comm_msg") {
    const comm = comms.get(content.comm_id);
    if (comm && comm._onMsg) await comm._onMsg(msg);
  } else if (type === "comm_close") {
    const comm = comms.get(content.comm_id);
    comms.delete(content.comm_id);
    if (comm && comm._onClose) await comm._onClose(msg);
  } else if (type === "status") {
    const callbacks = iopubCallbacks(msg);
    if (!callbacks) return;
    if (callbacks.iopub && callbacks.iopub.status) callbacks.iopub.status(msg);
    if (content.execution_state === "idle") pending.delete(msg.parent_header.msg_id);
  } else {
    // an output: to the Output widget capturing its request (the latest, as JupyterLab's message
    // hooks), else to the callbacks of the message it answers, as base's services shim does
    const parentId = msg.parent_header && msg.parent_header.msg_id;
    const capturing = parentId && captures.get(parentId);
    if (capturing && capturing.length) {
      capturing[capturing.length - 1].add(msg);
      return;
    }
    const iopub = (iopubCallbacks(msg) || {}).iopub;
    if (!iopub) return;
    if (type === "clear_output" && iopub.clear_output) iopub.clear_output(msg);
    else if (["display_data", "execute_result", "stream", "error"].includes(type) && iopub.output) iopub.output(msg);
  }
}

// ---- the page ---------------------------------------------------------------------------------

const style = document.createElement("style");
style.textContent = CSS;
// links (an HTML widget's, an output's) open in a new tab, not in place of the widgets
const baseTarget = document.createElement("base");
baseTarget.target = "_blank";
document.head.append(style, baseTarget);

const area = document.createElement("div");
area.id = "sc-widgets";
document.body.append(area);

// Show a view of a model, in the order asked. Waits for the messages that came before (the
// model's comm_open, normally), then for the model itself (get_model keeps looking a while).
function display(modelId) {
  const box = document.createElement("div");
  box.className = "sc-widget";
  area.append(box);
  chain.then(async () => {
    let model;
    try {
      model = await manager.get_model(String(modelId));
    } catch {
      box.className = "sc-widget-error";
      box.textContent = "This widget is gone (its model never came).";
      return;
    }
    await manager.display_view(manager.create_view(model), box);
  }).catch((error) => {
    console.error("singlecell widgets:", error);
    box.className = "sc-widget-error";
    box.textContent = `This widget cannot be shown: ${error && error.message ? error.message : error}`;
  });
}

function end(text) {
  document.body.classList.add("sc-ended");
  area.inert = true; // no focus, no clicks, no keys: nothing can change any more
  if (document.activeElement && area.contains(document.activeElement)) document.activeElement.blur();
  const note = document.createElement("div");
  note.className = "sc-ended-note";
  note.textContent = String(text || "");
  document.body.append(note);
  report();
  ended = true; // the last post was the size above
  pending.clear();
}

window.addEventListener("message", (event) => {
  if (event.source !== parent || ended) return;
  const data = event.data;
  if (!data || data.singlecell !== "widgets") return;
  if (data.kind === "msg" && data.msg && typeof data.msg === "object") {
    const msg = data.msg;
    chain = chain.then(() => handle(msg)).catch((error) => console.error("singlecell widgets:", error));
  } else if (data.kind === "display") {
    display(data.model_id);
  } else if (data.kind === "ended") {
    end(data.text);
  }
});

// RGB colours in Output widgets' text (IPython's syntax highlighting in tracebacks) kept readable
// on the theme's background, as the cell does (ansi.js); the 16 named colours are set in the CSS.
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType !== 1) continue;
      for (const span of node.querySelectorAll(".jp-RenderedText span[style]")) {
        if (span.style.color.startsWith("rgb")) span.style.color = readable(span.style.color, theme);
      }
    }
  }
}).observe(area, { childList: true, subtree: true });

// ---- height -----------------------------------------------------------------------------------

const report = sizeReporter(post);

post({ singlecell: "widgets", kind: "ready" });

new ResizeObserver(report).observe(document.body);
window.addEventListener("load", report);
report();
