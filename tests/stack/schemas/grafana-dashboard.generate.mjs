// Grafana's dashboard schema (@grafana/schema, generated from Grafana's CUE kinds) as JSON Schema.
// ts-json-schema-generator turns the TypeScript types into JSON Schema; CUE fields that have a
// default may be left out of a dashboard, so every field that the package's `default<Type>`
// constants give a value is made optional.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [pkg, out] = process.argv.slice(2);
const types = `${pkg}/dist/types/raw/dashboard/x/types.gen.d.ts`;
const generated = execFileSync(
  "node_modules/.bin/ts-json-schema-generator",
  ["--path", types, "--type", "Dashboard", "--no-type-check", "--additional-properties"],
  { encoding: "utf8", maxBuffer: 1 << 26 },
);
const schema = JSON.parse(generated);
const defaults = await import(pathToFileURL(`${pkg}/dist/esm/raw/dashboard/x/types.gen.mjs`).href);
for (const [name, definition] of Object.entries(schema.definitions)) {
  const withDefaults = defaults[`default${name}`];
  if (withDefaults && typeof withDefaults === "object" && Array.isArray(definition.required)) {
    definition.required = definition.required.filter((field) => !(field in withDefaults));
    if (definition.required.length === 0) delete definition.required;
  }
}
const version = JSON.parse(readFileSync(`${pkg}/package.json`, "utf8")).version;
schema.$comment = `Grafana's dashboard JSON model, from @grafana/schema ${version} (Apache-2.0); see README.md`;
writeFileSync(out, JSON.stringify(schema, null, 2) + "\n");
