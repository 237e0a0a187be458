import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { cmd, quote, raw, shInvocation, splitWords } from '../../../src/remote/shell.js';

/** Runs a command line with a real POSIX sh and returns what printf received as $1. */
function echoThroughSh(value: string): string {
  return execFileSync('sh', ['-c', `${cmd('printf', '%s', value)}`], { encoding: 'utf8' });
}

describe('quote', () => {
  test('any string (no NUL) reaches the program unchanged through a real shell', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary' }).filter((s) => !s.includes('\0')),
        (s) => {
          expect(echoThroughSh(s)).toBe(s);
        }
      ),
      { numRuns: 300 }
    );
  });

  test.each(['$(touch /tmp/x)', '`id`', "a'b", '; rm -rf /', '-rf', '\n', '*', '~', '$HOME', '"', '\\'])(
    '%j stays one literal word',
    (s) => {
      expect(echoThroughSh(s)).toBe(s);
    }
  );

  test('plain words are left readable, everything else single-quoted', () => {
    expect(quote('docker')).toBe('docker');
    expect(quote('127.0.0.1:5000/demo:v1')).toBe('127.0.0.1:5000/demo:v1');
    expect(quote('')).toBe("''");
    expect(quote("it's")).toBe(`'it'\\''s'`);
  });

  test('refuses NUL bytes', () => {
    expect(() => quote('a\0b')).toThrow(/NUL/);
  });

  test('raw fragments are spliced, strings are quoted', () => {
    expect(cmd('echo', raw('"$1"'), 'a b')).toBe(`echo "$1" 'a b'`);
  });

  test('shInvocation passes values as positional parameters, never as code', () => {
    const out = execFileSync('sh', ['-c', shInvocation('printf "%s|" "$@"', ['$(id)', "a'b", '-n'])], {
      encoding: 'utf8'
    });
    expect(out).toBe("$(id)|a'b|-n|");
  });
});

describe('splitWords (docker-run-args)', () => {
  test.each([
    ['--memory 512m', ['--memory', '512m']],
    [`--label "a=b c" --label 'd=$(x)'`, ['--label', 'a=b c', '--label', 'd=$(x)']],
    ['-e A=1\\ 2', ['-e', 'A=1 2']],
    ['  ', []],
    ['"a\\"b"', ['a"b']],
    ["''", ['']]
  ])('%j → %j', (input, words) => {
    expect(splitWords(input)).toEqual(words);
  });

  test('unterminated quotes are errors', () => {
    expect(() => splitWords(`--label "x`)).toThrow(/unterminated double quote/);
    expect(() => splitWords(`--label 'x`)).toThrow(/unterminated single quote/);
  });

  test('round trip: quoted words split back into the same words', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string().filter((s) => !s.includes('\0')),
          { maxLength: 6 }
        ),
        (words) => {
          expect(splitWords(words.map(quote).join(' '))).toEqual(words);
        }
      )
    );
  });
});
