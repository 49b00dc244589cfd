// The code editor: CodeMirror 6 with Python, a plain textarea, or read-only code. Each kind
// answers getCode(), setCode() and focus(); Shift-Enter calls onRun.
import { EditorView, basicSetup } from "codemirror";
import { indentWithTab } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import { indentUnit } from "@codemirror/language";
import { EditorState, Prec } from "@codemirror/state";
import { keymap } from "@codemirror/view";
import { oneDark } from "@codemirror/theme-one-dark";

export const EDITORS = ["codemirror", "textarea", "readonly"];

function codemirror(parent, root, code, onRun, readonly, theme) {
  const view = new EditorView({
    parent,
    root,
    state: EditorState.create({
      doc: code,
      extensions: [
        basicSetup,
        python(),
        indentUnit.of("    "), // PEP 8
        // Tab indents; Escape then Tab leaves the editor, so the keyboard is never trapped
        keymap.of([indentWithTab]),
        Prec.highest(keymap.of([{ key: "Shift-Enter", run: () => { onRun(); return true; } }])),
        EditorView.contentAttributes.of({ "aria-label": "Python code" }),
        ...(readonly ? [EditorState.readOnly.of(true), EditorView.editable.of(false)] : []),
        ...(theme === "dark" ? [oneDark] : []),
      ],
    }),
  });
  return {
    kind: readonly ? "readonly" : "codemirror",
    view,
    getCode: () => view.state.doc.toString(),
    setCode: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
    focus: () => view.focus(),
  };
}

function textarea(parent, code, onRun) {
  const area = document.createElement("textarea");
  area.className = "sc-textarea";
  area.value = code;
  area.spellcheck = false;
  area.setAttribute("aria-label", "Python code");
  area.rows = Math.min(Math.max(code.split("\n").length + 1, 3), 30);
  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.shiftKey) {
      event.preventDefault();
      onRun();
    }
  });
  parent.append(area);
  return {
    kind: "textarea",
    getCode: () => area.value,
    setCode: (text) => { area.value = text; },
    focus: () => area.focus(),
  };
}

export function createEditor(kind, parent, root, code, onRun, theme) {
  if (kind === "textarea") return textarea(parent, code, onRun);
  return codemirror(parent, root, code, onRun, kind === "readonly", theme);
}
