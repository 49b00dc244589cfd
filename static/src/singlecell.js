// singlecell.js: turn any element of any page into a Python cell run by a singlecell server.
//
//   <script src="https://SERVER/static/singlecell.js"></script>
//   <div class="singlecell">print("hello")</div>                      (made a cell on load)
//   <script type="text/x-python" class="singlecell">print(1 < 2)</script>
//   new SingleCellBlock(element, {code: "1 + 1", autoeval: true});
//
// The only global it defines is SingleCellBlock. Each cell lives in a shadow root (host CSS
// does not restyle it; its CSS stays in), rich output renders in sandboxed iframes, and no
// output is ever evaluated in the host page. A cell whose widgets stay open after it ran is a
// live session: its widgets (in a sandboxed frame, widgets-host.js) talk to the same kernel.
import ANSI_CSS from "./ansi.css";
import CELL_CSS_ONLY from "./cell.css";
import { EDITORS, createEditor } from "./editor.js";
import { Output, el } from "./render.js";
import { THEMES, blendsIn, resolveTheme } from "./theme.js";
import { watcher } from "./watch.js";
import { WidgetHost } from "./widgets-host.js";

const VERSION = "0.2.0";
const HIDEABLE = ["editor", "evalButton", "stop", "permalink", "status", "output", "files"];
const SUBMIT_RETRIES = 5; // answers of 503 (queue full) waited out before giving up

