/**
 * In-process stand-in for the GitHub Actions "results" service (artifacts v4 backend) plus the Azure blob
 * endpoint it hands out, good enough for the real @actions/artifact 6.x client to upload unchanged:
 *
 *   POST /twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact   -> { ok, signed_upload_url }
 *   PUT  /devstoreaccount1/actions-results/<n>/<name>.zip?...&comp=block&blockid=X   (201, Azure headers)
 *   PUT  ...?comp=blocklist  (XML <BlockList><Latest>X</Latest>...</BlockList>)      (201)
 *   PUT  ... (no comp, x-ms-blob-type: BlockBlob: single-shot upload)               (201)
 *   POST /twirp/.../FinalizeArtifact                                             -> { ok, artifact_id }
 *   POST /twirp/.../ListArtifacts                                                -> { artifacts: [...] }
 *
 * Client env: ACTIONS_RUNTIME_TOKEN=runtimeToken(), ACTIONS_RESULTS_URL=<url>/, GITHUB_SERVER_URL=https://github.com.
 * Twirp requests use proto field names (snake_case); replies use snake_case too (the client's fromJson accepts both).
 * Twirp calls always get JSON replies (the client retries non-JSON replies with multi-second back-off).
 */
import http from 'node:http';
import zlib from 'node:zlib';
import type { AddressInfo } from 'node:net';

export interface FakeArtifact {
  id: number;
  name: string;
  /** RFC 3339 string as sent by the client (retention), absent when no retention was asked for */
  expiresAt?: string;
  /** size the client reported in FinalizeArtifact */
  size: number;
  /** "sha256:<hex>" as reported by the client */
  hash?: string;
  mimeType?: string;
  workflowRunBackendId: string;
  workflowJobRunBackendId: string;
  /** the uploaded blob (a zip unless the client used skipArchive) */
  zip: Buffer;
  /** unzipped regular files, path inside the zip -> contents (empty when the blob is not a zip) */
  files: Record<string, Buffer>;
}

export interface FakeResults {
  /** origin + "/", use as ACTIONS_RESULTS_URL */
  url: string;
  /** finalized artifacts, in order */
  artifacts: FakeArtifact[];
  /** "METHOD path-with-query" of every request, in order */
  requests: string[];
  close(): Promise<void>;
}

interface Pending {
  name: string;
  expiresAt?: string;
  mimeType?: string;
  workflowRunBackendId: string;
  workflowJobRunBackendId: string;
  blobPath: string;
  blocks: Map<string, Buffer>;
  blob?: Buffer;
}

const SERVICE = '/twirp/github.actions.results.api.v1.ArtifactService/';

function b64url(s: string): string {
  return Buffer.from(s).toString('base64url');
}

/** An ACTIONS_RUNTIME_TOKEN look-alike: a JWT with the scp claim the client parses; the signature is junk. */
export function runtimeToken(runId = '1234', jobId = '5678'): string {
  const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5t: 'fake' }));
  const now = Math.floor(Date.now() / 1000);
  const payload = b64url(
    JSON.stringify({
      scp: `Actions.ExampleScope Actions.Results:${runId}:${jobId}`,
      iss: 'vstoken.actions.githubusercontent.com',
      aud: 'vso:fake',
      nbf: now - 60,
      exp: now + 6 * 3600
    })
  );
  return `${header}.${payload}.${b64url('not-a-real-signature')}`;
}

/** Minimal zip reader (central directory; stored + deflate; no zip64, no encryption). */
export function unzip(buf: Buffer): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 0xffff); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip: no end-of-central-directory record');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) throw new Error(`bad central directory entry at ${p}`);
    const method = buf.readUInt16LE(p + 10);
    const compSize = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const localOff = buf.readUInt32LE(p + 42);
    const name = buf.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    p += 46 + nameLen + extraLen + commentLen;
    if (name.endsWith('/')) continue; // directory entry
    if (buf.readUInt32LE(localOff) !== 0x04034b50) throw new Error(`bad local header for ${name}`);
    const dataStart = localOff + 30 + buf.readUInt16LE(localOff + 26) + buf.readUInt16LE(localOff + 28);
    const data = buf.subarray(dataStart, dataStart + compSize);
    if (method === 0) files[name] = Buffer.from(data);
    else if (method === 8) files[name] = zlib.inflateRawSync(data);
    else throw new Error(`unsupported zip method ${method} for ${name}`);
  }
  return files;
}

function stringValue(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object' && 'value' in (v as object)) return String((v as { value: unknown }).value);
  return String(v);
}

