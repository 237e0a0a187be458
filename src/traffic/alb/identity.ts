/**
 * The host's identity as a target: its instance ID and private IPv4, read on the host from the instance metadata
 * service (IMDSv2: a PUT for a token, then meta-data/instance-id and meta-data/local-ipv4) over the existing
 * connection. No curl is needed: bash's /dev/tcp if the host has bash, else python3's urllib.
 */
import type { RemoteScript } from '../../remote/scripts.js';
import { cmd } from '../../remote/shell.js';

export interface HostIdentity {
  instanceId: string;
  privateIp: string;
}

const IMDS_BASH = [
  't="$1"',
  'req() {',
  '  exec 3<>/dev/tcp/169.254.169.254/80 || { echo "the instance metadata service (169.254.169.254:80) is not reachable from the host" >&2; return 7; }',
  `  printf '%s %s HTTP/1.0\\r\\nHost: 169.254.169.254\\r\\n%s\\r\\n\\r\\n' "$1" "$2" "$3" >&3`,
  '  status=""; body=""; inbody=""',
  '  while IFS= read -r -t "$t" line <&3 || [ -n "$line" ]; do',
  `    line=\${line%$'\\r'}`,
  '    if [ -z "$status" ]; then status=$line; elif [ -z "$inbody" ]; then [ -z "$line" ] && inbody=1; else body="$body$line"; fi',
  '    line=""',
  '  done',
  '  exec 3<&-',
  '  case "$status" in',
  `    "HTTP/"*" 200"*) printf '%s' "$body" ;;`,
  '    *) echo "IMDSv2 $1 $2 answered ${status:-nothing within $t s}" >&2; return 8 ;;',
  '  esac',
  '}',
  'tok=$(req PUT /latest/api/token "X-aws-ec2-metadata-token-ttl-seconds: 60") || exit $?',
  'id=$(req GET /latest/meta-data/instance-id "X-aws-ec2-metadata-token: $tok") || exit $?',
  'ip=$(req GET /latest/meta-data/local-ipv4 "X-aws-ec2-metadata-token: $tok") || exit $?',
  `printf 'instance-id=%s\\nlocal-ipv4=%s\\n' "$id" "$ip"`
].join('\n');

const IMDS_PYTHON = [
  'import sys, urllib.request',
  't = float(sys.argv[1])',
  'o = urllib.request.build_opener(urllib.request.ProxyHandler({}))',
  'def r(m, p, h):',
  '    try:',
  "        return o.open(urllib.request.Request('http://169.254.169.254' + p, method=m, headers=h), timeout=t).read().decode().strip()",
  '    except Exception as e:',
  "        sys.stderr.write('IMDSv2 %s %s failed: %s\\n' % (m, p, e)); sys.exit(8)",
  "tok = r('PUT', '/latest/api/token', {'X-aws-ec2-metadata-token-ttl-seconds': '60'})",
  "h = {'X-aws-ec2-metadata-token': tok}",
  "print('instance-id=' + r('GET', '/latest/meta-data/instance-id', h))",
  "print('local-ipv4=' + r('GET', '/latest/meta-data/local-ipv4', h))"
].join('\n');

/** $1: timeout per request in seconds. Prints instance-id=… and local-ipv4=… lines. */
export function identityScript(timeoutSeconds = 3): RemoteScript {
  return {
    body: [
      `if command -v bash >/dev/null 2>&1; then exec ${cmd('bash', '-c', IMDS_BASH, 'bash')} "$1"; fi`,
      `if command -v python3 >/dev/null 2>&1; then exec ${cmd('python3', '-c', IMDS_PYTHON)} "$1"; fi`,
      'echo "reading the instance ID and private IPv4 from the instance metadata service (IMDSv2) needs bash or python3 on the host" >&2',
      'exit 127'
    ].join('\n'),
    args: [String(timeoutSeconds)]
  };
}

export function parseIdentity(stdout: string): HostIdentity {
  const get = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(stdout)?.[1]?.trim() ?? '';
  const instanceId = get('instance-id');
  const privateIp = get('local-ipv4');
  if (!/^i-[0-9a-f]{8,17}$/.test(instanceId))
    throw new Error(`the instance metadata service answered no instance ID (got "${instanceId.slice(0, 40)}")`);
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(privateIp))
    throw new Error(`the instance metadata service answered no private IPv4 (got "${privateIp.slice(0, 40)}")`);
  return { instanceId, privateIp };
}
