import * as core from './workflow.js';

/** Secret values: masked in the Actions log and scrubbed from every file and report we write. */
export class Secrets {
  private values: string[] = [];

  add(value: string | undefined): void {
    if (!value) return;
    const parts = [value, ...value.split(/\r?\n/).map((l) => l.trim())];
    for (const v of parts) {
      // Too short or too ordinary to be a secret: masking "true" or "8080" would only garble reports.
      if (
        v.length < 3 ||
        /^(true|false|yes|no|on|off|null)$/i.test(v) ||
        /^\d{1,5}$/.test(v) ||
        this.values.includes(v)
      )
        continue;
      core.setSecret(v);
      this.values.push(v);
    }
    this.values.sort((a, b) => b.length - a.length);
  }

  /** Redacts every string inside a JSON-able value (so the JSON stays valid). */
  redactDeep<T>(value: T): T {
    return JSON.parse(JSON.stringify(value), (_k, v: unknown) => (typeof v === 'string' ? this.redact(v) : v)) as T;
  }

  redact(text: string): string {
    let out = text;
    for (const v of this.values) if (out.includes(v)) out = out.split(v).join('***');
    return out;
  }
}