const script = document.currentScript;
/** The server the script came from: its URL without /static/singlecell.js. */
const DEFAULT_SERVER = script && script.src
  ? script.src.replace(/\/static\/singlecell(\.min)?\.js([?#].*)?$/, "")
  : location.origin;

const CELL_CSS = ANSI_CSS + CELL_CSS_ONLY; // the palette is shared with the widget frames
let sheet = null;
function adoptStyles(root) {
  // a constructed sheet: one for every cell, and no inline <style> for a host CSP to refuse
  if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function" && "replaceSync" in CSSStyleSheet.prototype) {
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(CELL_CSS);
    }
    root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
  } else {
    const style = document.createElement("style");
    style.textContent = CELL_CSS;
    root.append(style);
  }
}

function button(cls, text, title) {
  const b = el("button", cls, text);
  b.type = "button";
  if (title) b.title = title;
  return b;
}

/** The cell's root (or its output box) in `theme`, with an edge of its own unless its
 * background is the page's own behind `where`. */
function themed(root, theme, where) {
  root.dataset.theme = theme;
  if (blendsIn(theme, where)) root.classList.add("sc-flush");
  return root;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Strip the blank lines around code and the indentation all its lines share. */
function dedent(text) {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  while (lines.length && !lines[0].trim()) lines.shift();
  while (lines.length && !lines[lines.length - 1].trim()) lines.pop();
  const indents = lines.filter((l) => l.trim()).map((l) => /^[ \t]*/.exec(l)[0].length);
  const common = indents.length ? Math.min(...indents) : 0;
  return lines.map((l) => l.slice(common)).join("\n");
}

function parseBool(value) {
  return value === true || value === "" || value === "true" || value === "1" || value === "yes";
}

function listOf(value) {
  if (!value) return [];
  return (Array.isArray(value) ? value : String(value).split(/[\s,]+/)).filter(Boolean);
}

/** Options from data-* attributes, overridden by those given in code. */
function readOptions(element, given) {
  const d = element.dataset || {};
  const options = {
    server: d.server,
    code: d.code,
    editor: d.editor,
    evalButtonText: d.evalButtonText,
    autoeval: d.autoeval !== undefined ? parseBool(d.autoeval) : undefined,
    hide: d.hide,
    outputLocation: d.outputLocation,
    timeout: d.timeout !== undefined ? Number(d.timeout) : undefined,
    theme: d.theme,
    snippet: d.snippet,
    linked: d.linked !== undefined ? parseBool(d.linked) : undefined,
    linkKey: d.linkKey,
  };
  for (const [key, value] of Object.entries(given || {})) if (value !== undefined) options[key] = value;
  return options;
}

/** The kernel a page's linked cells share, per server (and link key): a promise of its id. */
const linkedSessions = new Map();

/** An answer from the server that says what went wrong; retrying changes it only when ``transient``. */
class ClientError extends Error {
  constructor(message, transient = false) {
    super(message);
    this.transient = transient;
  }
}

class SingleCellBlock {
  /**
   * @param {Element|string} element where the cell goes (or a selector); a
   *   <script type="text/x-python"> is replaced by a <div> holding the cell
   * @param {object} [options] server, code, editor ("codemirror" | "textarea" | "readonly"),
   *   evalButtonText, autoeval, hide (["editor", "evalButton", "stop", "permalink", "status",
   *   "output", "files"]), outputLocation (element or selector), timeout (seconds), theme ("auto",
   *   the default: from the page's background behind the cell; "light"; "dark"), snippet (a
   *   snippet of the server's library, "id" or "id@revision": its files are in the kernel's
   *   folder, and a one-file snippet's file runs before the cell), linked (true: the page's linked
   *   cells of a server share one kernel, as SageMathCell's linked cells do: what one defines the
   *   next one sees; the first to run starts it, and a new one starts when it ended), linkKey
   *   (linked cells with different keys have kernels of their own), and the
   *   callbacks onStarted({id}), onOutput(msg, seq), onDone({id, status, seconds, files, error}),
   *   onSession({id, state: "live" | "ended", reason, message})
   */
  constructor(element, options) {
    if (typeof element === "string") element = document.querySelector(element);
    if (!(element instanceof Element)) throw new TypeError("SingleCellBlock needs an element, or a selector that finds one");
    if (element.localName === "script") element = SingleCellBlock._replaceScript(element);
    if (element.shadowRoot) throw new Error("this element already holds a cell (or another shadow root)");
    const o = readOptions(element, options);
    const editorKind = o.editor || "codemirror";
    if (!EDITORS.includes(editorKind)) throw new TypeError(`editor must be one of ${EDITORS.join(", ")}, not ${JSON.stringify(editorKind)}`);
    const themeOption = o.theme || "auto";
    if (!THEMES.includes(themeOption)) throw new TypeError(`theme must be one of ${THEMES.join(", ")}, not ${JSON.stringify(o.theme)}`);
    const hide = new Set(listOf(o.hide).map((h) => (h === "share" ? "permalink" : h)));
    for (const h of hide) {
      if (!HIDEABLE.includes(h)) throw new TypeError(`hide takes ${HIDEABLE.join(", ")}, not ${JSON.stringify(h)}`);
    }
    this.element = element;
    this.server = String(o.server || DEFAULT_SERVER).replace(/\/+$/, "");
    this.options = o;
    this.timeout = Number(o.timeout) > 0 ? Number(o.timeout) : undefined;
    this.linked = o.linked === true || o.linked === "true";
    this.linkKey = `${this.server}\n${o.linkKey || ""}`; // cells with the same key share one kernel
    this.requestId = null;
    this.running = null;
    this.generation = 0; // one a run: what an older run still receives is dropped
    this.sessionLive = false;
    this.inputs = Promise.resolve(); // inputs to the session go one after another, in order
    this.unfollow = null;

    const code = o.code !== undefined ? String(o.code) : dedent(element.textContent || "");
    element.textContent = "";
    const root = element.attachShadow({ mode: "open" });
    adoptStyles(root);
    this.theme = resolveTheme(themeOption, element);
    const cell = themed(el("div", "sc"), this.theme, element);
    cell.setAttribute("part", "cell");
    cell.setAttribute("role", "group");
    cell.setAttribute("aria-label", "Python cell");
    const editorBox = el("div", "sc-editor");
    this.runButton = button("sc-run", o.evalButtonText || "Run", "Run the code (Shift+Enter)");
    this.runButton.setAttribute("aria-keyshortcuts", "Shift+Enter");
    this.stopButton = button("sc-stop sc-hidden", "Stop", "Stop the running cell");
    this.shareButton = button("sc-share-button", "Share", "Make a link to this code");
    this.status = el("span", "sc-status");
    this.status.setAttribute("role", "status");
    this.shareBox = el("div", "sc-share sc-hidden");
    const bar = el("div", "sc-bar");
    bar.append(this.runButton, this.stopButton, this.shareButton, this.status);
    cell.append(editorBox, bar, this.shareBox);
    root.append(cell);
    this.root = root;
    this.hidden = hide;

    const outputArea = el("div", "sc-output");
    const filesArea = el("div", "sc-files");
    const outside = typeof o.outputLocation === "string" ? document.querySelector(o.outputLocation) : o.outputLocation;
    let outputTheme = this.theme;
    if (outside) {
      const outRoot = outside.shadowRoot || outside.attachShadow({ mode: "open" });
      adoptStyles(outRoot);
      outputTheme = resolveTheme(themeOption, outside); // it may sit on another background
      const box = themed(el("div", "sc"), outputTheme, outside);
      box.append(outputArea, filesArea);
      outRoot.append(box);
    } else {
      cell.append(outputArea, filesArea);
    }
    this.output = new Output(outputArea, filesArea, this.server, outputTheme);
    this.outputTheme = outputTheme;
    if (hide.has("editor")) editorBox.classList.add("sc-hidden");
    if (hide.has("evalButton")) this.runButton.classList.add("sc-hidden");
    if (hide.has("permalink")) this.shareButton.classList.add("sc-hidden");
    if (hide.has("status")) this.status.classList.add("sc-hidden");
    if (hide.has("output")) outputArea.classList.add("sc-hidden");
    if (hide.has("files")) filesArea.classList.add("sc-hidden");

    this.editor = createEditor(editorKind, editorBox, root, code, () => this.run(), this.theme);
    this.runButton.addEventListener("click", () => this.run());
    this.stopButton.addEventListener("click", () => this.stop());
    this.shareButton.addEventListener("click", () => this.share().catch(() => {}));
    SingleCellBlock._cells.add(element);
    if (o.autoeval) this.run();
  }

  getCode() { return this.editor.getCode(); }

  setCode(code) { this.editor.setCode(String(code)); }

  /** Run the code; resolves to {id, status, seconds, error} when the cell has ended. */
  run() {
    if (!this.running) this.running = this._run().finally(() => { this.running = null; });
    return this.running;
  }

  /** Stop the running cell (it ends "aborted"), or end its live session; does nothing when neither is. */
  async stop() {
    if (!this.running && this.sessionLive && this.requestId) {
      this.stopButton.disabled = true;
      await this._sendStop(this.requestId);
      return;
    }
    if (!this.running) return;
    this.stopAsked = true;
    this.stopButton.disabled = true;
    this._setStatus("Stopping…", "running");
    if (this.requestId) await this._sendStop(this.requestId);
  }

  /** Save the code as a permalink; resolves to {id, url} and shows the link. */
  async share() {
    this.shareButton.disabled = true;
    try {
      const answer = await this._json(await fetch(`${this.server}/permalink`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ code: this.getCode() }),
      }));
      this._showLink(answer.url);
      this._emit("shared", { id: answer.id, url: answer.url });
      return { id: answer.id, url: answer.url };
    } catch (error) {
      this.shareBox.replaceChildren(el("span", "sc-stderr", `Could not make a link: ${error.message}`));
      this.shareBox.classList.remove("sc-hidden");
      throw error;
    } finally {
      this.shareButton.disabled = false;
    }
  }

  // -- running ------------------------------------------------------------------------

  async _run() {
    const code = this.getCode();
    // its widgets are about to go; a linked cell's kernel is the page's, and stays
    if (this.sessionLive && this.requestId && !this.linked) this._endQuietly(this.requestId);
    const generation = ++this.generation;
    if (this.unfollow) this.unfollow(); // the last run's session (if any) is not followed any more
    this.sessionLive = false;
    if (this.output.widgets) this.output.widgets.reset();
    this.output.clear();
    this.output.widgets = new WidgetHost(this.server, this.outputTheme, (node) => this.output.append(node),
      (msg) => this._sendInput(generation, msg));
    this.requestId = null;
    this.files = [];
    this.stopAsked = false;
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    this.runButton.disabled = true;
    this.stopButton.disabled = false;
    if (!this.hidden.has("stop")) this.stopButton.classList.remove("sc-hidden");
    this._setStatus("Running… 0.0 s", "running");
    this.ticker = setInterval(() => {
      if (!this.reconnecting && !this.stopAsked) this._setStatus(`Running… ${seconds().toFixed(1)} s`, "running");
    }, 100);
    let result;
    try {
      const accepted = await this._submit(code);
      this.requestId = accepted.id;
      this._emit("started", { id: accepted.id });
      if (this.stopAsked) await this._sendStop(accepted.id);
      const status = await new Promise((resolve, reject) => {
        this._follow(accepted.id, generation, resolve).then(resolve, reject);
      });
      result = { id: accepted.id, status, seconds: seconds(), files: this.files };
      if (this.sessionLive) this._setStatus(`${this._describe(status, seconds())} · widgets live`, "live");
      else this._setStatus(this._describe(status, seconds()), status);
    } catch (error) {
      result = { id: this.requestId, status: "failed", seconds: seconds(), error: error.message };
      this._setStatus(`Failed: ${error.message}`, "failed");
    } finally {
      clearInterval(this.ticker);
      this.reconnecting = false;
      this.runButton.disabled = false;
      if (this.sessionLive) {
        this.stopButton.disabled = false;
        this.stopButton.title = "End the live session of this cell's widgets";
      } else {
        this.stopButton.classList.add("sc-hidden");
      }
    }
    this._emit("done", result);
    return result;
  }

  _describe(status, s) {
    const t = `${s.toFixed(2)} s`;
    if (status === "done") return `Done in ${t}`;
    if (status === "error") return `Error after ${t}`;
    if (status === "timeout") return `Timed out after ${t}`;
    if (status === "aborted") return this.stopAsked ? `Stopped after ${t}` : `Aborted after ${t}`;
    if (status === "lost") return "Lost: the server lost this cell; run it again";
    return `${status} after ${t}`;
  }

  async _submit(code) {
    if (!this.linked) return this._post({ code });
    for (;;) {
      const known = linkedSessions.get(this.linkKey);
      const session = known ? await known : null;
      if (session) {
        try {
          return await this._post({ code, session });
        } catch (error) {
          if (!(error instanceof ClientError) || error.status !== 409) throw error;
          // the kernel ended (idle, say): the next linked cell starts a new one
          if (linkedSessions.get(this.linkKey) === known) linkedSessions.delete(this.linkKey);
          continue;
        }
      }
      if (linkedSessions.get(this.linkKey) !== known) continue; // another cell is starting one: wait for it
      let started;
      linkedSessions.set(this.linkKey, new Promise((resolve) => { started = resolve; }));
      try {
        const accepted = await this._post({ code, linked: true });
        started(accepted.session || null);
        return accepted;
      } catch (error) {
        started(null);
        throw error;
      }
    }
  }

  async _post(body) {
    if (this.timeout) body.timeout = this.timeout;
    if (this.options.snippet && !body.session) body.snippet = String(this.options.snippet);
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await fetch(`${this.server}/execute`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
      } catch (error) {
        // not retried: the server may have queued it, and a cell must not run twice
        throw new Error(`could not reach ${this.server} (${error.message})`);
      }
      if (response.status === 503 && attempt < SUBMIT_RETRIES) {
        const wait = Math.min(Math.max(Number(response.headers.get("Retry-After")) || 1, 1), 30);
        this._setStatus(`The server is busy; trying again in ${wait} s`, "running");
        await sleep(wait * 1000);
        continue;
      }
      return this._json(response);
    }
  }

  async _json(response) {
    let answer;
    try {
      answer = await response.json();
    } catch {
      // not the server's own answer: a proxy's error page, say
      throw new ClientError(`the server answered ${response.status} without JSON`, true);
    }
    if (!response.ok) {
      const error = new ClientError(answer && answer.error ? answer.error.message : `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return answer;
  }

  /** Follow the output (through the page's one long-poll, watch.js). ``cellDone`` is called with
   * the status once the cell has ended; while its session is live the following goes on (the
   * widgets' answers come this way) until the session ends or the cell runs again. */
  _follow(id, generation, cellDone) {
    return new Promise((resolve, reject) => {
      let after = 0;
      let status = null;
      const unfollow = watcher(this.server).follow(id, 0, {
        page: (page) => {
          if (generation !== this.generation) return false;
          this.reconnecting = false;
          for (const { seq, msg } of page.messages) {
            if (seq <= after) continue; // never show a message twice
            this._show(id, msg);
            after = seq;
            this._emit("output", { seq, msg });
          }
          const live = !this.linked && Boolean(page.session && page.session.state === "live");
          if (page.done && status === null) {
            status = page.status;
            this.sessionLive = live;
            if (!live && !page.session && this.output.widgets && this.output.widgets.shown) {
              this.output.widgets.ended("These widgets are not live: the server kept no session for this cell.");
            }
            cellDone(status);
          }
          if (status !== null && !live) {
            this.sessionLive = false;
            resolve(status);
            return false;
          }
          return true;
        },
        trouble: (wait) => {
          if (status !== null) return; // a live session retries quietly
          this.reconnecting = true;
          this._setStatus(`Connection lost; reconnecting in ${(wait / 1000).toFixed(1)} s…`, "running");
        },
        fail: reject,
      });
      this.unfollow = () => { unfollow(); resolve(status); };
    });
  }

  /** One message of the cell's output: the widgets' own go to their frame, the rest is shown. */
  _show(id, msg) {
    const widgets = this.output.widgets;
    const c = msg.content || {};
    if (msg.msg_type === "extension" && c.msg_type === "session") {
      this.sessionLive = !this.linked;
      this._emit("session", { id, state: "live" });
    } else if (msg.msg_type === "extension" && c.msg_type === "session_end") {
      const end = c.content || {};
      const text = String(end.message || "The session ended.");
      this.sessionLive = false;
      if (widgets) widgets.ended(text);
      if (!this.running) {
        this._setStatus(text, "ended");
        this.stopButton.classList.add("sc-hidden");
      }
      this._emit("session", { id, state: "ended", reason: end.reason, message: end.message });
    }
    if (widgets && widgets.handle(msg)) return;
    // a session's end is said beside the Run button, and where its widgets are: the output
    // says it only when no widget was shown
    if (msg.msg_type === "extension" && c.msg_type === "session_end" && widgets && widgets.shown) return;
    this.output.add(msg);
    if (msg.msg_type === "extension" && c.msg_type === "files") this.files.push(...((c.content || {}).files || []));
  }

  /** A message from the widgets for the kernel: POST /input, in the order they came. */
  _sendInput(generation, msg) {
    const id = this.requestId;
    if (!id || generation !== this.generation) return;
    this.inputs = this.inputs.then(async () => {
      try {
        const response = await fetch(`${this.server}/input/${id}`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(msg),
        });
        // 409: the session ended meanwhile; its session_end is on its way
        if (!response.ok && response.status !== 409) await this._json(response);
      } catch (error) {
        if (generation === this.generation) this._setStatus(`Could not reach the session: ${error.message}`, "live");
      }
    });
  }

  /** End a session whose widgets are going away (the cell runs again), saying nothing. */
  _endQuietly(id) {
    fetch(`${this.server}/stop/${id}`, { method: "POST" }).catch(() => {});
  }

  async _sendStop(id) {
    try {
      await this._json(await fetch(`${this.server}/stop/${id}`, { method: "POST" }));
    } catch (error) {
      this._setStatus(`Could not stop the cell: ${error.message}`, "running");
      this.stopButton.disabled = false;
    }
  }

  // -- the rest -----------------------------------------------------------------------

  _setStatus(text, state) {
    this.status.textContent = text;
    this.status.setAttribute("data-state", state);
  }

  _showLink(url) {
    const input = el("input");
    input.type = "text";
    input.readOnly = true;
    input.value = url;
    input.setAttribute("aria-label", "link to this code");
    const copy = button("sc-copy", "Copy", "Copy the link");
    copy.addEventListener("click", async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(url);
      } catch {
        document.execCommand("copy"); // http pages have no clipboard API
      }
      copy.textContent = "Copied";
    });
    const open = el("a", null, "Open");
    open.href = url;
    open.target = "_blank";
    open.rel = "noopener";
    this.shareBox.replaceChildren(input, copy, open);
    this.shareBox.classList.remove("sc-hidden");
  }

  _emit(name, detail) {
    const callback = this.options[`on${name[0].toUpperCase()}${name.slice(1)}`];
    if (typeof callback === "function") {
      try {
        if (name === "output") callback(detail.msg, detail.seq);
        else callback(detail);
      } catch (error) {
        setTimeout(() => { throw error; }); // the page's bug: report it, do not break the cell
      }
    }
    this.element.dispatchEvent(new CustomEvent(`singlecell:${name}`, { detail, bubbles: true }));
  }

  static _replaceScript(script) {
    const div = document.createElement("div");
    div.className = script.className;
    for (const { name, value } of script.attributes) if (name.startsWith("data-")) div.setAttribute(name, value);
    if (script.id) div.id = script.id;
    div.textContent = script.textContent;
    script.replaceWith(div);
    return div;
  }

  /** Make a cell of every .singlecell element under `root` not yet made one; returns the new cells. */
  static init(root = document) {
    const made = [];
    for (const element of root.querySelectorAll(".singlecell")) {
      if (SingleCellBlock._cells.has(element)) continue;
      if (element.localName === "script" && element.type !== "text/x-python") continue;
      made.push(new SingleCellBlock(element));
    }
    return made;
  }
}

SingleCellBlock.version = VERSION;
SingleCellBlock.defaultServer = DEFAULT_SERVER;
SingleCellBlock._cells = new WeakSet();

window.SingleCellBlock = SingleCellBlock;
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => SingleCellBlock.init());
else SingleCellBlock.init();
