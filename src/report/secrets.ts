import * as core from '@actions/core';

/** Secret values: masked in the Actions log and scrubbed from every file and report we write. */
export class Secrets {
  private values: string[] = [];

  add(value: string | undefined): void {
    if (!value) return;
    const parts = [value, ...value.split(/\r?\n/).map((l) => l.trim())];
    for (const v of parts) {
      if (v.length < 3 || this.values.includes(v)) continue;
      core.setSecret(v);
      this.values.push(v);
    }
    this.values.sort((a, b) => b.length - a.length);
  }

  redact(text: string): string {
    let out = text;
    for (const v of this.values) if (out.includes(v)) out = out.split(v).join('***');
    return out;
  }
}
