// Build static/ from static/src/: `npm ci && npm run build`, at the top of the checkout.
// The outputs are committed, so the server runs without Node. Each bundle's first line carries
// a hash of its inputs (these sources and package-lock.json); tests/unit/test_static.py fails
// when a source changed and the bundles were not rebuilt.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as esbuild from "esbuild";

const top = new URL("../../", import.meta.url).pathname;
const src = join(top, "static/src");

export function sourceHash() {
  const hash = createHash("sha256");
  const inputs = readdirSync(src).sort().map((name) => join("static/src", name));
  for (const path of [...inputs, "package-lock.json"]) {
    hash.update(path + "\0");
    hash.update(readFileSync(join(top, path)));
    hash.update("\0");
  }
  return hash.digest("hex");
}

const hash = sourceHash();
const mathjax = join(top, "node_modules/mathjax");
const version = JSON.parse(readFileSync(join(mathjax, "package.json"), "utf8")).version;
const banner = `/* singlecell ${hash}: built from static/src by \`npm run build\`; do not edit */`;
const common = {
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  legalComments: "eof",
  loader: { ".css": "text" },
  banner: { js: banner },
  define: { __BUILD__: JSON.stringify(hash.slice(0, 16)), __MATHJAX_VERSION__: JSON.stringify(version) },
  logLevel: "info",
};
await esbuild.build({ ...common, entryPoints: [join(src, "singlecell.js")], outfile: join(top, "static/singlecell.js") });
await esbuild.build({ ...common, entryPoints: [join(src, "frame.js")], outfile: join(top, "static/singlecell-frame.js") });

// MathJax, served by us: one file with every TeX extension, so nothing loads from elsewhere
mkdirSync(join(top, "static/mathjax"), { recursive: true });
copyFileSync(join(mathjax, "es5/tex-svg-full.js"), join(top, "static/mathjax/tex-svg-full.js"));
copyFileSync(join(mathjax, "LICENSE"), join(top, "static/mathjax/LICENSE"));
writeFileSync(join(top, "static/mathjax/VERSION"), `${version}\n`);

// The licences of everything bundled (all MIT or Apache-2.0), served beside the bundles
const notices = [];
const packages = [];
for (const name of readdirSync(join(top, "node_modules")).sort()) {
  if (name.startsWith(".") || name.includes("esbuild")) continue;
  const dirs = name.startsWith("@")
    ? readdirSync(join(top, "node_modules", name)).sort().map((sub) => `${name}/${sub}`)
    : [name];
  packages.push(...dirs);
}
for (const name of packages) {
  const dir = join(top, "node_modules", name);
  const licence = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
  if (!licence) continue;
  const { version } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  notices.push(`== ${name} ${version} ==\n\n${readFileSync(join(dir, licence), "utf8").trim()}\n`);
}
writeFileSync(join(top, "static/THIRD-PARTY-NOTICES.txt"),
  `Third-party code in static/ (singlecell.js, singlecell-frame.js, mathjax/)\n\n${notices.join("\n")}`);
