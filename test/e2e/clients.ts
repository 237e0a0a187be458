/**
 * The four kinds of client of issue #9 ("Hitless"), run at once against one URL and counted SEPARATELY, for the e2e
 * tests and `npm run bench`:
 *   fresh   a new TCP connection per request (`keepAlive: false`): what curl, health checkers and most scripts do;
 *   pooled  pooled keep-alive connections that never retry (Node's default agent, an ALB in front of the proxy: it
 *           answers 502 to its own client when its pooled connection is reset), fast requests;
 *   slow    the same pool semantics, slow requests of 2–5 s (GET /cgi-bin/slow?<s>) that span the switch;
 *   stream  a long-lived event stream (GET /cgi-bin/stream?<n>: n events 0.2 s apart, then "end <version>") held open
 *           across the switch; it counts as failed unless every event and the end marker arrive, all from one version.
 * Every failure is kept with its kind: the error code (ECONNRESET, EPIPE, TIMEOUT, …) or HTTP status, and whether it
 * went out on a reused keep-alive socket (see LoadResult.errorCodes).
 *
 * The demo images (test/sandbox/up.sh) have /cgi-bin/slow but no stream endpoint: writeStreamCgi() writes one to a
 * directory of the test, and STREAM_RUN_ARGS mounts it into the container (docker-run-args), so the images stay as
 * they are.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { describeError, LoadGenerator, type LoadOptions, type LoadResult, type RunActionResult } from './harness.js';

export type ClientKind = 'fresh' | 'pooled' | 'slow' | 'stream';
export const CLIENT_KINDS: ClientKind[] = ['fresh', 'pooled', 'slow', 'stream'];

/** One kind's counters. */
export interface KindResult {
  ok: number;
  failed: number;
  /** failures by code, e.g. { "ECONNRESET on a reused socket": 2, "HTTP 502": 1 } */
  codes: Record<string, number>;
  /** the first failures' messages (at most 20) */
  errors: string[];
  /** successful answers by version (body of GET /, the slow answer, or the stream's end marker) */
  versions: Record<string, number>;
}

export type MixResult = Record<ClientKind, KindResult> & { fresh_: LoadResult; pooled_: LoadResult };

/** A stream CGI for busybox httpd (the demo images' server): n events 0.2 s apart, then the end marker. */
export const STREAM_CGI = [
  '#!/bin/sh',
  'n="${QUERY_STRING:-10}"',
  `case "$n" in ''|*[!0-9]*) n=10 ;; esac`,
  // X-Accel-Buffering: no, as SSE servers send it: nginx buffers a proxied response (proxy_buffering on) otherwise and
  // would hand the events to the client only at the end.
  `printf 'Content-Type: text/event-stream\\r\\nCache-Control: no-cache\\r\\nX-Accel-Buffering: no\\r\\n\\r\\n'`,
  'v="$(cat /www/index.html)"',
  'i=0',
  `while [ "$i" -lt "$n" ]; do printf 'data: %s %s\\n\\n' "$v" "$i"; i=$((i + 1)); sleep 0.2; done`,
  `printf 'data: end %s\\n\\n' "$v"`,
  ''
].join('\n');

/** Writes the stream CGI into `dir` (made world-readable) and returns the docker-run-args that mount it. */
export function writeStreamCgi(dir: string): string {
  fs.chmodSync(dir, 0o755);
  const file = path.join(dir, 'stream');
  fs.writeFileSync(file, STREAM_CGI, { mode: 0o755 });
  return `--volume ${file}:/www/cgi-bin/stream:ro`;
}

/** What one stream delivered. */
export interface StreamOutcome {
  /** version of every event in order (a stream served by one colour has one distinct value) */
  versions: string[];
  events: number;
  /** the end marker arrived */
  ended: boolean;
  /** how the stream ended: "end" (marker, then a clean close), or the error code ("aborted", ECONNRESET, TIMEOUT, …) */
  how: string;
  status: number;
  /** wall-clock ms of the first and last event */
  firstAt: number;
  lastAt: number;
  closedAt: number;
}

/**
 * Opens one stream of `events` events on a fresh connection and reads it to its end (never rejects). `onEvent` sees
 * each event as it arrives.
 */
