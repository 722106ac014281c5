#!/usr/bin/env node
// Compiles the contracts pxfs deploys and writes artifacts/<Name>.json ({contractName,
// abi, bytecode}), the shape alloy's `sol!` reads. Chainlink 1.2.0's Operator pins
// `pragma solidity 0.8.19` while OpenZeppelin 5.x needs >= 0.8.20, so there are two
// compiler runs. Output is deterministic (relative source names, stable key order, no
// timestamps) so CI can recompile and compare.
//
//   node compile.js          write artifacts/
//   node compile.js --check  exit 1 naming every artifact that differs from a fresh compile

"use strict";

const fs = require("fs");
const path = require("path");

const HERE = __dirname;
const ARTIFACTS = path.join(HERE, "artifacts");

// One standard-JSON run per compiler. `sources` are paths relative to this directory or
// to node_modules; `contracts` are "<source>:<ContractName>" to emit.
const RUNS = [
  {
    compiler: "solc-0.8.19",
    sources: [
      "@chainlink/contracts/src/v0.8/operatorforwarder/Operator.sol",
      "@chainlink/contracts/src/v0.8/shared/token/ERC677/LinkToken.sol",
    ],
    contracts: [
      "@chainlink/contracts/src/v0.8/operatorforwarder/Operator.sol:Operator",
      "@chainlink/contracts/src/v0.8/shared/token/ERC677/LinkToken.sol:LinkToken",
    ],
  },
  {
    compiler: "solc",
    sources: ["PxStorageNFT.sol", "test/PxSolV2Double.sol", "test/PxSolV1Double.sol"],
    contracts: [
      "PxStorageNFT.sol:PxStorageNFT",
      "test/PxSolV2Double.sol:PxSolV2Double",
      "test/PxSolV1Double.sol:PxSolV1Double",
    ],
  },
];

// Resolves an import to a file under this directory, then under node_modules.
function findSource(name) {
  for (const base of [HERE, path.join(HERE, "node_modules")]) {
    const p = path.join(base, name);
    if (p.startsWith(base + path.sep) && fs.existsSync(p)) return p;
  }
  return null;
}

function readImport(name) {
  const p = findSource(name);
  if (p === null) return { error: `not found: ${name}` };
  return { contents: fs.readFileSync(p, "utf8") };
}

function compile(run) {
  let solc;
  try {
    solc = require(run.compiler);
  } catch (e) {
    throw new Error(`${run.compiler} is not installed: run scripts/setup.sh (or npm ci in contracts/)`);
  }
  const sources = {};
  for (const name of run.sources) {
    const r = readImport(name);
    if (r.error) throw new Error(r.error);
    sources[name] = { content: r.contents };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: readImport }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  if (errors.length > 0) {
    throw new Error(errors.map((e) => e.formattedMessage).join("\n"));
  }
  const artifacts = {};
  for (const id of run.contracts) {
    const sep = id.lastIndexOf(":");
    const file = id.slice(0, sep);
    const name = id.slice(sep + 1);
    const c = output.contracts[file][name];
    artifacts[name] = {
      contractName: name,
      compiler: `solc ${solc.version()}`,
      source: file,
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
    };
  }
  return artifacts;
}

// Stable key order at every level, so the text depends only on the content.
function canonical(value) {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const k of Object.keys(value).sort()) out[k] = canonical(value[k]);
    return out;
  }
  return value;
}

function render(artifact) {
  return JSON.stringify(canonical(artifact), null, 2) + "\n";
}

function main() {
  const check = process.argv.includes("--check");
  let fresh = {};
  for (const run of RUNS) fresh = { ...fresh, ...compile(run) };

  if (!check) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    for (const [name, artifact] of Object.entries(fresh)) {
      fs.writeFileSync(path.join(ARTIFACTS, `${name}.json`), render(artifact));
      console.log(`wrote artifacts/${name}.json`);
    }
    return 0;
  }

  const stale = [];
  for (const [name, artifact] of Object.entries(fresh)) {
    const p = path.join(ARTIFACTS, `${name}.json`);
    const committed = fs.existsSync(p) ? fs.readFileSync(p, "utf8") : null;
    if (committed !== render(artifact)) stale.push(name);
  }
  if (stale.length > 0) {
    for (const name of stale) {
      console.error(`artifacts/${name}.json differs from a fresh compile; run: node contracts/compile.js`);
    }
    return 1;
  }
  console.log(`artifacts up to date (${Object.keys(fresh).length} contracts)`);
  return 0;
}

try {
  process.exitCode = main();
} catch (e) {
  console.error(`compile.js: ${e.message}`);
  process.exitCode = 2;
}
