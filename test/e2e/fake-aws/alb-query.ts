/**
 * The awsQuery wire format of the ELBv2 API, both directions, as the real @aws-sdk/client-elastic-load-balancing-v2
 * speaks it (AwsQueryProtocol in @aws-sdk/core): requests are form-encoded POST bodies with flattened members
 * (`Targets.member.1.Id=...`), replies are `<{Action}Response><{Action}Result>` XML with lists as `<member>`
 * elements, errors are `<ErrorResponse><Error><Code>` XML whose Code the SDK maps to its named exceptions.
 *
 * Runs inside the stand-in's child process (see alb-process.ts): node: imports only.
 */

export const ELB_XMLNS = 'http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/';
export const ELB_VERSION = '2015-12-01';

/** Flattened form parameters: `Targets.member.1.Id` -> value. */
export type QueryParams = Record<string, string>;

export function parseForm(body: string): QueryParams {
  const out: QueryParams = {};
  for (const [k, v] of new URLSearchParams(body)) out[k] = v;
  return out;
}

/** Prefixes of the members of list `name` in index order: `Targets` -> ['Targets.member.1', 'Targets.member.2']. */
export function listPrefixes(params: QueryParams, name: string): string[] {
  const idx = new Set<number>();
  const head = `${name}.member.`;
  for (const k of Object.keys(params)) {
    if (!k.startsWith(head)) continue;
    const n = Number(k.slice(head.length).split('.')[0]);
    if (Number.isInteger(n) && n > 0) idx.add(n);
  }
  return [...idx].sort((a, b) => a - b).map((n) => `${head}${n}`);
}

/** Values of a list of strings: `Names.member.1=a&Names.member.2=b` -> ['a', 'b']. */
export function stringList(params: QueryParams, name: string): string[] {
  return listPrefixes(params, name)
    .map((p) => params[p])
    .filter((v): v is string => v !== undefined);
}

/** An XML value: objects become child elements, arrays `<member>` lists, undefined is left out. */
export type XmlValue = string | number | boolean | undefined | null | XmlValue[] | { [key: string]: XmlValue };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function toXml(name: string, value: XmlValue): string {
  if (value === undefined || value === null) return '';
  if (Array.isArray(value)) return `<${name}>${value.map((v) => toXml('member', v)).join('')}</${name}>`;
  if (typeof value === 'object') {
    return `<${name}>${Object.entries(value)
      .map(([k, v]) => toXml(k, v))
      .join('')}</${name}>`;
  }
  return `<${name}>${esc(String(value))}</${name}>`;
}

export function resultXml(action: string, result: Record<string, XmlValue>, requestId: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${ELB_XMLNS}">` +
    toXml(`${action}Result`, result) +
    `<ResponseMetadata><RequestId>${esc(requestId)}</RequestId></ResponseMetadata></${action}Response>`
  );
}

export function errorXml(type: 'Sender' | 'Receiver', code: string, message: string, requestId: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="${ELB_XMLNS}">` +
    `<Error><Type>${type}</Type><Code>${esc(code)}</Code><Message>${esc(message)}</Message></Error>` +
    `<RequestId>${esc(requestId)}</RequestId></ErrorResponse>`
  );
}

/** An API error as ELBv2 answers it: HTTP status + awsQuery error code (the SDK's exception name minus "Exception"). */
export class AlbApiError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status = 400) {
    super(message);
    this.code = code;
    this.status = status;
  }
}