export async function startFakeResults(): Promise<FakeResults> {
  const artifacts: FakeArtifact[] = [];
  const requests: string[] = [];
  const pending = new Map<string, Pending>(); // key: runId/jobId/name
  const byBlobPath = new Map<string, Pending>();
  let nextId = 1000;
  let port = 0;

  const azureHeaders = (extra: http.OutgoingHttpHeaders = {}): http.OutgoingHttpHeaders => ({
    'x-ms-request-id': `fake-${requests.length}`,
    'x-ms-version': '2025-05-05',
    'x-ms-request-server-encrypted': 'true',
    date: new Date().toUTCString(),
    'content-length': 0,
    ...extra
  });

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`);
      requests.push(`${req.method} ${url.pathname}${url.search}`);
      try {
        if (url.pathname.startsWith('/twirp/')) return twirp(req, res, url, body);
        if (req.method === 'PUT' && byBlobPath.has(url.pathname)) return blob(req, res, url, body);
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ code: 'not_found', msg: `fake results: no route for ${req.method} ${url.pathname}` }));
      } catch (e) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ code: 'internal', msg: `fake results: ${(e as Error).stack ?? e}` }));
      }
    });
  });

  function json(res: http.ServerResponse, status: number, obj: unknown) {
    const text = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  function twirp(req: http.IncomingMessage, res: http.ServerResponse, url: URL, body: Buffer) {
    if (req.method !== 'POST' || !url.pathname.startsWith(SERVICE)) {
      return json(res, 404, { code: 'bad_route', msg: `no such twirp route ${url.pathname}` });
    }
    if (!/^Bearer \S+/.test(String(req.headers.authorization ?? ''))) {
      return json(res, 401, { code: 'unauthenticated', msg: 'missing bearer token' });
    }
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(body.toString('utf8') || '{}');
    } catch {
      return json(res, 400, { code: 'malformed', msg: 'body is not JSON' });
    }
    const runId = String(msg.workflow_run_backend_id ?? '');
    const jobId = String(msg.workflow_job_run_backend_id ?? '');
    const name = String(msg.name ?? '');
    const key = `${runId}/${jobId}/${name}`;
    const method = url.pathname.slice(SERVICE.length);
    switch (method) {
      case 'CreateArtifact': {
        if (!name || !runId || !jobId)
          return json(res, 400, { code: 'invalid_argument', msg: 'name and backend ids are required' });
        if (artifacts.some((a) => a.name === name && a.workflowRunBackendId === runId)) {
          return json(res, 409, {
            code: 'already_exists',
            msg: `an artifact with this name already exists on the workflow run`
          });
        }
        const blobPath = `/devstoreaccount1/actions-results/${nextId++}/${encodeURIComponent(name)}.zip`;
        const p: Pending = {
          name,
          workflowRunBackendId: runId,
          workflowJobRunBackendId: jobId,
          blobPath,
          blocks: new Map(),
          expiresAt: msg.expires_at === undefined ? undefined : String(msg.expires_at),
          mimeType: stringValue(msg.mime_type)
        };
        pending.set(key, p);
        byBlobPath.set(blobPath, p);
        const se = new Date(Date.now() + 3600_000).toISOString();
        return json(res, 200, {
          ok: true,
          signed_upload_url: `http://127.0.0.1:${port}${blobPath}?sv=2025-05-05&se=${encodeURIComponent(se)}&sr=b&sp=cw&sig=fake-signature`
        });
      }
      case 'FinalizeArtifact': {
        const p = pending.get(key);
        if (!p) return json(res, 404, { code: 'not_found', msg: `no pending artifact ${key}` });
        if (!p.blob)
          return json(res, 400, { code: 'failed_precondition', msg: `artifact ${name}: blob was never committed` });
        pending.delete(key);
        byBlobPath.delete(p.blobPath);
        let files: Record<string, Buffer> = {};
        try {
          files = unzip(p.blob);
        } catch {
          /* skipArchive uploads are not zips */
        }
        const id = artifacts.length + 1;
        artifacts.push({
          id,
          name: p.name,
          expiresAt: p.expiresAt,
          size: Number(msg.size ?? 0),
          hash: stringValue(msg.hash),
          mimeType: p.mimeType,
          workflowRunBackendId: runId,
          workflowJobRunBackendId: jobId,
          zip: p.blob,
          files
        });
        return json(res, 200, { ok: true, artifact_id: String(id) });
      }
      case 'ListArtifacts': {
        const list = artifacts
          .filter((a) => !runId || a.workflowRunBackendId === runId)
          .filter((a) => !msg.name_filter || a.name === stringValue(msg.name_filter))
          .map((a) => ({
            workflow_run_backend_id: a.workflowRunBackendId,
            workflow_job_run_backend_id: a.workflowJobRunBackendId,
            database_id: String(a.id),
            name: a.name,
            size: String(a.zip.length),
            created_at: new Date().toISOString()
          }));
        return json(res, 200, { artifacts: list });
      }
      default:
        return json(res, 501, { code: 'unimplemented', msg: `fake results does not implement ${method}` });
    }
  }

  function blob(req: http.IncomingMessage, res: http.ServerResponse, url: URL, body: Buffer) {
    const p = byBlobPath.get(url.pathname)!;
    const comp = url.searchParams.get('comp');
    if (comp === 'block') {
      const id = url.searchParams.get('blockid');
      if (!id) {
        res.writeHead(400, azureHeaders({ 'x-ms-error-code': 'InvalidQueryParameterValue' }));
        return res.end();
      }
      p.blocks.set(id, body);
      res.writeHead(201, azureHeaders({ 'x-ms-content-crc64': 'AAAAAAAAAAA=' }));
      return res.end();
    }
    const etag = `"0x${Date.now().toString(16).toUpperCase()}"`;
    const committed = { etag, 'last-modified': new Date().toUTCString(), 'x-ms-version-id': new Date().toISOString() };
    if (comp === 'blocklist') {
      const ids = [...body.toString('utf8').matchAll(/<(?:Latest|Uncommitted|Committed)>([^<]*)<\//g)].map((m) => m[1]);
      const missing = ids.filter((id) => !p.blocks.has(id));
      if (missing.length) {
        res.writeHead(400, azureHeaders({ 'x-ms-error-code': 'InvalidBlockList' }));
        return res.end();
      }
      p.blob = Buffer.concat(ids.map((id) => p.blocks.get(id)!));
      p.blocks.clear();
      res.writeHead(201, azureHeaders(committed));
      return res.end();
    }
    if (!comp) {
      // Put Blob (single shot)
      p.blob = body;
      res.writeHead(201, azureHeaders(committed));
      return res.end();
    }
    res.writeHead(400, azureHeaders({ 'x-ms-error-code': 'UnsupportedQueryParameter' }));
    res.end();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    artifacts,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      })
  };
}
