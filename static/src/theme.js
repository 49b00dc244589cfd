// The cell's theme: "light" or "dark", given (the `theme` option) or, with "auto", chosen from
// the background actually behind the cell on the host page. Either way the cell paints its own
// background, so its text keeps its contrast on any page.

export const THEMES = ["auto", "light", "dark"];

/** [r, g, b, alpha] of a computed CSS colour ("rgb(…)" / "rgba(…)"), or null. */
export function parseColor(text) {
  const m = /^rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)(?:\s*[,/]\s*([\d.]+%?))?\s*\)$/.exec(String(text).trim());
  if (!m) return null;
  let alpha = m[4] === undefined ? 1 : parseFloat(m[4]);
  if (m[4] && m[4].endsWith("%")) alpha /= 100;
  return [Number(m[1]), Number(m[2]), Number(m[3]), alpha];
}

/** WCAG relative luminance of [r, g, b]. */
export function luminance([r, g, b]) {
  const channel = (v) => {
    const c = v / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
}

/** The colour behind `element`: the first ancestor's background that is mostly opaque, else the
 * page's canvas (dark when the page asks for a dark colour scheme and paints none). */
export function backdrop(element) {
  for (let e = element; e && e.nodeType === 1; e = e.parentElement || (e.getRootNode && e.getRootNode().host)) {
    const color = parseColor(getComputedStyle(e).backgroundColor);
    if (color && color[3] >= 0.5) return color;
  }
  const scheme = getComputedStyle(document.documentElement).colorScheme || "";
  const prefersDark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  const dark = /\bdark\b/.test(scheme) && (!/\blight\b/.test(scheme) || prefersDark);
  return dark ? [18, 18, 18, 1] : [255, 255, 255, 1];
}

/** "light" or "dark" for the option given and the page around `element`. */
export function resolveTheme(option, element) {
  if (option === "light" || option === "dark") return option;
  return luminance(backdrop(element)) < 0.2 ? "dark" : "light";
}

/** Whether the cell's own background is close enough to the page's that it needs no edge. */
export function blendsIn(theme, element) {
  const ours = theme === "dark" ? [30, 31, 34] : [255, 255, 255];
  const a = luminance(ours) + 0.05;
  const b = luminance(backdrop(element)) + 0.05;
  return Math.max(a, b) / Math.min(a, b) < 1.08;
}
