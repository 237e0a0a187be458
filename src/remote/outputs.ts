/**
 * Typed parsers of the remote scripts' output (one per script, next to the builders in scripts.ts): the deploy
 * code reads facts, never raw text.
 */
import type { Color } from '../model/config.js';
import type { ContainerInfo, HostState } from '../model/host.js';

export function parseDetectOutput(out: string): HostState {
  const section = (name: string) => {
    const m = new RegExp(`@@${name}\\n([\\s\\S]*?)(?=\\n@@(?:containers|upstream|state)\\n|$)`).exec(out);
    const body = m?.[1]?.trim() ?? '';
    return body === '@@none' ? undefined : body;
  };
  let recordedLive: Color | undefined;
  let stateUnreadable = false;
  try {
    const st = JSON.parse(section('state') ?? '{}') as { live?: Color };
    if (st.live === 'blue' || st.live === 'green') recordedLive = st.live;
  } catch {
    stateUnreadable = true;
  }
  return {
    containers: parseInspect(section('containers') ?? ''),
    upstreamContent: section('upstream'),
    recordedLive,
    stateUnreadable
  };
}

/** pullScript: the image's repo digests (`repo@sha256:…` lines after `@@digests`). */
export function parsePullDigests(out: string): string[] {
  const at = out.indexOf('@@digests');
  if (at < 0) return [];
  return out
    .slice(at + '@@digests'.length)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.includes('@sha256:'));
}

/** discardCandidateScript: what it did with the candidate name and the standby it had replaced. */
export interface DiscardOutcome {
  removed: boolean;
  restored: boolean;
  /** A container of that name that another deploy made (e.g. the kept standby): left alone. */
  foreign?: string;
}

export function parseDiscardOutput(out: string): DiscardOutcome {
  const foreign = /^@@foreign (.*)$/m.exec(out)?.[1];
  return {
    removed: /^@@removed$/m.test(out),
    restored: /^@@restored$/m.test(out),
    foreign: foreign === undefined ? undefined : foreign.trim() || '(no deploy id)'
  };
}

/** Parses the one-object-per-line output of detectScript's `docker inspect --format`. */
export function parseInspect(text: string): ContainerInfo[] {
  return text
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .map((l) => {
      const c = JSON.parse(l) as {
        id: string;
        name: string;
        state: string;
        running: boolean;
        restarts: number;
        labels: Record<string, string> | null;
      };
      return {
        id: c.id,
        name: c.name.replace(/^\//, ''),
        state: c.state,
        running: c.running,
        restartCount: c.restarts,
        labels: c.labels ?? {}
      };
    });
}