export function openStream(
  url: string,
  events: number,
  opts: { timeoutMs?: number; headers?: http.OutgoingHttpHeaders; onEvent?: (version: string, i: number) => void } = {}
): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const out: StreamOutcome = {
      versions: [],
      events: 0,
      ended: false,
      how: '',
      status: 0,
      firstAt: 0,
      lastAt: 0,
      closedAt: 0
    };
    let buf = '';
    let done = false;
    const finish = (how: string) => {
      if (done) return;
      done = true;
      out.how = out.how || how;
      out.closedAt = Date.now();
      resolve(out);
    };
    const req = http.get(
      new URL(`/cgi-bin/stream?${events}`, url),
      { agent: false, timeout: opts.timeoutMs ?? events * 200 + 15_000, headers: opts.headers },
      (res) => {
        out.status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          buf += d;
          let k: number;
          while ((k = buf.indexOf('\n\n')) >= 0) {
            const ev = buf
              .slice(0, k)
              .replace(/^data: /, '')
              .trim();
            buf = buf.slice(k + 2);
            if (!ev) continue;
            const now = Date.now();
            const end = /^end (\S+)$/.exec(ev);
            if (end) {
              out.ended = true;
              out.versions.push(end[1]);
            } else {
              const m = /^(\S+) (\d+)$/.exec(ev);
              out.versions.push(m ? m[1] : `?${ev.slice(0, 40)}`);
              out.events++;
              opts.onEvent?.(m ? m[1] : '?', out.events - 1);
            }
            out.firstAt ||= now;
            out.lastAt = now;
          }
        });
        res.on('end', () => finish(out.ended ? 'end' : 'closed before the end marker'));
        res.on('aborted', () => finish('aborted'));
        res.on('error', (e) => finish(describeError(e).code));
        res.on('close', () => finish(out.ended ? 'end' : 'aborted'));
      }
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('stream timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e) => finish(describeError(e).code));
  });
}

/** Streams in a loop: each must deliver all its events and the end marker, from one version. */
export class StreamClients {
  private running = false;
  private loops: Promise<void>[] = [];
  readonly result: KindResult = { ok: 0, failed: 0, codes: {}, errors: [], versions: {} };

  constructor(
    private readonly url: string,
    private readonly events: number,
    private readonly headers?: http.OutgoingHttpHeaders
  ) {}

  start(n: number): this {
    this.running = true;
    for (let i = 0; i < n; i++) this.loops.push(this.loop());
    return this;
  }

