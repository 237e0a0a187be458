/**
 * Sealing a secret (stdin of a command: the registry password, the env file) to the one-time public key a host made
 * for this session, so that SSM's command history and CloudTrail, which keep every parameter, only ever hold the
 * sealed form. Only the host can open it, with the stock `openssl` CLI (OpenSSL 1.0.2 to 3.x, so AL2, AL2023, Ubuntu):
 *
 *   pass = 32 random bytes, hex                         a one-time passphrase
 *   key  = RSA-OAEP(SHA-256, MGF1-SHA-256)(pass)        `openssl pkeyutl -decrypt -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256`
 *   data = "Salted__" | salt | AES-256-CBC(payload)      `openssl enc -d -aes-256-cbc -md sha256 -pass file:…`
 *          with key|iv = EVP_BytesToKey(SHA-256, salt, pass, 1 round)
 *
 * The passphrase is 256 random bits, so the one-round key derivation costs nothing in strength; it reaches openssl in
 * a root-only file (never on a command line, where `ps` would show it). No MAC: who can send SSM commands to the host
 * runs anything as root there anyway, and TLS protects the request; a damaged ciphertext fails to decrypt.
 */
import crypto from 'node:crypto';

export interface Sealed {
  /** base64 of the RSA-OAEP-wrapped passphrase */
  key: string;
  /** base64 of openssl's salted AES-256-CBC format */
  data: string;
}

export function seal(publicKeyPem: string, plaintext: string | Buffer): Sealed {
  const pass = Buffer.from(crypto.randomBytes(32).toString('hex'), 'utf8');
  const key = crypto.publicEncrypt(
    { key: publicKeyPem, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    pass
  );
  const salt = crypto.randomBytes(8);
  const { key: aesKey, iv } = bytesToKey(pass, salt);
  const cipher = crypto.createCipheriv('aes-256-cbc', aesKey, iv);
  const ct = Buffer.concat([cipher.update(Buffer.from(plaintext)), cipher.final()]);
  return { key: key.toString('base64'), data: Buffer.concat([Buffer.from('Salted__'), salt, ct]).toString('base64') };
}

/** OpenSSL's EVP_BytesToKey with SHA-256 and one round: key (32) and iv (16). */
export function bytesToKey(pass: Buffer, salt: Buffer): { key: Buffer; iv: Buffer } {
  let d = Buffer.alloc(0);
  let out = Buffer.alloc(0);
  while (out.length < 48) {
    d = crypto
      .createHash('sha256')
      .update(Buffer.concat([d, pass, salt]))
      .digest();
    out = Buffer.concat([out, d]);
  }
  return { key: out.subarray(0, 32), iv: out.subarray(32, 48) };
}
