// The cell's side of its live widgets (ipywidgets, over the Jupyter comm protocol).
//
// The widgets run in one sandboxed frame per cell (scripts, an opaque origin, no storage): its
// runtime, singlecell-widgets.js (html-manager, ipywidgets 8), is loaded by the frame the first
// time the cell shows a widget, never before and never in the page. This host passes the frame
// the kernel's comm messages, the statuses that answer what the frame sent (ipywidgets keeps one
// update in flight until its idle), and the output an Output widget captures; it checks that
// every message it takes came from its own frame, and it does all the networking: what the frame
// sends goes, in order, to POST /input/<id>.
import { el, listen } from "./render.js";

export const WIDGET_VIEW = "application/vnd.jupyter.widget-view+json";
const COMMS = new Set(["comm_open", "comm_msg", "comm_close"]);
const OUTPUTS = new Set(["stream", "display_data", "update_display_data", "execute_result", "error", "clear_output"]);
const RUNTIME = `/static/singlecell-widgets.js?v=${__BUILD__}`;

const attr = (s) => String(s).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");

export class WidgetHost {
  /**
   * @param {string} server the singlecell server's URL
   * @param {string} theme "light" or "dark"
   * @param {(node: Element) => void} place puts the frame in the output, where the first widget shows
   * @param {(msg: object) => void} send takes a message for the kernel
   */
  constructor(server, theme, place, send) {
    this.server = server;
    this.theme = theme;
    this.place = place;
    this.send = send;
    this.frame = null;
    this.ready = false;
    this.backlog = []; // for the frame, until it is made and says it is ready
    this.outputs = new Map(); // comm_id of each Output widget → the msg_id it captures ("" none)
    this.sent = new Set(); // msg_ids of what the frame sent, until their idle came
    this.over = false;
    this.onMessage = (event) => this._received(event);
  }

  /** Whether a widget was shown. */
  get shown() { return this.frame !== null; }

  /** Take a message of the cell's output; true when it is the widgets' (the cell shows nothing of it). */
  handle(msg) {
    const type = msg.msg_type;
    const c = msg.content || {};
    if (COMMS.has(type)) {
      this._trackOutputs(type, c);
      this._post({ kind: "msg", msg });
      return true;
    }
    const parent = (msg.parent_header || {}).msg_id;
    if (type === "status") {
      if (parent && this.sent.has(parent)) {
        this._post({ kind: "msg", msg });
        if ((c.execution_state) === "idle") this.sent.delete(parent);
      }
      return false;
    }
    if (OUTPUTS.has(type) && parent) {
      for (const capturing of this.outputs.values()) {
        if (capturing === parent) {
          this._post({ kind: "msg", msg });
          return true;
        }
      }
    }
    return false;
  }

  /** Show a view of the model (a display_data of widget-view+json). */
  display(modelId) {
    if (!this.frame) this._makeFrame();
    this._post({ kind: "display", model_id: String(modelId) });
  }

  /** The session is over: the widgets stop taking input, and say why. */
  ended(text) {
    if (this.over) return;
    this.over = true;
    this._post({ kind: "ended", text });
  }

  /** Forget the frame (the output was cleared for a new run). */
  reset() {
    window.removeEventListener("message", this.onMessage);
    this.frame = null;
    this.backlog = [];
    this.outputs.clear();
    this.sent.clear();
  }

  _trackOutputs(type, c) {
    const state = c.data && c.data.state;
    if (type === "comm_open" && state && state._model_name === "OutputModel") {
      this.outputs.set(c.comm_id, state.msg_id || "");
    } else if (type === "comm_msg" && this.outputs.has(c.comm_id) && c.data && c.data.method === "update"
               && state && "msg_id" in state) {
      this.outputs.set(c.comm_id, state.msg_id || "");
    } else if (type === "comm_close") {
      this.outputs.delete(c.comm_id);
    }
  }

  _makeFrame() {
    const f = el("iframe", "sc-frame sc-frame-widgets");
    // scripts, but no allow-same-origin: the widgets' origin is opaque, so they cannot reach the page
    f.setAttribute("sandbox", "allow-scripts allow-popups allow-popups-to-escape-sandbox");
    f.setAttribute("referrerpolicy", "no-referrer");
    f.setAttribute("title", "widgets");
    f.srcdoc = `<!doctype html><html data-theme="${this.theme === "dark" ? "dark" : "light"}"><head>` +
      `<meta charset="utf-8"></head><body><script src="${attr(this.server + RUNTIME)}"></script></body></html>`;
    const box = el("div", "sc-display sc-widgets");
    box.setAttribute("data-mime", WIDGET_VIEW);
    box.append(f);
    this.frame = f;
    listen(); // its height, as every output frame's
    window.addEventListener("message", this.onMessage);
    this.place(box); // before the frame loads: moving an iframe later would reload it
  }

  _post(data) {
    if (!this.frame || !this.ready) {
      this.backlog.push(data);
      return;
    }
    this.frame.contentWindow.postMessage({ singlecell: "widgets", ...data }, "*");
  }

  _received(event) {
    if (!this.frame || event.source !== this.frame.contentWindow) return; // only our own frame
    const data = event.data;
    if (!data || data.singlecell !== "widgets") return;
    if (data.kind === "ready" && !this.ready) {
      this.ready = true;
      const waiting = this.backlog;
      this.backlog = [];
      for (const item of waiting) this._post(item);
    } else if (data.kind === "send" && !this.over) {
      const msg = data.msg;
      if (!msg || typeof msg !== "object" || !msg.header || typeof msg.header.msg_id !== "string") return;
      this.sent.add(msg.header.msg_id);
      this.send(msg);
    }
  }
}
