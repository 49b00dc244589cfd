/* singlecell: a minimal embeddable cell. Every element with class "singlecell" becomes an
   editor with a Run button; output comes from POST /execute and the long-polled /output. */
(function () {
  "use strict";
  var script = document.currentScript;
  var defaultServer = script ? new URL(script.src, location.href).origin : location.origin;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function stripAnsi(s) { return s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ""); }

  function SingleCellBlock(element, options) {
    options = options || {};
    this.server = (options.server || defaultServer).replace(/\/$/, "");
    this.root = element;
    this.editor = el("textarea", "sc-editor");
    this.editor.value = options.code || element.getAttribute("data-code") || element.textContent.trim();
    this.editor.setAttribute("aria-label", "Python code");
    this.button = el("button", "sc-run", options.evalButtonText || "Run");
    this.status = el("div", "sc-status");
    this.output = el("div", "sc-output");
    element.textContent = "";
    element.append(this.editor, this.button, this.status, this.output);
    var self = this;
    this.button.addEventListener("click", function () { self.run(); });
    this.editor.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && ev.shiftKey) { ev.preventDefault(); self.run(); }
    });
  }

  SingleCellBlock.prototype.run = async function () {
    this.output.textContent = "";
    this.status.textContent = "running…";
    var started = Date.now();
    try {
      var r = await fetch(this.server + "/execute", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({code: this.editor.value})
      });
      var answer = await r.json();
      if (!r.ok) throw new Error(answer.error ? answer.error.message : r.statusText);
      var after = 0, done = false, status = "";
      while (!done) {
        try {
          var page = await (await fetch(this.server + "/output/" + answer.id + "?wait=25&after=" + after)).json();
        } catch (e) { await new Promise(function (ok) { setTimeout(ok, 1000); }); continue; }
        if (page.error) throw new Error(page.error.message);
        page.messages.forEach(function (m) { this.show(m.msg); }, this);
        after = page.next; done = page.done; status = page.status;
      }
      this.status.textContent = status + " in " + ((Date.now() - started) / 1000).toFixed(2) + " s";
    } catch (e) {
      this.status.textContent = "failed: " + e.message;
    }
  };

  SingleCellBlock.prototype.show = function (msg) {
    var c = msg.content, out = this.output;
    if (msg.msg_type === "stream") {
      out.append(el("pre", c.name === "stderr" ? "sc-stderr" : "sc-stdout", c.text));
    } else if (msg.msg_type === "execute_result" || msg.msg_type === "display_data") {
      var d = c.data || {};
      if (d["image/png"]) { var img = el("img"); img.src = "data:image/png;base64," + d["image/png"]; out.append(img); }
      else if (d["text/html"]) {
        var frame = el("iframe"); frame.setAttribute("sandbox", ""); frame.srcdoc = d["text/html"]; out.append(frame);
      } else if (d["text/plain"] !== undefined) out.append(el("pre", "sc-result", d["text/plain"]));
    } else if (msg.msg_type === "error") {
      out.append(el("pre", "sc-error", stripAnsi((c.traceback || []).join("\n")) || c.ename + ": " + c.evalue));
    } else if (msg.msg_type === "extension" && c.msg_type === "files") {
      c.content.files.forEach(function (f) {
        var a = el("a", null, f.name + " (" + f.size + " bytes)"); a.href = this.server + f.url; a.target = "_blank";
        var p = el("div"); p.append(a); out.append(p);
      }, this);
    }
  };

  window.SingleCellBlock = SingleCellBlock;
  function init() {
    document.querySelectorAll(".singlecell").forEach(function (e) { new SingleCellBlock(e); });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
