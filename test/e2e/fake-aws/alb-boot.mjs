// Boots the ALB stand-in's child process (alb-process.ts) on Node's own TypeScript type stripping. The stand-in's
// modules import each other as `./x.js` (what tsc and jest resolve); Node does not map those to the .ts files, so
// this resolve hook does: a relative `.js` import that does not exist is retried as `.ts`.
import { registerHooks } from 'node:module';

registerHooks({
  resolve(specifier, context, nextResolve) {
    try {
      return nextResolve(specifier, context);
    } catch (e) {
      if (specifier.startsWith('.') && specifier.endsWith('.js'))
        return nextResolve(`${specifier.slice(0, -3)}.ts`, context);
      throw e;
    }
  }
});

await import('./alb-process.ts');
