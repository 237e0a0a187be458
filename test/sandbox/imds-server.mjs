// IMDSv2 stand-in for the fleet hosts (started by test/sandbox/imds-up.sh in the bastion's network namespace):
//   node imds-server.mjs <listen-ip> <pidfile>
// Like the real service it lives off the host, at the link-local 169.254.169.254, and tells the instances apart by
// the caller's address: 10.204.0.(10+N) is bgf-hN, instance id i-0f1ee7<N as 11 hex digits>, local-ipv4 its address
// (the shared convention of the helpers). PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds
// (1..21600) -> a token; GET /latest/meta-data/... needs X-aws-ec2-metadata-token with a live token of the same
// instance (401 without), as on EC2 with IMDSv2 required. A PUT carrying X-Forwarded-For is refused (403) like the
// real service does, so proxies cannot fetch tokens.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { setInterval } from 'node:timers';

const [listenIp, pidfile] = process.argv.slice(2);
const region = 'us-east-1';

/** metadata of the fleet host at `ip`, or undefined for any other caller */
function metaFor(ip) {
  const m = /^(?:::ffff:)?10\.204\.0\.(\d+)$/.exec(ip ?? '');
  const n = m ? Number(m[1]) - 10 : 0;
  if (n < 1 || n > 40) return undefined;
  const localIpv4 = `10.204.0.${10 + n}`;
  const dns = `ip-${localIpv4.replace(/\./g, '-')}.ec2.internal`;
  return {
    'instance-id': `i-0f1ee7${n.toString(16).padStart(11, '0')}`,
    'local-ipv4': localIpv4,
    'local-hostname': dns,
    hostname: dns,
    'instance-type': 't3.micro',
    'ami-id': 'ami-0f1ee700000000000',
    'placement/availability-zone': `${region}a`,
    'placement/region': region,
    'tags/instance/Name': `bgf-h${n}`
  };
}
const tokens = new Map(); // token -> { exp (ms), ip }

function reply(res, code, body, headers = {}) {
  res.writeHead(code, {
    'content-type': 'text/plain',
    'content-length': Buffer.byteLength(body),
    server: 'EC2ws',
    ...headers
  });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0];
  const caller = req.socket.remoteAddress;
  const meta = metaFor(caller);
  req.resume();
  if (!meta) return reply(res, 403, `Forbidden: ${caller} is not a fleet instance\n`);
  if (path === '/latest/api/token') {
    if (req.method !== 'PUT') return reply(res, 405, 'Method Not Allowed\n');
    if (req.headers['x-forwarded-for']) return reply(res, 403, 'Forbidden\n');
    const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return reply(res, 400, 'Bad Request\n');
    const token = crypto.randomBytes(32).toString('base64');
    tokens.set(token, { exp: Date.now() + ttl * 1000, ip: caller });
    return reply(res, 200, token, { 'x-aws-ec2-metadata-token-ttl-seconds': String(ttl) });
  }
  if (!path.startsWith('/latest/meta-data')) return reply(res, 404, 'Not Found\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'Method Not Allowed\n');
  const token = req.headers['x-aws-ec2-metadata-token'];
  const t = typeof token === 'string' ? tokens.get(token) : undefined;
  if (!t || t.exp < Date.now() || t.ip !== caller) return reply(res, 401, 'Unauthorized\n');
  const key = path.replace(/^\/latest\/meta-data\/?/, '').replace(/\/$/, '');
  if (key === '') {
    const top = [...new Set(Object.keys(meta).map((k) => (k.includes('/') ? `${k.split('/')[0]}/` : k)))];
    return reply(res, 200, top.join('\n'));
  }
  if (meta[key] !== undefined) return reply(res, 200, meta[key]);
  const children = Object.keys(meta)
    .filter((k) => k.startsWith(`${key}/`))
    .map((k) => k.slice(key.length + 1).split('/')[0]);
  if (children.length) return reply(res, 200, [...new Set(children)].join('\n'));
  reply(res, 404, 'Not Found\n');
});
server.listen(80, listenIp, () => {
  fs.writeFileSync(pidfile, `${process.pid}\n`);
  console.log(`imds for the fleet hosts on ${listenIp}:80`);
});
// expired tokens would pile up over a long-lived sandbox
setInterval(() => {
  const now = Date.now();
  for (const [k, t] of tokens) if (t.exp < now) tokens.delete(k);
}, 60_000).unref();
