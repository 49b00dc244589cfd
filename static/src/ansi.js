// ANSI SGR escapes (IPython's coloured tracebacks) to DOM nodes. Text only ever goes through
// textContent: nothing a kernel prints is parsed as HTML.

const NAMES = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];

function xterm256(n) {
  if (n < 16) return (n < 8 ? "" : "bright-") + NAMES[n % 8];
  if (n < 232) {
    n -= 16;
    const level = (v) => (v ? 55 + v * 40 : 0);
    return `rgb(${level(Math.floor(n / 36))},${level(Math.floor(n / 6) % 6)},${level(n % 6)})`;
  }
  const grey = 8 + (n - 232) * 10;
  return `rgb(${grey},${grey},${grey})`;
}

function applyCodes(codes, state) {
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) { state.fg = state.bg = null; state.bold = state.italic = state.underline = false; }
    else if (c === 1) state.bold = true;
    else if (c === 3) state.italic = true;
    else if (c === 4) state.underline = true;
    else if (c === 22) state.bold = false;
    else if (c === 23) state.italic = false;
    else if (c === 24) state.underline = false;
    else if (c >= 30 && c <= 37) state.fg = NAMES[c - 30];
    else if (c >= 90 && c <= 97) state.fg = "bright-" + NAMES[c - 90];
    else if (c === 39) state.fg = null;
    else if (c >= 40 && c <= 47) state.bg = NAMES[c - 40];
    else if (c >= 100 && c <= 107) state.bg = "bright-" + NAMES[c - 100];
    else if (c === 49) state.bg = null;
    else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
      state[c === 38 ? "fg" : "bg"] = xterm256(codes[i + 2] || 0); i += 2;
    } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
      state[c === 38 ? "fg" : "bg"] = `rgb(${codes[i + 2] | 0},${codes[i + 3] | 0},${codes[i + 4] | 0})`; i += 4;
    }
  }
}

// The lightest background a light cell shows coloured text on, and the lightest a dark one does
// (its error boxes): a colour given as RGB (256-colour and 24-bit codes, as IPython's syntax
// highlighting in tracebacks sends) is darkened, or lightened, until it keeps a contrast of 4.5:1
// on it, as terminals' "minimum contrast" does. The 16 named colours are the theme's own.
const BACKDROPS = { light: [255, 245, 244], dark: [45, 31, 31] };
const MIN_CONTRAST = 4.6;

function luminance([r, g, b]) {
  const channel = (v) => {
    const c = v / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
}

function contrast(a, b) {
  const la = luminance(a) + 0.05;
  const lb = luminance(b) + 0.05;
  return Math.max(la, lb) / Math.min(la, lb);
}

/** `rgb(…)` made readable on the theme's backdrop: mixed towards black (light) or white (dark). */
export function readable(value, theme) {
  const m = /rgb\((\d+),\s*(\d+),\s*(\d+)\)/.exec(value);
  if (!m) return value;
  const backdrop = BACKDROPS[theme === "dark" ? "dark" : "light"];
  const target = theme === "dark" ? 255 : 0;
  let rgb = [Number(m[1]), Number(m[2]), Number(m[3])];
  for (let step = 0; step < 20 && contrast(rgb, backdrop) < MIN_CONTRAST; step++) {
    rgb = rgb.map((v) => Math.round(v + (target - v) * 0.15));
  }
  return `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
}

function colour(span, prop, value, theme) {
  if (!value) return;
  if (value.startsWith("rgb")) span.style[prop] = prop === "color" ? readable(value, theme) : value;
  else span.classList.add(`sc-ansi-${prop === "color" ? "fg" : "bg"}-${value}`);
}

/** Append `text`, its ANSI colours as spans, to `parent`; RGB colours are kept readable in
 * the cell's `theme` ("light" or "dark"). */
export function appendAnsi(parent, text, theme) {
  const state = { fg: null, bg: null, bold: false, italic: false, underline: false };
  // SGR sequences are kept; any other escape sequence is dropped.
  const parts = text.split(/(\x1b\[[0-9;]*m)/);
  for (const part of parts) {
    const sgr = /^\x1b\[([0-9;]*)m$/.exec(part);
    if (sgr) { applyCodes(sgr[1] === "" ? [0] : sgr[1].split(";").map(Number), state); continue; }
    const clean = stripAnsi(part);
    if (!clean) continue;
    if (!state.fg && !state.bg && !state.bold && !state.italic && !state.underline) {
      parent.append(clean);
      continue;
    }
    const span = document.createElement("span");
    span.textContent = clean;
    colour(span, "color", state.fg, theme);
    colour(span, "background", state.bg, theme);
    if (state.bold) span.classList.add("sc-ansi-bold");
    if (state.italic) span.style.fontStyle = "italic";
    if (state.underline) span.style.textDecoration = "underline";
    parent.append(span);
  }
}

/** The text without any escape sequence. */
export function stripAnsi(text) {
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b/g, "");
}