  async stop(): Promise<KindResult> {
    this.running = false;
    await Promise.all(this.loops);
    return this.result;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const s = await openStream(this.url, this.events, { headers: this.headers });
      const distinct = [...new Set(s.versions)];
      const r = this.result;
      if (s.status === 200 && s.ended && s.events === this.events && distinct.length === 1) {
        r.ok++;
        r.versions[distinct[0]] = (r.versions[distinct[0]] ?? 0) + 1;
        continue;
      }
      const code =
        s.status && s.status !== 200
          ? `HTTP ${s.status}`
          : !s.ended
            ? `stream cut (${s.how})`
            : `mixed versions ${distinct.join('→')}`;
      r.failed++;
      r.codes[code] = (r.codes[code] ?? 0) + 1;
      if (r.errors.length < 20)
        r.errors.push(`${code}: ${s.events}/${this.events} events of ${distinct.join('→') || 'nothing'}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }
}

export interface MixOptions {
  /** loops per kind; default fresh 2, pooled 2, slow 2, stream 2 */
  fresh?: number;
  pooled?: number;
  slow?: number;
  stream?: number;
  /** slow request durations (s), default [2, 3, 4, 5] */
  slowSeconds?: number[];
  /** events per stream (0.2 s apart), default 25 (~5 s) */
  streamEvents?: number;
  requestTimeoutMs?: number;
  /** record every fresh and pooled request (samples, for the switch's order and the bench's latency) */
  record?: boolean;
  headers?: http.OutgoingHttpHeaders;
}

/** The four client kinds at once against `url`. */
export class ClientMix {
  private fresh: LoadGenerator;
  private pooled: LoadGenerator;
  private streams: StreamClients;

  constructor(
    url: string,
    private readonly opts: MixOptions = {}
  ) {
    const common: LoadOptions = {
      requestTimeoutMs: opts.requestTimeoutMs ?? 10_000,
      record: opts.record ?? true,
      headers: opts.headers
    };
    this.fresh = new LoadGenerator(url, { ...common, concurrency: opts.fresh ?? 2, keepAlive: false });
    // pooled and slow share no agent (LoadGenerator keeps the slow loops on their own pool) and never retry
    this.pooled = new LoadGenerator(url, {
      ...common,
      concurrency: opts.pooled ?? 2,
      keepAlive: true,
      retry: false,
      ...((opts.slow ?? 2) > 0
        ? { slow: { concurrency: opts.slow ?? 2, seconds: opts.slowSeconds ?? [2, 3, 4, 5], keepAlive: true } }
        : {})
    });
    this.streams = new StreamClients(url, opts.streamEvents ?? 25, opts.headers);
  }

  start(): this {
    this.fresh.start();
    this.pooled.start();
    if ((this.opts.stream ?? 2) > 0) this.streams.start(this.opts.stream ?? 2);
    return this;
  }

  async stop(): Promise<MixResult> {
    const [fresh, pooled, stream] = await Promise.all([this.fresh.stop(), this.pooled.stop(), this.streams.stop()]);
    const kind = (r: LoadResult | LoadResult['slow']): KindResult => ({
      ok: r.ok,
      failed: r.failed,
      codes: { ...r.errorCodes },
      errors: r.errors.slice(0, 20),
      versions: { ...r.bodies }
    });
    return {
      fresh: kind(fresh),
      pooled: kind(pooled),
      slow: kind(pooled.slow),
      stream,
      fresh_: fresh,
      pooled_: pooled
    };
  }
}

type Failures = Record<ClientKind, { failed: number; codes: Record<string, number>; first: string[] }>;

/** Failures per kind, for an expect(...).toEqual(noFailures()) that shows the codes when it fails. */
export function failuresByKind(r: MixResult): Failures {
  return Object.fromEntries(
    CLIENT_KINDS.map((k) => [k, { failed: r[k].failed, codes: r[k].codes, first: r[k].errors.slice(0, 3) }])
  ) as Failures;
}

export function noFailures(): Failures {
  const none = (): Failures[ClientKind] => ({ failed: 0, codes: {}, first: [] });
  return { fresh: none(), pooled: none(), slow: none(), stream: none() };
}

/** "fresh 0/812, pooled 2/1530 (ECONNRESET on a reused socket ×2), slow 0/14, stream 0/6" */
export function formatKinds(r: MixResult): string {
  return CLIENT_KINDS.map((k) => {
    const x = r[k];
    const codes = Object.entries(x.codes)
      .map(([c, n]) => `${c} ×${n}`)
      .join(', ');
    return `${k} ${x.failed}/${x.ok + x.failed}${codes ? ` (${codes})` : ''}`;
  }).join(', ');
}

// ------------------------------------------------------------------ assertions of the e2e tests (jest's expect)

/** No failure of any kind, and every kind really ran (the load went through the switch). */
export function expectNoFailures(r: MixResult): void {
  expect(failuresByKind(r)).toEqual(noFailures());
  expect(r.fresh.ok).toBeGreaterThan(20);
  expect(r.pooled.ok).toBeGreaterThan(20);
  expect(r.slow.ok).toBeGreaterThan(0);
  expect(r.stream.ok).toBeGreaterThan(0);
}

/**
 * The switch happened once, from `from` to `to`: both were served, and no request that started after the first answer
 * of `to` was answered by `from` (answers of concurrent requests may arrive in either order around the switch).
 */
export function expectOneSwitch(r: LoadResult, from: string, to: string): void {
  const firstNew = Math.min(...r.samples.filter((x) => x.ok && x.body === to).map((x) => x.end));
  expect(Number.isFinite(firstNew)).toBe(true);
  expect(r.samples.some((x) => x.body === from)).toBe(true);
  expect(r.samples.filter((x) => x.start > firstNew && x.body !== to).map((x) => x.body)).toEqual([]);
}

/** No failure of any kind, and one switch from `from` to `to` for the fresh and for the pooled clients. */
export function expectCleanSwitch(r: MixResult, from: string, to: string): void {
  expectNoFailures(r);
  expectOneSwitch(r.fresh_, from, to);
  expectOneSwitch(r.pooled_, from, to);
}

/**
 * Runs `fn` (a deploy, rollback, …) under the four client kinds: the load starts 1.5 s before (slow requests and
 * streams are in flight at the switch) and stops 1 s after. Logs the per-kind counts under `label`.
 */
export async function underMix(
  url: string,
  opts: MixOptions,
  label: string,
  fn: () => Promise<RunActionResult>
): Promise<{ res: RunActionResult; load: MixResult }> {
  const load = new ClientMix(url, opts).start();
  await new Promise((r) => setTimeout(r, 1500));
  const res = await fn();
  await new Promise((r) => setTimeout(r, 1000));
  const stats = await load.stop();
  process.stdout.write(`[${label}] ${res.outputs.result ?? res.code}: ${formatKinds(stats)}\n`);
  return { res, load: stats };
}

/**
 * A deploy of the tag `degrade` (healthy at first, then unhealthy after the switch; static files only, so fresh and
 * pooled clients only) under load: verify fails, traffic goes back, and neither client kind sees a failure.
 */
export async function expectCleanSwitchBack(url: string, deploy: () => Promise<RunActionResult>): Promise<void> {
  const load = new ClientMix(url, { fresh: 2, pooled: 2, slow: 0, stream: 0 }).start();
  await new Promise((r) => setTimeout(r, 1000));
  const res = await deploy();
  await new Promise((r) => setTimeout(r, 1000));
  const stats = await load.stop();
  expect(res.code).not.toBe(0);
  expect(res.outputs.result).toBe('rolled-back');
  expect(res.stdout).toMatch(/verify failed/);
  expect({ fresh: failuresByKind(stats).fresh, pooled: failuresByKind(stats).pooled }).toEqual({
    fresh: noFailures().fresh,
    pooled: noFailures().pooled
  });
}
