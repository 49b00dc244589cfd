// The runtime of one output frame: a sandboxed iframe (scripts, but an opaque origin, so
// nothing in it can reach the page around it). It renders Markdown and LaTeX (MathJax, served
// by the singlecell server) and tells the cell its height. It is loaded by the frame's own
// document, as <script src=".../singlecell-frame.js" data-kind=... data-mathjax=...>.
import { marked } from "marked";
import { sizeReporter } from "./size.js";

const me = document.currentScript;
const kind = me.dataset.kind;
const mathjaxUrl = me.dataset.mathjax;

const report = sizeReporter((message) => parent.postMessage(message, "*"));

function typeset() {
  window.MathJax = {
    tex: {
      inlineMath: [["$", "$"], ["\\(", "\\)"]],
      displayMath: [["$$", "$$"], ["\\[", "\\]"]],
      processEscapes: true,
    },
    svg: { fontCache: "local" },
    options: { enableMenu: false },
    startup: {
      pageReady() {
        return window.MathJax.startup.defaultPageReady().then(() => {
          document.body.setAttribute("data-typeset", "done");
          report();
        });
      },
    },
  };
  const script = document.createElement("script");
  script.src = mathjaxUrl;
  document.head.append(script);
}

function render() {
  if (kind === "latex" || kind === "markdown") {
    const data = JSON.parse(document.getElementById("sc-data").textContent);
    if (kind === "markdown") {
      document.body.innerHTML = marked.parse(data);
    } else {
      document.body.textContent = data;
    }
    if (/\$|\\\(|\\\[|\\begin\{/.test(data)) typeset();
  }
  new ResizeObserver(report).observe(document.body);
  report();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", render);
else render();
window.addEventListener("load", report);
