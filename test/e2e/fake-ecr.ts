/**
 * In-process stand-in for ECR's GetAuthorizationToken on the real wire protocol (AWS JSON 1.1 over HTTP).
 * Point the real @aws-sdk/client-ecr at it with env AWS_ENDPOINT_URL_ECR=<url> (plus AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY / AWS_REGION). The SigV4 signature is parsed (credential scope) but not verified.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeEcrRequest {
  target: string;
  region: string;
  accessKeyId: string;
  /** parsed JSON body (GetAuthorizationToken sends `{}`) */
  body: unknown;
}

export interface FakeEcrOptions {
  /** password inside the token; the token is base64("<user>:<password>") */
  password: string;
  /** defaults to "AWS", as for real ECR */
  user?: string;
  /** answer 400 AccessDeniedException instead of a token */
  fail?: boolean;
  /** proxyEndpoint in the reply; defaults to https://123456789012.dkr.ecr.<region>.amazonaws.com */
  proxyEndpoint?: string;
  /** token lifetime in seconds (default 12 h) */
  ttlSeconds?: number;
}

export interface FakeEcr {
  url: string;
  requests: FakeEcrRequest[];
  close(): Promise<void>;
}

const TARGET_PREFIX = 'AmazonEC2ContainerRegistry_V20150921.';
const JSON11 = 'application/x-amz-json-1.1';
// Authorization: AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/ecr/aws4_request, SignedHeaders=..., Signature=...
const SIGV4 =
  /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]+)$/;

export async function startFakeEcr(opts: FakeEcrOptions): Promise<FakeEcr> {
  const requests: FakeEcrRequest[] = [];
  const user = opts.user ?? 'AWS';

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const reply = (status: number, body: unknown, errorType?: string) => {
        const text = JSON.stringify(body);
        const headers: http.OutgoingHttpHeaders = {
          'content-type': JSON11,
          'content-length': Buffer.byteLength(text),
          'x-amzn-requestid': `fake-${requests.length}-${Date.now()}`
        };
        if (errorType) headers['x-amzn-errortype'] = `${errorType}:http://internal.amazon.com/coral/com.amazonaws.ecr/`;
        res.writeHead(status, headers);
        res.end(text);
      };
      const error = (status: number, type: string, message: string) => reply(status, { __type: type, message }, type);

      const target = String(req.headers['x-amz-target'] ?? '');
      const auth = String(req.headers['authorization'] ?? '');
      const m = SIGV4.exec(auth);
      if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/') {
        return error(404, 'UnknownOperationException', `unexpected ${req.method} ${req.url}`);
      }
      if (!m || m[4] !== 'ecr') {
        return error(
          403,
          'MissingAuthenticationTokenException',
          `missing or malformed SigV4 Authorization header: ${auth || '(none)'}`
        );
      }
      let body: unknown = undefined;
      try {
        body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
      } catch {
        return error(400, 'SerializationException', 'request body is not JSON');
      }
      const region = m[3];
      requests.push({ target, region, accessKeyId: m[1], body });

      if (!String(req.headers['content-type'] ?? '').startsWith(JSON11)) {
        return error(400, 'SerializationException', `unexpected content-type ${req.headers['content-type']}`);
      }
      if (target !== `${TARGET_PREFIX}GetAuthorizationToken`) {
        return error(400, 'UnknownOperationException', `fake ECR only implements GetAuthorizationToken, got ${target}`);
      }
      if (opts.fail) {
        return error(
          400,
          'AccessDeniedException',
          `User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:GetAuthorizationToken on resource: * because no identity-based policy allows the ecr:GetAuthorizationToken action`
        );
      }
      const token = Buffer.from(`${user}:${opts.password}`).toString('base64');
      reply(200, {
        authorizationData: [
          {
            authorizationToken: token,
            expiresAt: Math.floor(Date.now() / 1000) + (opts.ttlSeconds ?? 12 * 3600),
            proxyEndpoint: opts.proxyEndpoint ?? `https://123456789012.dkr.ecr.${region}.amazonaws.com`
          }
        ]
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      })
  };
}
