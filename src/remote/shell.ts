/**
 * Shell quoting for commands that run on the host. Every value that reaches a remote
 * shell goes through `quote`; scripts are assembled from argument lists, never from
 * interpolated strings.
 */

/** A fragment of shell text that is already safe to splice (built only by this module). */
export class Raw {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** Marks trusted, constant shell text (operators, variable references written by us). */
export function raw(text: string): Raw {
  return new Raw(text);
}

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** POSIX single-quote a value: the result is always exactly one shell word with no expansion. */
export function quote(value: string): string {
  if (value.includes('\0')) throw new Error('a NUL byte cannot be passed to a shell');
  if (value !== '' && SAFE.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export type Arg = string | number | Raw;

/** Join an argument list into one shell command line; strings are quoted, Raw is spliced. */
export function cmd(...args: Arg[]): string {
  return args.map((a) => (a instanceof Raw ? a.text : quote(String(a)))).join(' ');
}

/** A POSIX sh script from lines; run as `sh -c <script>` so the user's login shell does not matter. */
export function script(lines: string[]): string {
  return lines.filter((l) => l !== '').join('\n');
}

/** The command line that runs a script with POSIX sh regardless of the login shell. */
export function shInvocation(body: string, args: string[] = []): string {
  return cmd('sh', '-c', body, 'sh', ...args);
}

/**
 * Split a user-supplied argument string (like `docker-run-args`) into words with
 * POSIX-like quoting rules, without ever evaluating anything.
 */
export function splitWords(input: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  while (i < input.length) {
    const c = input[i];
    if (c === "'") {
      const end = input.indexOf("'", i + 1);
      if (end < 0) throw new Error('unterminated single quote');
      cur += input.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i++;
      let closed = false;
      while (i < input.length) {
        const d = input[i];
        if (d === '"') {
          closed = true;
          i++;
          break;
        }
        if (d === '\\' && i + 1 < input.length && '"\\$`'.includes(input[i + 1])) {
          cur += input[i + 1];
          i += 2;
          continue;
        }
        cur += d;
        i++;
      }
      if (!closed) throw new Error('unterminated double quote');
      inWord = true;
    } else if (c === '\\') {
      if (i + 1 >= input.length) throw new Error('trailing backslash');
      if (input[i + 1] !== '\n') {
        cur += input[i + 1];
        inWord = true;
      }
      i += 2;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
      i++;
    } else {
      cur += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) words.push(cur);
  return words;
}
