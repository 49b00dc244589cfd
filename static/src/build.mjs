// Build static/ from static/src/: `npm ci && npm run build`, at the top of the checkout.
// The outputs are committed, so the server runs without Node. Each bundle's first line carries
// a hash of its inputs (these sources and package-lock.json); tests/unit/test_static.py fails
// when a source changed and the bundles were not rebuilt.
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
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
// SageMathCell's embedding interface (sagecell.makeSagecell), over SingleCellBlock
await esbuild.build({ ...common, entryPoints: [join(src, "embedded_sagecell.js")],
  outfile: join(top, "static/embedded_sagecell.js") });

// The runtime of a widget frame: ipywidgets 8 (html-manager, base, controls, output) and their CSS
const widgetsPlugin = {
  name: "singlecell-widgets",
  setup(build) {
    // widgets.css is bundled on its own, its @imports (the packages' CSS) and url()s resolved: the
    // icon font inlined, any other asset dropped; widgets.js gets the result as text and puts it
    // in a <style>, so the frame loads nothing but its script
    build.onLoad({ filter: /[\\/]static[\\/]src[\\/]widgets\.css$/ }, async (args) => {
      const css = await esbuild.build({
        entryPoints: [args.path],
        bundle: true,
        minify: true,
        write: false,
        outdir: "css", // unused: nothing is written
        loader: { ".woff2": "dataurl", ".woff": "empty", ".ttf": "empty", ".eot": "empty", ".svg": "empty", ".png": "empty", ".gif": "empty" },
        legalComments: "none", // their licences are in THIRD-PARTY-NOTICES.txt
        logLevel: "warning",
      });
      return { contents: css.outputFiles[0].text, loader: "text" };
    });
    // CSS the packages import from their JavaScript: already in widgets.css, so left out here
    build.onLoad({ filter: /\.css$/ }, (args) =>
      (/[\\/]node_modules[\\/]/.test(args.path) ? { contents: "", loader: "text" } : undefined));
    // ipywidgets 7's base and controls, which html-manager keeps for old kernels: the kernel here
    // runs ipywidgets 8, and widgets.js resolves the modules itself, so they are never used
    build.onResolve({ filter: /^@jupyter-widgets\/(base7|controls7)(\/|$)/ }, (args) => ({ path: args.path, namespace: "unused" }));
    build.onLoad({ filter: /.*/, namespace: "unused" }, () => ({ contents: "module.exports = {};", loader: "js" }));
  },
};
await esbuild.build({
  ...common,
  entryPoints: [join(src, "widgets.js")],
  outfile: join(top, "static/singlecell-widgets.js"),
  // @jupyterlab/ui-components (through rendermime's apputils) imports its icons' SVG as text;
  // the icons are not used, and tree-shaking leaves them out
  loader: { ...common.loader, ".svg": "text" },
  plugins: [widgetsPlugin],
});

// MathJax, served by us: one file with every TeX extension, so nothing loads from elsewhere
mkdirSync(join(top, "static/mathjax"), { recursive: true });
copyFileSync(join(mathjax, "es5/tex-svg-full.js"), join(top, "static/mathjax/tex-svg-full.js"));
copyFileSync(join(mathjax, "LICENSE"), join(top, "static/mathjax/LICENSE"));
writeFileSync(join(top, "static/mathjax/VERSION"), `${version}\n`);

// The licences of everything bundled (MIT, BSD, Apache-2.0, ISC; Font Awesome's fonts OFL-1.1),
// served beside the bundles: every package in node_modules (nested ones too), by its licence file
const notices = [];
const seen = new Set();
function packagesIn(dir) {
  const found = [];
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith(".") || name.includes("esbuild")) continue;
    const dirs = name.startsWith("@")
      ? readdirSync(join(dir, name)).sort().map((sub) => join(dir, name, sub))
      : [join(dir, name)];
    for (const d of dirs) {
      if (!existsSync(join(d, "package.json"))) continue;
      found.push(d);
      if (existsSync(join(d, "node_modules"))) found.push(...packagesIn(join(d, "node_modules")));
    }
  }
  return found;
}
// Many Jupyter and Lumino packages ship no licence file; for them (and any other without one), the
// standard text of the licence their package.json names, with its author as the holder
const STANDARD = {
  "BSD-3-Clause": (holder) => `Copyright (c) ${holder}
All rights reserved.

Redistribution and use in source and binary forms, with or without modification, are permitted
provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this list of conditions
   and the following disclaimer.
2. Redistributions in binary form must reproduce the above copyright notice, this list of
   conditions and the following disclaimer in the documentation and/or other materials provided
   with the distribution.
3. Neither the name of the copyright holder nor the names of its contributors may be used to
   endorse or promote products derived from this software without specific prior written
   permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR
IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND
FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR
CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER
IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF
THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.`,
  MIT: (holder) => `Copyright (c) ${holder}

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.`,
};
for (const dir of packagesIn(join(top, "node_modules"))) {
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  if (!pkg.name || !pkg.version || seen.has(`${pkg.name}@${pkg.version}`)) continue;
  seen.add(`${pkg.name}@${pkg.version}`);
  const licence = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
  let text;
  if (licence) {
    text = readFileSync(join(dir, licence), "utf8").trim();
  } else {
    const author = typeof pkg.author === "string" ? pkg.author : pkg.author && pkg.author.name;
    if (!STANDARD[pkg.license] || !author) continue;
    text = `${pkg.license} (as its package.json says; the package has no licence file)\n\n${STANDARD[pkg.license](author)}`;
  }
  notices.push(`== ${pkg.name} ${pkg.version} ==\n\n${text}\n`);
}
writeFileSync(join(top, "static/THIRD-PARTY-NOTICES.txt"),
  `Third-party code in static/ (singlecell.js, singlecell-frame.js, singlecell-widgets.js, mathjax/)\n\n${notices.join("\n")}`);
