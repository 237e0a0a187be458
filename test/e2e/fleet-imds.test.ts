/**
 * IMDSv2 of the fleet sandbox (test/sandbox/imds-up.sh, imds-server.mjs): every host gets its own identity at
 * 169.254.169.254 by the shared convention, tokens are required, and an ec2-user SSH session reads it with bash's
 * /dev/tcp alone (what `traffic: alb` does, without curl on the host). Needs the fleet sandbox (fleet-up.sh).
 */
import fs from 'node:fs';
import { fleetInstanceId } from './fake-aws/alb.js';
import { FLEET_JSON, onHostOk, type Fleet } from './fleet-harness.js';
import { q, sh } from './harness.js';

const fleet = JSON.parse(fs.readFileSync(FLEET_JSON, 'utf8')) as Fleet;
const hosts = fleet.hosts.slice(0, 3);

test.each(hosts.map((h) => [h.name, h.host]))(
  '%s (%s): token, instance-id, local-ipv4; 401 without a token',
  async (name, ip) => {
    const n = Number(name.replace('bgf-h', ''));
    const out = await onHostOk(
      name,
      `tok=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)
     curl -sf -H "X-aws-ec2-metadata-token: $tok" http://169.254.169.254/latest/meta-data/instance-id; echo
     curl -sf -H "X-aws-ec2-metadata-token: $tok" http://169.254.169.254/latest/meta-data/local-ipv4; echo
     curl -s -o /dev/null -w '%{http_code}\\n' http://169.254.169.254/latest/meta-data/instance-id
     curl -s -o /dev/null -w '%{http_code}\\n' -H 'X-aws-ec2-metadata-token: forged' http://169.254.169.254/latest/meta-data/instance-id
     curl -s -o /dev/null -w '%{http_code}\\n' -X PUT http://169.254.169.254/latest/api/token`
    );
    expect(out.trim().split('\n')).toEqual([fleetInstanceId(n), ip, '401', '401', '400']);
  }
);

test('an ec2-user SSH session reads its identity with bash /dev/tcp only (HTTP/1.0, no curl)', async () => {
  // the same kind of script the product sends: HTTP/1.0 over /dev/tcp, body after the blank line
  const script = `
req() { exec 3<>/dev/tcp/169.254.169.254/80; printf '%s %s HTTP/1.0\\r\\nHost: 169.254.169.254\\r\\n%s\\r\\n\\r\\n' "$1" "$2" "$3" >&3; sed '1,/^\\r$/d' <&3; exec 3<&-; }
tok=$(req PUT /latest/api/token 'X-aws-ec2-metadata-token-ttl-seconds: 60')
echo "$(req GET /latest/meta-data/instance-id "X-aws-ec2-metadata-token: $tok") $(req GET /latest/meta-data/local-ipv4 "X-aws-ec2-metadata-token: $tok")"`;
  for (const h of hosts) {
    const r = await sh(`ssh -F ${q(fleet.sshConfigPath)} ${q(`ec2-user@${h.host}`)} bash -s`, {
      input: script,
      timeoutMs: 30000
    });
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout.trim()).toBe(`${fleetInstanceId(Number(h.name.replace('bgf-h', '')))} ${h.host}`);
  }
});
