// embedded_sagecell.js: SageMathCell's embedding interface, so a page written for SageMathCell
// works with this server when only the script's host changes:
//
//   <script src="https://<this server>/static/embedded_sagecell.js"></script>
//   <script>sagecell.makeSagecell({inputLocation: "div.compute", evalButtonText: "Evaluate"});</script>
//
// Each element inputLocation finds becomes a SingleCellBlock (static/singlecell.js, loaded from
// the same server the first time a cell is made). Python runs here, not Sage: what SageMathCell
// offers that does not apply (other languages, Sage's own functions, full screen, the message
// log) is said in the console, once, and otherwise left alone.

const script = document.currentScript;
const server = script ? new URL("..", script.src).href.replace(/\/+$/, "") : "";
const warned = new Set();

function warn(key, text) {
  if (warned.has(key)) return;
  warned.add(key);
  console.warn(`embedded_sagecell.js (singlecell): ${text}`);
}

let loading = null;
/** SingleCellBlock, from this server's singlecell.js, once the page's body is there. */
function singleCell() {
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      if (window.SingleCellBlock) return resolve(window.SingleCellBlock);
      const tag = document.createElement("script");
      tag.src = `${server}/static/singlecell.js`;
      tag.onload = () => resolve(window.SingleCellBlock);
      tag.onerror = () => reject(new Error(`could not load ${tag.src}`));
      document.head.appendChild(tag);
    });
  }
  const body = document.readyState === "loading"
    ? new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }))
    : Promise.resolve();
  return Promise.all([loading, body]).then(([SingleCellBlock]) => SingleCellBlock);
}

// SageMathCell's hide names → SingleCellBlock's (null: nothing of the kind here)
const HIDE = {
  editor: "editor", evalButton: "evalButton", permalink: "permalink", output: "output", files: "files",
  sessionFiles: "files", done: "status", fullScreen: null, language: null, messages: null, sessionTitle: null,
};
const EDITORS = {
  codemirror: "codemirror", "codemirror-readonly": "readonly", textarea: "textarea", "textarea-readonly": "readonly",
};
const PYTHONIC = new Set(["sage", "python"]);

function elements(location) {
  if (!location) return [];
  if (location instanceof Element) return [location];
  return Array.from(document.querySelectorAll(location));
}

/** The code a SageMathCell page gives a cell: the code option, its codeLocation's script, a
 * <script type="text/x-sage"> inside the element, a textarea's value, or the element's text. */
function codeFor(element, args) {
  if (typeof args.code === "string") return args.code;
  const located = args.codeLocation ? elements(args.codeLocation)[0] : null;
  if (located) return located.textContent;
  const inner = element.querySelector('script[type="text/x-sage"], script[type="text/x-python"]');
  if (inner) return inner.textContent;
  if (element.localName === "textarea") return element.value;
  return element.textContent;
}

function options(args) {
  const template = args.template || {};
  const merged = { ...template, ...args };
  merged.hide = [...(template.hide || []), ...(args.hide || [])];
  return merged;
}

function check(args) {
  const languages = args.languages || ["sage"];
  const others = languages.filter((l) => !PYTHONIC.has(l));
  if (others.length) {
    warn("languages", `only Python runs on this server; the languages ${others.join(", ")} are not offered`);
  }
  if (languages.includes("sage")) {
    warn("sage", "cells run Python (with numpy, matplotlib and ipywidgets), not Sage: code that needs Sage's " +
      "own functions fails");
  }
  if (args.replaceOutput === false) warn("replaceOutput", "replaceOutput: a cell's new output always replaces its last");
  if (args.mode === "debug") warn("debug", 'mode "debug": there is no message log to show');
  for (const name of args.hide) {
    if (!(name in HIDE)) warn(`hide-${name}`, `hide: ${JSON.stringify(name)} is not a part of a cell`);
  }
}

function makeCells(SingleCellBlock, args, info) {
  const o = options(args);
  check(o);
  const outputLocation = o.outputLocation ? elements(o.outputLocation)[0] : undefined;
  const hide = [...new Set(o.hide.map((name) => HIDE[name]).filter(Boolean))];
  for (const target of elements(o.inputLocation)) {
    const code = codeFor(target, o).replace(/^\s*\n/, "");
    let host = target;
    if (target.localName === "textarea") { // the textarea's code, in a cell beside it
      host = document.createElement("div");
      target.insertAdjacentElement("afterend", host);
      target.style.display = "none";
    } else {
      target.textContent = "";
    }
    const block = new SingleCellBlock(host, {
      server, code, hide, outputLocation, linked: Boolean(o.linked || o.linkKey), linkKey: o.linkKey,
      editor: EDITORS[o.editor] || "codemirror", evalButtonText: o.evalButtonText, autoeval: Boolean(o.autoeval),
    });
    info.cells.push(block);
    info.hosts.push(host);
  }
  if (typeof o.callback === "function") o.callback();
}

const sagecell = window.sagecell || {};
Object.assign(sagecell, {
  templates: {
    minimal: { editor: "textarea-readonly", hide: ["editor", "files", "permalink"] },
    restricted: { editor: "codemirror-readonly", hide: ["files", "permalink"] },
  },
  allLanguages: ["sage", "gap", "gp", "html", "macaulay2", "maxima", "octave", "python", "r", "singular"],
  /** Make a cell of every element ``args.inputLocation`` finds; returns the cells' info at once,
   * filled in when they are made (after the page has loaded). */
  makeSagecell(args) {
    const info = { inputLocation: args && args.inputLocation, cells: [], hosts: [] };
    if (!args || !args.inputLocation) {
      console.error("sagecell.makeSagecell needs inputLocation: a selector of the elements to make cells of");
      return info;
    }
    info.ready = singleCell().then((SingleCellBlock) => makeCells(SingleCellBlock, args, info))
      .catch((error) => console.error(`embedded_sagecell.js (singlecell): ${error.message}`));
    return info;
  },
  deleteSagecell(info) {
    for (const host of (info && info.hosts) || []) host.replaceWith(host.cloneNode(false));
  },
  // the cells live in shadow roots, so no form on the page submits their parts: nothing to move
  moveInputForm() {},
  restoreInputForm() {},
  init(callback) {
    singleCell().then(() => { if (typeof callback === "function") callback(); });
  },
});
window.sagecell = sagecell;
window.singlecell = window.singlecell || sagecell; // SageMathCell's old name for the same object
if (!window.singlecell.makeSinglecell) window.singlecell.makeSinglecell = sagecell.makeSagecell;
