// Write NAME.gz next to every built JS/CSS/SVG asset; the gateway serves it to gzip clients.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync, constants } from "node:zlib";
import { join } from "node:path";

const dir = new URL("../../src/llm_api/webapp/static/assets/", import.meta.url).pathname;
for (const name of readdirSync(dir)) {
  if (!/\.(js|css|svg|json)$/.test(name)) continue;
  const packed = gzipSync(readFileSync(join(dir, name)), { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(join(dir, name + ".gz"), packed);
}
