// Must be the first import of the entry point: ssh2 (bundled) reads a bare __dirname/__filename,
// which do not exist in an ES module.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const g = globalThis as { __filename?: string; __dirname?: string };
g.__filename ??= fileURLToPath(import.meta.url);
g.__dirname ??= dirname(g.__filename);
