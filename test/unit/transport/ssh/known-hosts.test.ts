import { createHmac, randomBytes } from 'node:crypto';
import {
  entryMatchesHost,
  fingerprint,
  knownHostsLine,
  parseKnownHosts,
  preferredHostKeyAlgorithms,
  verifyHostKey
} from '../../../../src/transport/ssh/known-hosts.js';

const ED_KEY = Buffer.from('AAAAC3NzaC1lZDI1NTE5AAAAICqzdPktL85becTIoxZNZYiLdHd20uc320Cl7GjZmET+', 'base64');
const OTHER_KEY = Buffer.from('AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl', 'base64');
const policy = (knownHosts: string, fingerprints: string[] = []) => ({
  knownHosts,
  fingerprints,
  insecureIgnore: false
});

describe('known_hosts', () => {
  test('matches plain names, [host]:port, wildcards and negations', () => {
    const { entries, problems } = parseKnownHosts(
      [
        '10.0.0.1 ssh-ed25519 ' + ED_KEY.toString('base64'),
        '[10.0.0.2]:2222 ssh-ed25519 ' + ED_KEY.toString('base64'),
        '*.internal,!bad.internal ssh-ed25519 ' + ED_KEY.toString('base64')
      ].join('\n')
    );
    expect(problems).toEqual([]);
    expect(entryMatchesHost(entries[0], '10.0.0.1', 22)).toBe(true);
    expect(entryMatchesHost(entries[0], '10.0.0.1', 2222)).toBe(false);
    expect(entryMatchesHost(entries[1], '10.0.0.2', 2222)).toBe(true);
    expect(entryMatchesHost(entries[1], '10.0.0.2', 22)).toBe(false);
    expect(entryMatchesHost(entries[2], 'api.internal', 22)).toBe(true);
    expect(entryMatchesHost(entries[2], 'bad.internal', 22)).toBe(false);
  });

  test('matches hashed entries (ssh-keygen -H)', () => {
    const salt = randomBytes(20);
    const hash = createHmac('sha1', salt).update('[db.example.com]:2200').digest();
    const { entries } = parseKnownHosts(
      `|1|${salt.toString('base64')}|${hash.toString('base64')} ssh-ed25519 ${ED_KEY.toString('base64')}`
    );
    expect(entryMatchesHost(entries[0], 'db.example.com', 2200)).toBe(true);
    expect(entryMatchesHost(entries[0], 'db.example.com', 22)).toBe(false);
  });

  test('reports malformed lines by number', () => {
    expect(parseKnownHosts('# comment\n\nhost ssh-ed25519\nhost ssh-foo AAAA').problems).toEqual([
      'line 3 is not "<host> <key-type> <base64-key>"',
      'line 4 is not "<host> <key-type> <base64-key>"'
    ]);
  });

  test('a known key is accepted; a different key is a mismatch naming the fingerprint and the line to add', () => {
    const kh = `[127.0.0.1]:2222 ssh-ed25519 ${OTHER_KEY.toString('base64')}`;
    expect(
      verifyHostKey(policy(`[127.0.0.1]:2222 ssh-ed25519 ${ED_KEY.toString('base64')}`), '127.0.0.1', 2222, ED_KEY)
    ).toEqual({ ok: true });
    const v = verifyHostKey(policy(kh), '127.0.0.1', 2222, ED_KEY);
    expect(v.ok).toBe(false);
    if (!v.ok) {
      expect(v.reason).toContain('HOST KEY MISMATCH');
      expect(v.reason).toContain(fingerprint(ED_KEY));
      expect(v.reason).toContain(knownHostsLine('127.0.0.1', 2222, ED_KEY));
    }
  });

  test('a missing entry says so and prints the line', () => {
    const v = verifyHostKey(policy(`other ssh-ed25519 ${ED_KEY.toString('base64')}`), 'web1', 22, ED_KEY);
    expect(v).toEqual({
      ok: false,
      reason: expect.stringContaining(
        `ssh-known-hosts has no entry for web1; the host presented ssh-ed25519 ${fingerprint(ED_KEY)}`
      )
    });
    expect(v.ok ? '' : v.reason).toContain(`web1 ssh-ed25519 ${ED_KEY.toString('base64')}`);
  });

  test('fingerprints are accepted as an alternative; @revoked keys are refused', () => {
    expect(verifyHostKey(policy('', [fingerprint(ED_KEY)]), 'h', 22, ED_KEY)).toEqual({ ok: true });
    expect(verifyHostKey(policy('', [fingerprint(OTHER_KEY)]), 'h', 22, ED_KEY).ok).toBe(false);
    const revoked = verifyHostKey(
      policy(`@revoked h ssh-ed25519 ${ED_KEY.toString('base64')}\nh ssh-ed25519 ${ED_KEY.toString('base64')}`),
      'h',
      22,
      ED_KEY
    );
    expect(revoked.ok).toBe(false);
  });

  test('fingerprint is OpenSSH SHA256 form without padding', () => {
    expect(fingerprint(ED_KEY)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  test('offers the host-key algorithms the known_hosts entries have, like OpenSSH', () => {
    const { entries } = parseKnownHosts(
      `h ssh-rsa ${ED_KEY.toString('base64')}\nh ecdsa-sha2-nistp256 ${ED_KEY.toString('base64')}`
    );
    expect(preferredHostKeyAlgorithms(entries, 'h', 22)).toEqual([
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
      'ecdsa-sha2-nistp256'
    ]);
    expect(preferredHostKeyAlgorithms(entries, 'other', 22)).toBeUndefined();
  });
});
