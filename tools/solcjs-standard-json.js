#!/usr/bin/env node
// A `solc` executable for py-solc-x / ape-solidity backed by solc-js (the Emscripten build of the
// official compiler: same bytecode for the same version and settings). Used only where no native
// solc can be installed. Supports what py-solc-x calls: --version and --standard-json
// (input on stdin, output on stdout), resolving imports under --base-path / --allow-paths.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const args = process.argv.slice(2);

function flagValues(name) {
  const values = [];
  args.forEach((arg, i) => {
    if (arg === name && i + 1 < args.length) values.push(...args[i + 1].split(","));
    else if (arg.startsWith(name + "=")) values.push(...arg.slice(name.length + 1).split(","));
  });
  return values;
}

if (args.includes("--version")) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
  process.exit(0);
}

if (!args.includes("--standard-json")) {
  process.stderr.write("this wrapper supports only --version and --standard-json\n");
  process.exit(1);
}

const roots = [process.cwd(), ...flagValues("--base-path"), ...flagValues("--include-path"), ...flagValues("--allow-paths")];

// Resolve an import the way solc's default file reader does: relative to each allowed root.
function findImports(importPath) {
  const candidates = path.isAbsolute(importPath) ? [importPath] : roots.map((root) => path.resolve(root, importPath));
  for (const candidate of candidates) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) {
      return { contents: fs.readFileSync(candidate, "utf8") };
    }
  }
  return { error: `File not found: ${importPath} (searched ${roots.join(", ")})` };
}

const input = fs.readFileSync(0, "utf8");
process.stdout.write(solc.compile(input, { import: findImports }));
